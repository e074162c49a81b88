"""Scoring one checkpoint on every task's test split.

Tasks are data (quantreplay.data.rows); scoring depends on the family:

- nlu (multiple choice): the log-likelihood of each choice given the prompt, as lm-evaluation-harness does:
  `acc` takes the most likely choice, `acc_norm` divides each log-likelihood by the choice's length in bytes.
  Each prompt is read once for all its choices (quantreplay.loglik).
  Or, mirroring the paper, `generate`: decoding, then the first choice the output names; or `label_word`: decoding,
  then the first of the authors' label words (answer1, solution2, true, ...) the output names.
- math: decoding with stop strings; the number after `####` (else the last number) must equal the target's final
  number (`exact_match`).
- code: decoding (or n samples, scored with the unbiased pass@k estimator); the judge (quantreplay.judge)
  runs the completion and the row's tests in two separate sandboxes (quantreplay.sandbox) and decides outside
  both.

Decoding is greedy unless `decoding: sample` (EvalSettings), the authors' sampled answers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from quantreplay import controls, lm
from quantreplay.extract import (
    STOP_STRINGS,
    final_number,
    pass_at_k,
    pick_choice,
    pick_label_word,
    rouge1_f,
    truncate_at_stop,
)
from quantreplay.judge import count_passes
from quantreplay.loglik import choice_loglikelihoods
from quantreplay.sandbox import SANDBOXES, Limits, boundary
from quantreplay.settings import SettingError, Settings, non_negative, one_of, parse, positive, setting

MC_MODES = ("loglik", "generate", "label_word")
# How generation decodes: greedy, or sampled (at `temperature`, with `top_k` / `top_p`, seeded by `seed`).
DECODINGS = ("greedy", "sample")
# How a code completion is scored: run against the row's tests (pass@k), or ROUGE-1 F against the reference
# solution (the authors' code, which runs nothing).
CODE_METRICS = ("pass_at_k", "rouge1")


def _families_present(budgets: dict) -> bool:
    return set(STOP_STRINGS) <= set(budgets) and all(isinstance(v, int) and v >= 1 for v in budgets.values())


def _example_cap(value) -> bool:
    """null, a positive count for every task, or one per family (a positive count or null for each)."""
    if isinstance(value, dict):
        return set(value) == set(STOP_STRINGS) and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in value.values()
        )
    return value is None or positive(value)


@dataclass(frozen=True)
class EvalSettings(Settings):
    """How a checkpoint is evaluated (config `evaluation`).

    max_examples: per task, a seeded subsample of the test split (None: all), or one such cap per family
    (multiple choice costs a forward pass per example, generation a pass per token: a family's interval width
    can be bought where it is cheap). batch_size: sequences per
    forward. max_new_tokens: generation budget per family. mc_mode: loglik, generate (the choice
    the output names by its text) or label_word (by the authors' label words). code_samples: n
    completions per code problem (1: as `decoding`; more: sampled, pass@k for k <= n). decoding: greedy, or
    sample every generation (multiple choice by generation, math, code) at `temperature`, keeping the `top_k` most
    likely tokens and the smallest set of probability `top_p` (null: the model's generation config), from `seed`
    at the start of each task. code_metric: pass_at_k (run against the tests) or rouge1 (ROUGE-1 F against the
    reference solution, the mean over a problem's samples; nothing runs). drop_last: score
    only whole batches of `batch_size` examples of each task, dropping its last partial batch (the authors' code).
    """

    max_examples: int | dict | None = setting(
        None, _example_cap, f"positive, null, or a positive count or null for each of {', '.join(STOP_STRINGS)}"
    )
    batch_size: int = setting(32, positive, "positive")
    max_new_tokens: dict = setting(
        {"nlu": 8, "math": 160, "code": 96},
        _families_present,
        f"a positive budget for each of {', '.join(STOP_STRINGS)}",
    )
    mc_mode: str = setting("loglik", one_of(*MC_MODES), f"one of {', '.join(MC_MODES)}")
    code_samples: int = setting(1, positive, "positive")
    decoding: str = setting("greedy", one_of(*DECODINGS), f"one of {', '.join(DECODINGS)}")
    temperature: float = setting(0.8, positive, "positive")
    top_k: int | None = setting(None, positive, "a positive integer or null")
    top_p: float | None = setting(None, lambda v: 0 < v <= 1, "in (0, 1] or null")
    pass_k: tuple[int, ...] = setting((1,))
    code_metric: str = setting("pass_at_k", one_of(*CODE_METRICS), f"one of {', '.join(CODE_METRICS)}")
    seed: int = setting(0, non_negative, "non-negative")
    sandbox_wall_seconds: float = setting(10.0, positive, "positive")
    sandbox_cpu_seconds: int = setting(5, positive, "positive")
    sandbox_memory_mb: int = setting(1024, positive, "positive")
    code_sandbox: str = setting("bubblewrap", one_of(*SANDBOXES), f"one of {', '.join(SANDBOXES)}")
    drop_last: bool = setting(False)

    def _check_fields(self) -> None:
        # A sampling filter that nothing samples with is a config that does not do what it says.
        for name in ("top_k", "top_p"):
            if getattr(self, name) is not None and self.decoding == "greedy" and self.code_samples == 1:
                raise SettingError(name, "applies only to sampling: set decoding: sample (or code_samples above 1)")
        if self.code_metric == "rouge1" and self.pass_k != (1,):
            raise SettingError("pass_k", f"is not reported with code_metric rouge1, got {list(self.pass_k)}")
        if any(k < 1 or k > self.code_samples for k in self.pass_k):
            raise SettingError("pass_k", f"must lie in [1, code_samples={self.code_samples}], got {list(self.pass_k)}")
        if len(set(self.pass_k)) < len(self.pass_k):
            raise SettingError("pass_k", f"lists a k twice, got {list(self.pass_k)}")
        # The CPU limit could never be reached: a program is stopped by the wall clock first.
        if self.sandbox_cpu_seconds > self.sandbox_wall_seconds:
            raise SettingError(
                "sandbox_cpu_seconds",
                f"{self.sandbox_cpu_seconds} exceeds sandbox_wall_seconds={self.sandbox_wall_seconds}",
            )

    def examples_for(self, family: str) -> int | None:
        """The test examples kept per task of `family` (None: all)."""
        return self.max_examples[family] if isinstance(self.max_examples, dict) else self.max_examples

    @property
    def limits(self) -> Limits:
        return Limits(
            wall_seconds=self.sandbox_wall_seconds,
            cpu_seconds=self.sandbox_cpu_seconds,
            memory_bytes=self.sandbox_memory_mb * 2**20,
        )


def subsample(frame: pl.DataFrame, *, max_examples: int | None, seed: int) -> pl.DataFrame:
    """A seeded subsample of at most `max_examples` rows, in the original order."""
    if max_examples is None or frame.height <= max_examples:
        return frame
    keep = sorted(random.Random(f"eval-{seed}-{frame['task'][0]}").sample(range(frame.height), max_examples))
    return frame[keep]


def drop_partial_batch(frame: pl.DataFrame, *, batch_size: int) -> pl.DataFrame:
    """The rows of `frame` that fill whole batches of `batch_size`, in order: the authors' evaluation loader drops
    the last partial batch of each task. Raises ConfigError (evaluation.drop_last) if that leaves none."""
    from quantreplay.errors import ConfigError

    keep = frame.height - frame.height % batch_size
    if keep == 0:
        raise ConfigError(
            f"evaluation.drop_last: task {frame['task'][0]!r} has {frame.height} test examples, fewer than "
            f"batch_size={batch_size}: dropping the last partial batch leaves none"
        )
    return frame.head(keep)


# --- model calls --------------------------------------------------------------------------------------------


def completion_stops(tokenizer, stops: Sequence[str], prompt_width: int):
    """A stopping criterion for `model.generate` on left-padded prompts `prompt_width` tokens wide: per row, whether
    the completion so far (the tokens after the prompt) holds one of `stops`.

    transformers' own `stop_strings` match the end of the whole sequence, prompt included: a completion that begins
    with the rest of a stop string ended after its first token (MBPP's prompt ends in a newline and its answer
    begins `def `, which with the stop `\ndef ` made every answer `def x`)."""
    import torch
    from transformers import StoppingCriteria

    class CompletionStops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_width:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stops) for t in texts], device=input_ids.device)

    return CompletionStops()


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
    sample: bool = False,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> list[list[str]]:
    """Completions of each prompt, cut at the first stop string: greedy, or sampled when `sample` or samples > 1
    (at `temperature`, with `top_k` and `top_p` where given; torch's generator seeded with `seed` first, so the
    same call gives the same samples).

    Prompts are left-padded and batched longest first; decoding stops at eos or when every sequence of the
    batch has produced a stop string in its completion (`completion_stops`).
    """
    import torch
    from transformers import StoppingCriteriaList

    encoded = [lm.bos_ids(tokenizer) + lm.encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = lm.pad_id(tokenizer)
    out: list[list[str]] = [[] for _ in encoded]
    torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = lm.pad_batch([encoded[i] for i in idx], pad=pad, side="left")
        width = batch["input_ids"].shape[1]
        sampling = {"do_sample": False}
        if sample or samples > 1:
            filters = {k: v for k, v in (("top_k", top_k), ("top_p", top_p)) if v is not None}
            sampling = {"do_sample": True, "temperature": temperature, **filters}
        with torch.no_grad():
            generated = model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                num_return_sequences=samples,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([completion_stops(tokenizer, list(stops), width)]),
                **sampling,
            )
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for row, i in enumerate(idx):
            out[i] = [truncate_at_stop(t, stops) for t in texts[row * samples : (row + 1) * samples]]
    return out


# --- per-family scoring ----------------------------------------------------------------------------------------


def _generate_family(
    family: str, model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str, samples: int = 1
) -> list[list[str]]:
    """`samples` completions of each of a frame's prompts with the family's token budget and stop strings, decoded
    as the settings say."""
    return generate(
        model,
        tokenizer,
        frame["prompt"].to_list(),
        max_new_tokens=settings.max_new_tokens[family],
        stops=STOP_STRINGS[family],
        batch_size=settings.batch_size,
        device=device,
        samples=samples,
        sample=settings.decoding == "sample",
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        seed=settings.seed,
    )


def score_multiple_choice(model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str) -> pl.DataFrame:
    """Per-example predictions of a multiple-choice task: columns id, prediction, correct, correct_norm."""
    if settings.mc_mode in ("generate", "label_word"):
        outputs = _generate_family("nlu", model, tokenizer, frame, settings, device)
        if settings.mc_mode == "generate":
            picks = [pick_choice(o[0], c) for o, c in zip(outputs, frame["choices"], strict=True)]
        else:
            task = frame["task"][0]
            picks = [pick_label_word(o[0], task, c) for o, c in zip(outputs, frame["choices"], strict=True)]
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


def code_passes(completions: Sequence[Sequence[str]], frame: pl.DataFrame, settings: EvalSettings) -> list[int]:
    """How many of each code problem's completions pass its tests, judged in the settings' sandbox."""
    return count_passes(
        completions,
        frame["code_prefix"].to_list(),
        frame["tests"].to_list(),
        frame["entry_point"].to_list(),
        settings.limits,
        boundary(settings.code_sandbox),
    )


def score_code(model, tokenizer, frame: pl.DataFrame, settings: EvalSettings, device: str) -> pl.DataFrame:
    """Per-example predictions of a code task: completions run against the tests in the sandbox, or (code_metric
    rouge1) their ROUGE-1 F against the reference solution, averaged over the samples, in `correct`."""
    n = settings.code_samples
    outputs = _generate_family("code", model, tokenizer, frame, settings, device, samples=n)
    if settings.code_metric == "rouge1":
        rouge = [sum(rouge1_f(o, t) for o in out) / n for out, t in zip(outputs, frame["target"], strict=True)]
        return pl.DataFrame({"id": frame["id"], "output": [o[0] for o in outputs], "correct": rouge})
    passed = code_passes(outputs, frame, settings)
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
    if settings.code_metric == "rouge1":
        return {"metric": "rouge1", "value": predictions["correct"].mean(), "n": n}
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

    from quantreplay.io import read_parquet, write_json, write_parquet
    from quantreplay.quantize import compute_dtype, cpu_capability, cpu_layers_to_apply

    started = time.perf_counter()
    frames = [
        subsample(
            frame, max_examples=settings.examples_for(frame["family"][0]) if frame.height else None, seed=settings.seed
        )
        for frame in map(read_parquet, test_files)
    ]
    if settings.drop_last:
        frames = [drop_partial_batch(frame, batch_size=settings.batch_size) for frame in frames]
    # Before the model loads: where code cannot be scored safely, say so in one line and stop.
    runs_code = any(frame["family"][0] == "code" for frame in frames) and settings.code_metric == "pass_at_k"
    sandbox = boundary(settings.code_sandbox).description if runs_code else None
    device = lm.job_device(threads)
    tokenizer, model = lm.load_checkpoint(base, precision=precision, quant=quant, device=device, adapter=adapter)
    model.eval()
    # From process start (interpreter, imports, model load) to the first scored example.
    startup = lm.seconds_since_process_start()
    predictions, tasks = [], {}
    for frame in frames:
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
    report = {
        "cell": cell,
        "adapter": adapter,
        "tasks": tasks,
        "wall_seconds": time.perf_counter() - started,
        "startup_seconds": startup,
        "compute_dtype": compute_dtype(precision, quant=quant, device=device),
        "control_arm": controls.describe(precision, noise_seed=quant.noise_seed),
        "cpu_capability": cpu_capability(),
        # Whether the int8/nf4 layers ran as fp32 Linear layers holding their weights (quantization.cpu_layers).
        "dequantized_cpu_layers": cpu_layers_to_apply(precision, quant=quant, device=device, training=False),
        "device": lm.device_name(device),
        "code_sandbox": sandbox,
    }
    write_json(scores_out, report, indent=1)
    return report


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
    """The evaluate step: the inputs checked against their manifests, typed settings from the job's params, then
    `evaluate_checkpoint`."""
    from quantreplay.bases import checked_base
    from quantreplay.manifest import check_inputs
    from quantreplay.quantize import QuantConfig

    check_inputs(adapter, test_files)
    return evaluate_checkpoint(
        base=checked_base(base_dir),
        precision=cell["precision"],
        adapter=adapter,
        test_files=test_files,
        settings=parse(EvalSettings, settings["evaluation"], "evaluation"),
        quant=parse(QuantConfig, settings["quantization"], "quantization"),
        predictions_out=predictions_out,
        scores_out=scores_out,
        cell=cell,
        threads=threads,
        log=log,
    )
