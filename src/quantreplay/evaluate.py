"""Scoring one checkpoint on every task's test split.

Tasks are data (quantreplay.data.rows); scoring depends on the family:

- nlu (multiple choice): the log-likelihood of each choice given the prompt, as lm-evaluation-harness does:
  `acc` takes the most likely choice, `acc_norm` divides each log-likelihood by the choice's length in bytes.
  Requests are sorted by length, longest first, so batches pad little and an out-of-memory shows at once.
  Or, mirroring the paper, `generate`: greedy decoding, then the first choice the output names.
- math: greedy decoding with stop strings; the number after `####` (else the last number) must equal the
  target's final number (`exact_match`).
- code: greedy decoding (or n samples, scored with the unbiased pass@k estimator); the completion runs against
  the row's tests in the sandbox (quantreplay.sandbox), which is a security boundary.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from quantreplay.sandbox import Limits, code_program, run_python

MC_MODES = ("loglik", "generate")
# Where generation stops for each family: the start of another example, or of code after the function.
STOP_STRINGS = {
    "nlu": ["\n"],
    "math": ["\nQuestion:", "\n\n\n"],
    "code": ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert "],
}
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class EvalSettings:
    """How a checkpoint is evaluated.

    max_examples: per task, a seeded subsample of the test split (None: all). batch_size: sequences per
    forward. max_new_tokens: generation budget per family. mc_mode: loglik or generate. code_samples: n
    completions per code problem (1: greedy; more: sampled at `temperature`, pass@k for k <= n).
    """

    max_examples: int | None = None
    batch_size: int = 32
    max_new_tokens: dict = field(default_factory=lambda: {"nlu": 8, "math": 160, "code": 96})
    mc_mode: str = "loglik"
    code_samples: int = 1
    temperature: float = 0.8
    pass_k: tuple[int, ...] = (1,)
    seed: int = 0
    sandbox_wall_seconds: float = 10.0
    sandbox_cpu_seconds: int = 5
    sandbox_memory_mb: int = 1024

    def __post_init__(self) -> None:
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"EvalSettings.max_examples must be positive or null, got {self.max_examples!r}")
        if self.batch_size < 1:
            raise ValueError(f"EvalSettings.batch_size must be positive, got {self.batch_size!r}")
        if self.mc_mode not in MC_MODES:
            raise ValueError(f"EvalSettings.mc_mode must be one of {', '.join(MC_MODES)}, got {self.mc_mode!r}")
        if self.code_samples < 1:
            raise ValueError(f"EvalSettings.code_samples must be positive, got {self.code_samples!r}")
        if any(k < 1 or k > self.code_samples for k in self.pass_k):
            raise ValueError(
                f"EvalSettings.pass_k must lie in [1, code_samples={self.code_samples}], got {self.pass_k}"
            )
        missing = set(STOP_STRINGS) - set(self.max_new_tokens)
        if missing:
            raise ValueError(f"EvalSettings.max_new_tokens lacks {', '.join(sorted(missing))}")

    @property
    def limits(self) -> Limits:
        return Limits(
            wall_seconds=self.sandbox_wall_seconds,
            cpu_seconds=self.sandbox_cpu_seconds,
            memory_bytes=self.sandbox_memory_mb * 2**20,
        )


# --- extraction and estimators (pure functions) -----------------------------------------------------------


def final_number(text: str) -> str | None:
    """The answer a math output gives: the number after the last `####`, else the last number; commas dropped."""
    if "####" in text:
        found = NUMBER.findall(text.rsplit("####", 1)[1])
        if found:
            return _canonical_number(found[0])
    found = NUMBER.findall(text)
    return _canonical_number(found[-1]) if found else None


def _canonical_number(raw: str) -> str:
    raw = raw.replace(",", "").rstrip(".")
    if "." in raw:
        value = float(raw)
        return str(int(value)) if value == int(value) else str(value)
    return str(int(raw))


def pick_choice(generated: str, choices: Sequence[str]) -> int | None:
    """The choice a generated answer names: the longest choice it starts with, else the earliest one it
    mentions, else None (scored wrong)."""
    text = generated.strip().lower()
    options = [c.strip().lower() for c in choices]
    starting = [i for i, c in enumerate(options) if c and text.startswith(c)]
    if starting:
        return max(starting, key=lambda i: len(options[i]))
    found = [(text.find(c), i) for i, c in enumerate(options) if c and c in text]
    return min(found)[1] if found else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop string."""
    cut = min((text.find(s) for s in stops if s in text), default=len(text))
    return text[:cut]


def subsample(frame: pl.DataFrame, *, max_examples: int | None, seed: int) -> pl.DataFrame:
    """A seeded subsample of at most `max_examples` rows, in the original order."""
    if max_examples is None or frame.height <= max_examples:
        return frame
    keep = sorted(random.Random(f"eval-{seed}-{frame['task'][0]}").sample(range(frame.height), max_examples))
    return frame[keep]


# --- model calls --------------------------------------------------------------------------------------------


def _bos(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def choice_loglikelihoods(
    model, tokenizer, requests: Sequence[tuple[str, str]], *, batch_size: int, device: str
) -> list[float]:
    """Sum of log-probabilities of each continuation given its context, for (context, continuation) pairs.

    Context and continuation are tokenized separately, as in training, so the scored tokens are exactly those
    the model was trained to produce.
    """
    import torch

    encoded = []
    for context, continuation in requests:
        ctx = _bos(tokenizer) + tokenizer(context, add_special_tokens=False)["input_ids"]
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        encoded.append((ctx, cont))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = [0.0] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [encoded[i][0] + encoded[i][1] for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        for row, i in enumerate(idx):
            ctx, cont = encoded[i]
            positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
            targets = torch.tensor(cont)
            out[i] = logprobs[row, positions, targets].sum().item()
    return out


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stops: Sequence[str],
    batch_size: int,
    device: str,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[list[str]]:
    """Completions of each prompt (greedy when samples == 1), cut at the first stop string.

    Prompts are left-padded and batched longest first; decoding stops at eos or when every sequence of the
    batch has produced a stop string.
    """
    import torch

    encoded = [_bos(tokenizer) + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[list[str]] = [[] for _ in encoded]
    torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        sampling = {"do_sample": True, "temperature": temperature} if samples > 1 else {"do_sample": False}
        with torch.no_grad():
            generated = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                num_return_sequences=samples,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
                stop_strings=list(stops),
                tokenizer=tokenizer,
                **sampling,
            )
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for row, i in enumerate(idx):
            out[i] = [truncate_at_stop(t, stops) for t in texts[row * samples : (row + 1) * samples]]
    return out


# --- per-family scoring ----------------------------------------------------------------------------------------


def _generate_family(
    family: str, model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str, **sampling
) -> list[list[str]]:
    """Completions of a frame's prompts with the family's token budget and stop strings."""
    return generate(
        model,
        tokenizer,
        frame["prompt"].to_list(),
        max_new_tokens=settings.max_new_tokens[family],
        stops=STOP_STRINGS[family],
        batch_size=settings.batch_size,
        device=device,
        **sampling,
    )


def score_multiple_choice(model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str) -> pl.DataFrame:
    """Per-example predictions of a multiple-choice task: columns id, prediction, correct, correct_norm."""
    if settings.mc_mode == "generate":
        outputs = _generate_family("nlu", model, tokenizer, frame, settings, device)
        picks = [pick_choice(o[0], c) for o, c in zip(outputs, frame["choices"], strict=True)]
        correct = [p == a for p, a in zip(picks, frame["answer"], strict=True)]
        return pl.DataFrame(
            {
                "id": frame["id"],
                "output": [o[0] for o in outputs],
                "prediction": picks,
                "correct": correct,
                "correct_norm": correct,
            }
        )
    requests = [(p, c) for p, choices in zip(frame["prompt"], frame["choices"], strict=True) for c in choices]
    lls = choice_loglikelihoods(model, tokenizer, requests, batch_size=settings.batch_size, device=device)
    predictions, predictions_norm, k = [], [], 0
    for choices in frame["choices"]:
        scores = lls[k : k + len(choices)]
        norm = [s / max(1, len(c.encode("utf-8"))) for s, c in zip(scores, choices, strict=True)]
        predictions.append(max(range(len(choices)), key=lambda i: scores[i]))
        predictions_norm.append(max(range(len(choices)), key=lambda i: norm[i]))
        k += len(choices)
    answers = frame["answer"].to_list()
    return pl.DataFrame(
        {
            "id": frame["id"],
            "output": [None] * frame.height,
            "prediction": predictions,
            "correct": [p == a for p, a in zip(predictions, answers, strict=True)],
            "correct_norm": [p == a for p, a in zip(predictions_norm, answers, strict=True)],
        }
    )


def score_math(model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str) -> pl.DataFrame:
    """Per-example predictions of a math task: the extracted number against the target's."""
    outputs = _generate_family("math", model, tokenizer, frame, settings, device)
    predicted = [final_number(o[0]) for o in outputs]
    expected = [final_number(t) for t in frame["target"]]
    return pl.DataFrame(
        {
            "id": frame["id"],
            "output": [o[0] for o in outputs],
            "prediction": predicted,
            "correct": [p is not None and p == e for p, e in zip(predicted, expected, strict=True)],
        }
    )


def score_code(model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str) -> pl.DataFrame:
    """Per-example predictions of a code task: completions run against the tests in the sandbox."""
    n = settings.code_samples
    outputs = _generate_family(
        "code",
        model,
        tokenizer,
        frame,
        settings,
        device,
        samples=n,
        temperature=settings.temperature,
        seed=settings.seed,
    )
    passed = []
    # A fresh marker per evaluation: printed after the tests, so exiting early with status 0 is no pass.
    marker = f"quantreplay-tests-done-{random.Random().getrandbits(64):016x}"
    for completions, prefix, tests in zip(outputs, frame["code_prefix"], frame["tests"], strict=True):
        programs = [
            code_program(code_prefix=prefix or "", completion=c, tests=tests, done_marker=marker) for c in completions
        ]
        passed.append(sum(run_python(p, limits=settings.limits, expect_marker=marker).passed for p in programs))
    columns = {
        "id": frame["id"],
        "output": [o[0] for o in outputs],
        "passed": passed,
        "correct": [pass_at_k(n, c, 1) for c in passed],
    }
    for k in settings.pass_k:
        columns[f"pass@{k}"] = [pass_at_k(n, c, k) for c in passed]
    return pl.DataFrame(columns)


def task_score(family: str, predictions: pl.DataFrame, settings: EvalSettings) -> dict:
    """The task's headline metric and value (and the others) from per-example predictions."""
    n = predictions.height
    if family == "nlu":
        return {
            "metric": "acc",
            "value": predictions["correct"].mean(),
            "acc_norm": predictions["correct_norm"].mean(),
            "n": n,
        }
    if family == "math":
        return {"metric": "exact_match", "value": predictions["correct"].mean(), "n": n}
    extra = {f"pass@{k}": predictions[f"pass@{k}"].mean() for k in settings.pass_k}
    return {"metric": "pass@1", "value": predictions["correct"].mean(), "n": n, **extra}


SCORERS = {"nlu": score_multiple_choice, "math": score_math, "code": score_code}


def evaluate_checkpoint(
    *,
    base: str,
    precision: str,
    adapter: str | None,
    test_files: Sequence[str],
    settings: EvalSettings,
    quant,
    predictions_out: str,
    scores_out: str,
    cell: dict,
    threads: int,
    log=print,
) -> dict:
    """Score one checkpoint (the base in `precision`, plus `adapter` unless None) on every test file.

    Writes per-example predictions (parquet: task, id, output, prediction, correct, ...) and scores.json
    ({"cell": ..., "tasks": {task: {"family", "metric", "value", "n", ...}}}); both atomically.
    """
    import time

    import torch
    from transformers import AutoTokenizer

    from quantreplay.io import write_json, write_parquet
    from quantreplay.quantize import load_base

    started = time.perf_counter()
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = load_base(base, precision=precision, quant=quant, device=device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    predictions, tasks = [], {}
    for path in test_files:
        frame = subsample(pl.read_parquet(path), max_examples=settings.max_examples, seed=settings.seed)
        task, family = frame["task"][0], frame["family"][0]
        t0 = time.perf_counter()
        scored = SCORERS[family](model, tokenizer, frame, settings, device)
        tasks[task] = {"family": family, **task_score(family, scored, settings), "seconds": time.perf_counter() - t0}
        log(
            f"{task}: {tasks[task]['metric']} {tasks[task]['value']:.4f} (n={frame.height}, "
            f"{tasks[task]['seconds']:.1f} s)"
        )
        if "prediction" in scored.columns:
            # Choice indices and numbers in one column across tasks.
            scored = scored.with_columns(pl.col("prediction").cast(pl.String))
        predictions.append(scored.with_columns(task=pl.lit(task)))
    write_parquet(pl.concat(predictions, how="diagonal_relaxed"), predictions_out)
    report = {"cell": cell, "adapter": adapter, "tasks": tasks, "wall_seconds": time.perf_counter() - started}
    write_json(scores_out, report, indent=1)
    return report


def settings_from_config(evaluation: dict) -> EvalSettings:
    """EvalSettings from config `evaluation`."""
    from quantreplay.train import settings_from_dict

    return settings_from_dict(EvalSettings, evaluation)


def run_evaluation(
    *,
    base_dir: str,
    adapter: str | None,
    test_files: Sequence[str],
    settings: dict,
    predictions_out: str,
    scores_out: str,
    cell: dict,
    threads: int,
    log=print,
) -> dict:
    """The evaluate step: typed settings from the job's params, then `evaluate_checkpoint`."""
    from quantreplay.bases import resolve_base
    from quantreplay.quantize import QuantConfig
    from quantreplay.train import settings_from_dict

    return evaluate_checkpoint(
        base=resolve_base(base_dir),
        precision=cell["precision"],
        adapter=adapter,
        test_files=test_files,
        settings=settings_from_config(settings["evaluation"]),
        quant=settings_from_dict(QuantConfig, settings["quantization"]),
        predictions_out=predictions_out,
        scores_out=scores_out,
        cell=cell,
        threads=threads,
        log=log,
    )
