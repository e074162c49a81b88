"""One continual-learning stage: LoRA fine-tuning of a frozen (possibly quantized) base on one stage's data.

Read top to bottom: settings, tokenization and length-grouped batches, then
`train_stage`, the loop (load, build, step, log, save). Stage 1 creates the adapter; every later stage loads
the previous stage's adapter and keeps training it, so the DAG's order is the training order.

Or, for the precisions that `continuation` says `merge` (the authors' fp16), a later stage merges the previous
adapter into the frozen base and trains a fresh one. The merged base keeps the previous update beside the base's
own weights, unrounded (a frozen LoRA in fp32): for int8 and nf4 the base's quantized weights stay as they are,
never dequantized and re-quantized, so the factor changes how the adapter continues and not the quantization
error. The stage saves one adapter of the summed update (`save_merged_adapter`, rank r per stage so far), so every
checkpoint is still one standard PEFT folder on the original base.
"""

from __future__ import annotations

import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import polars as pl

from quantreplay import controls, lm
from quantreplay.io import package_versions, read_parquet, sha256_files, staging_dir, write_json
from quantreplay.manifest import check_inputs, write_manifest
from quantreplay.quantize import (
    PRECISIONS,
    QuantConfig,
    compute_dtype,
    cpu_capability,
    dequantize_cpu_layers,
    load_base,
    quantized_layers,
    weight_bytes,
)
from quantreplay.schedule import SCHEDULES, lr_at
from quantreplay.settings import SettingError, Settings, non_negative, one_of, parse, positive, setting

# The paper's LoRA targets: every attention and MLP projection of a Llama block.
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Batches are formed within windows of this many batches sorted by length: padding stays small while the
# order stays random (the megabatch trick of HF's LengthGroupedSampler).
LENGTH_WINDOW_BATCHES = 50
# The training loss: the mean over the batch's target tokens (every token weighs the same), or the authors' sum of
# each sequence's target-token losses averaged over the batch (a long answer weighs more, and the step grows with
# the answers' length).
LOSS_REDUCTIONS = ("token_mean", "sequence_sum")
# Gradient clipping: one norm over every adapter tensor (torch's clip_grad_norm_), or each tensor clipped to the
# norm on its own (the authors' code, which clips inside each parameter's backward hook).
CLIP_SCOPES = ("global", "per_tensor")
# How a later stage continues: training the previous stage's adapter further, or merging it into the frozen base
# and training a fresh adapter (the authors' fp16).
CONTINUATIONS = ("continue", "merge")
# The PEFT adapter name of the previous stages' frozen, merged update while a merge stage trains.
MERGED = "merged"


@dataclass(frozen=True)
class LoraSettings(Settings):
    """The adapter (config `lora`): rank r, scale alpha (the update is scaled by alpha / r), dropout on the
    adapter's input, the module names that get an adapter."""

    r: int = setting(8, positive, "a positive integer")
    alpha: float = setting(16, positive, "positive")
    dropout: float = setting(0.05, lambda v: 0 <= v < 1, "in [0, 1)")
    target_modules: tuple[str, ...] = setting(LLAMA_PROJECTIONS, len, "non-empty")


@dataclass(frozen=True)
class StageSettings(Settings):
    """How one stage trains (config `training`, with `training.stages.<family>` applied).

    Steps: `max_steps` if set, else ceil(epochs * examples / batch_size). Learning rate: linear warmup over
    `warmup_steps` to `lr`, then `schedule` (cosine or linear decay to zero, or constant; quantreplay.schedule).
    Forgetting inside a stage: before the first step and every `probe_every(steps)` steps (about `probe_points`
    times a stage), the eval-mode loss of `probe_examples` fixed test examples of every earlier task.
    Loss: `loss_reduction` (LOSS_REDUCTIONS, `stage_loss`); gradients clipped to `grad_clip` over `grad_clip_scope`
    (CLIP_SCOPES, `clip_gradients`).
    """

    lr: float = setting(2e-4, positive, "positive")
    epochs: float = setting(1.0, positive, "positive")
    max_steps: int | None = setting(None, positive, "a positive integer or null")
    warmup_steps: int = setting(0, non_negative, "non-negative")
    schedule: str = setting("cosine", one_of(*SCHEDULES), f"one of {', '.join(SCHEDULES)}")
    batch_size: int = setting(8, positive, "a positive integer")
    max_seq_len: int = setting(256, lambda v: v >= 8, "at least 8")
    weight_decay: float = setting(0.0, non_negative, "non-negative")
    grad_clip: float = setting(1.0, positive, "positive")
    grad_clip_scope: str = setting("global", one_of(*CLIP_SCOPES), f"one of {', '.join(CLIP_SCOPES)}")
    loss_reduction: str = setting("token_mean", one_of(*LOSS_REDUCTIONS), f"one of {', '.join(LOSS_REDUCTIONS)}")
    gradient_checkpointing: bool = setting(False)
    probe_points: int = setting(20, non_negative, "a non-negative integer")
    probe_examples: int = setting(8, positive, "a positive integer")

    def _check_fields(self) -> None:
        # Warmup past the last step never reaches `lr` and leaves no decay: a typo, or max_steps lowered alone.
        if self.max_steps is not None and self.warmup_steps > self.max_steps:
            raise SettingError("warmup_steps", f"{self.warmup_steps} exceeds max_steps={self.max_steps}")

    def steps_for(self, n_examples: int) -> int:
        """Optimizer steps of this stage on `n_examples` examples."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * n_examples / self.batch_size))

    def probe_every(self, steps: int) -> int | None:
        """Steps between two probes of a stage of `steps` steps (None: no probe)."""
        return max(1, math.ceil(steps / self.probe_points)) if self.probe_points else None


def _continuation_map(value) -> bool:
    return all(p in PRECISIONS and m in CONTINUATIONS for p, m in value.items())


@dataclass(frozen=True)
class ContinuationSettings(Settings):
    """How every stage after the first continues (config `continuation`): `mode` for every precision, and
    `per_precision` overrides, e.g. {fp16: merge} for the authors' protocol (fp16 merges, int8 and nf4 continue)."""

    mode: str = setting("continue", one_of(*CONTINUATIONS), f"one of {', '.join(CONTINUATIONS)}")
    per_precision: dict = setting(
        {}, _continuation_map, f"a map of precisions ({', '.join(PRECISIONS)}) to {' or '.join(CONTINUATIONS)}"
    )

    def for_precision(self, precision: str) -> str:
        """The continuation of `precision`'s later stages."""
        return self.per_precision.get(precision, self.mode)


@dataclass
class Example:
    """One tokenized training example: the ids and the labels (prompt positions masked)."""

    input_ids: list[int]
    labels: list[int]


def encode_pairs(tokenizer, prompts: Sequence[str], targets: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids + eos) of each pair, whole: one call into the tokenizer for each side."""
    eos = [tokenizer.eos_token_id]
    return [
        (prompt_ids, target_ids + eos)
        for prompt_ids, target_ids in zip(
            lm.encode_many(tokenizer, prompts), lm.encode_many(tokenizer, targets), strict=True
        )
    ]


def fit_example(bos: list[int], prompt_ids: list[int], target_ids: list[int], *, max_seq_len: int) -> Example:
    """bos + prompt + target (ids from `encode_pairs`) in `max_seq_len`, with the loss only on the target.

    An over-long example loses the start of its prompt first (the end of the prompt is what the target follows),
    then the end of its target; at least one prompt token stays.
    """
    target_ids = target_ids[: max_seq_len - len(bos) - 1]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_seq_len - len(bos) - len(target_ids))) :]
    labels = [lm.IGNORE_INDEX] * (len(bos) + len(prompt_ids)) + target_ids
    return Example(bos + prompt_ids + target_ids, labels)


def tokenize_examples(tokenizer, prompts: Sequence[str], targets: Sequence[str], *, max_seq_len: int) -> list[Example]:
    """bos + prompt + target + eos of each pair, with the loss only on target and eos, fitted by `fit_example`."""
    bos = lm.bos_ids(tokenizer)
    return [fit_example(bos, p, t, max_seq_len=max_seq_len) for p, t in encode_pairs(tokenizer, prompts, targets)]


def _own_keys(stage: StageSettings) -> dict:
    return {name: f"training.{name}" for name in stage.to_dict()}


def check_stage_fits(
    pairs: Sequence[tuple[list[int], list[int]]], rows: pl.DataFrame, *, bos: int, stage: StageSettings, keys: dict
) -> int:
    """What only the data can tell about a stage's settings, before its model loads; returns how many examples
    lose the start of their prompt to `max_seq_len`.

    `pairs` are the rows' `encode_pairs`, `bos` the length of the bos ids, `keys` the config key of each setting
    (`training.max_seq_len` or `training.stages.<family>.max_seq_len`). Truncation may drop the start of some
    prompts, as every fine-tuning recipe with a length cap does; it may not cut a target (the model would learn
    a cut answer, or never to stop) nor truncate every example (the cap is then below the data, as with
    max_seq_len: 8). Raises ConfigError naming the key, its value and the longest example (task and file); also
    when `warmup_steps` exceeds the steps that `epochs` make of these examples.
    """
    from quantreplay.errors import ConfigError

    cap = stage.max_seq_len
    lengths = [bos + len(p) + len(t) for p, t in pairs]
    # fit_example keeps the target with eos and at least one prompt token.
    cut_targets = sum(bos + len(t) + 1 > cap for _, t in pairs)
    truncated = sum(n > cap for n in lengths)
    if cut_targets or (truncated and truncated == len(pairs)):
        longest = max(range(len(lengths)), key=lengths.__getitem__)
        where = f"task {rows['task'][longest]!r} in {rows['file'][longest]}"
        raise ConfigError(
            f"{keys['max_seq_len']}: {cap} truncates {truncated} of {len(pairs)} examples, cutting {cut_targets} "
            f"targets; the longest is {lengths[longest]} tokens ({where}), the shortest {min(lengths)}. "
            "Truncation may drop the start of some prompts, never a target nor every example"
        )
    steps = stage.steps_for(len(pairs))
    if stage.warmup_steps > steps:
        raise ConfigError(
            f"{keys['warmup_steps']}: {stage.warmup_steps} exceeds the stage's {steps} steps "
            f"({stage.epochs} epochs of {len(pairs)} examples at batch_size {stage.batch_size})"
        )
    return truncated


def tokenize_example(tokenizer, prompt: str, target: str, *, max_seq_len: int) -> Example:
    """One pair's `tokenize_examples`."""
    return tokenize_examples(tokenizer, [prompt], [target], max_seq_len=max_seq_len)[0]


def length_grouped_batches(lengths: Sequence[int], *, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches of example indices: epochs of seeded shuffles, sorted by length within windows.

    Each epoch is a fresh permutation cut into windows of LENGTH_WINDOW_BATCHES batches; inside a window the
    examples are sorted by length before being cut into batches, and the batches of an epoch are shuffled.
    """
    rng = random.Random(seed)
    batches: list[list[int]] = []
    window = batch_size * LENGTH_WINDOW_BATCHES
    while len(batches) < steps:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        epoch = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
            epoch += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(epoch)
        batches += epoch
    return batches[:steps]


def collate(examples: Sequence[Example], *, pad_id: int):
    """Right-pad a batch to its longest example: input_ids, attention_mask, labels tensors."""
    return lm.pad_batch([e.input_ids for e in examples], pad=pad_id, labels=[e.labels for e in examples])


def sequence_nll(logits, labels):
    """Each sequence's summed negative log-likelihood of its target tokens (labels other than IGNORE_INDEX, each
    predicted from the position before), and how many target tokens it has. In fp32, as transformers' own loss."""
    import torch.nn.functional as F

    targets = labels[:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1, :].float().transpose(1, 2), targets, ignore_index=lm.IGNORE_INDEX, reduction="none"
    )
    return nll.sum(dim=1), (targets != lm.IGNORE_INDEX).sum(dim=1)


def sequence_sum_loss(logits, labels):
    """The authors' loss: each sequence's summed negative log-likelihood of its target tokens, averaged over the
    batch."""
    return sequence_nll(logits, labels)[0].mean()


def stage_loss(model, batch: Mapping, *, reduction: str):
    """The loss a step minimizes on `batch` (collate's tensors): `token_mean`, the model's own loss (the mean over
    the batch's target tokens), or `sequence_sum` (`sequence_sum_loss`)."""
    if reduction == "token_mean":
        return model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_sum_loss(logits, batch["labels"])


def clip_gradients(parameters: Sequence, *, max_norm: float, scope: str) -> None:
    """Clip the gradients of `parameters` in place to `max_norm`: their global norm (`global`), or each tensor's
    own norm (`per_tensor`)."""
    import torch

    if scope == "global":
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    for parameter in parameters:
        if parameter.grad is not None:
            torch.nn.utils.clip_grad_norm_(parameter, max_norm)


def probe_rows(path: str, *, examples: int, columns: Sequence[str] = ("task", "prompt", "target")) -> pl.DataFrame:
    """`columns` of one task's probe examples from its test split at `path`: the first `examples` rows of a
    shuffle seeded by the task's name alone, so every cell, stage and precision probes the same examples (all of
    them when the split holds no more)."""
    rows = read_parquet(path, columns=list(dict.fromkeys(["task", *columns])))
    picked = random.Random(f"probe:{rows['task'][0]}").sample(range(rows.height), min(examples, rows.height))
    return rows[picked].select(columns)


def probe_sets(tokenizer, test_files: Sequence[str], *, examples: int, max_seq_len: int) -> dict[str, list[Example]]:
    """Per task of `test_files`, its probe set (`probe_rows`), tokenized as training examples."""
    probes = {}
    for path in test_files:
        rows = probe_rows(path, examples=examples)
        probes[rows["task"][0]] = tokenize_examples(tokenizer, rows["prompt"], rows["target"], max_seq_len=max_seq_len)
    return probes


def probe_losses(model, probes: Mapping[str, Sequence[Example]], *, pad_id: int, device: str) -> dict[str, float]:
    """Each probe set's loss (mean over its target tokens) in eval mode; the model is back in train mode after."""
    import torch

    model.eval()
    losses = {}
    with torch.no_grad():
        for task, examples in probes.items():
            batch = {k: v.to(device) for k, v in collate(examples, pad_id=pad_id).items()}
            losses[task] = round(model(**batch).loss.item(), 6)
    model.train()
    return losses


def read_training_rows(paths: Sequence[str]) -> pl.DataFrame:
    """Concatenate the training parquets of a stage (each a task split or a replay mix); `file` says which."""
    frames = [
        read_parquet(p, columns=["id", "task", "prompt", "target"]).with_columns(file=pl.lit(str(p))) for p in paths
    ]
    return pl.concat(frames, how="vertical")


def attach_adapter(
    model,
    *,
    lora: LoraSettings,
    previous_adapter: str | None,
    seed: int,
    gradient_checkpointing: bool,
    continuation: str = "continue",
):
    """Wrap `model` with a trainable LoRA adapter: a new one (seeded init), the previous stage's (`continue`), or
    a new one on the base with the previous stage's update merged in (`merge`: the previous adapter frozen as
    adapter MERGED, without dropout, active beside the new one; the new one starts at zero update)."""
    import torch
    from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        # Norms and embeddings in fp32 and input grads on, as QLoRA does; checkpointing only when asked,
        # since for small models on CPU it costs 25-50 % per step and saves little.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if previous_adapter is not None and continuation == "continue":
        return PeftModel.from_pretrained(model, previous_adapter, is_trainable=True)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    if previous_adapter is None:
        torch.manual_seed(seed)
        return get_peft_model(model, config)
    merged = PeftConfig.from_pretrained(previous_adapter)
    # The merged update is part of the frozen base: no dropout on it, no gradient.
    merged.lora_dropout = 0.0
    merged.inference_mode = True
    model = PeftModel.from_pretrained(model, previous_adapter, adapter_name=MERGED, config=merged)
    torch.manual_seed(seed)
    model.add_adapter("default", config)
    model.base_model.set_adapter([MERGED, "default"])
    for name, parameter in model.named_parameters():
        if f".{MERGED}." in name:
            parameter.requires_grad = False
    return model


def _lora_scale(config) -> float:
    # PEFT multiplies a LoRA's B @ A by alpha / r (alpha / sqrt(r) with rsLoRA, which these adapters never use).
    if config.use_rslora or config.rank_pattern or config.alpha_pattern:
        raise ValueError("merging needs one rank and alpha for every module, without rsLoRA")
    return config.lora_alpha / config.r


def save_merged_adapter(model, output: str) -> None:
    """Save a merge stage's whole update as one PEFT adapter of the original base: per module A = [A_merged;
    A_new] and B = [s_merged B_merged, s_new B_new] (s = alpha / r), rank r_merged + r_new at scale 1, no dropout.
    Its update B @ A is the merged adapter's plus the new one's, so it loads as any stage's adapter."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    parts = [(get_peft_model_state_dict(model, adapter_name=n), model.peft_config[n]) for n in (MERGED, "default")]
    state = {}
    for key in parts[1][0]:
        if key.endswith("lora_A.weight"):
            state[key] = torch.cat([p[key].float() for p, _ in parts], dim=0)
        elif key.endswith("lora_B.weight"):
            state[key] = torch.cat([p[key].float() * _lora_scale(c) for p, c in parts], dim=1)
        else:
            raise ValueError(f"cannot merge adapter weight {key}")
    new = parts[1][1]
    rank = sum(c.r for _, c in parts)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        target_modules=sorted(new.target_modules),
        task_type="CAUSAL_LM",
        base_model_name_or_path=new.base_model_name_or_path,
    )
    os.makedirs(output, exist_ok=True)
    config.save_pretrained(output)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(output, "adapter_model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip


@dataclass
class StageResult:
    """What `train_stage` reports (also written to train.json)."""

    steps: int
    examples: int
    loss_curve: list[list[float]] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def train_stage(
    *,
    base: str,
    precision: str,
    train_files: Sequence[str],
    previous_adapter: str | None,
    adapter_out: str,
    report_out: str,
    lora: LoraSettings,
    quant: QuantConfig,
    stage: StageSettings,
    seed: int,
    threads: int,
    cell: dict,
    probe_files: Sequence[str] = (),
    setting_keys: dict | None = None,
    continuation: str = "continue",
    log: Callable[[str], None] = print,
) -> StageResult:
    """Train one stage and write the adapter (a PEFT folder) and train.json.

    `base` is what `from_pretrained` takes (see quantreplay.bases.resolve_base); `train_files` are the stage's
    parquets; `previous_adapter` is the previous stage's adapter folder, None for stage 1, which `continuation`
    (CONTINUATIONS) trains further or merges into the base under a fresh adapter. `cell` (model,
    precision, seed, buffer, stage) is copied into the report. The adapter folder is written under a temporary
    name and renamed when complete; its manifest (quantreplay.manifest) is written once it is in place.
    """
    import torch
    from tqdm import tqdm

    started = time.perf_counter()
    device = lm.job_device(threads)
    torch.manual_seed(seed)

    # --- load: data and tokenizer (checked against the settings), frozen base in the cell's precision, adapter -
    rows = read_training_rows(train_files)
    tokenizer = lm.load_tokenizer(base)
    bos = lm.bos_ids(tokenizer)
    pairs = encode_pairs(tokenizer, rows["prompt"], rows["target"])
    truncated = check_stage_fits(pairs, rows, bos=len(bos), stage=stage, keys=setting_keys or _own_keys(stage))
    examples = [fit_example(bos, p, t, max_seq_len=stage.max_seq_len) for p, t in pairs]
    model = load_base(base, precision=precision, quant=quant, device=device)
    pad_id = lm.pad_id(tokenizer)
    layers = quantized_layers(model)
    base_bytes = weight_bytes(model)
    dequantized_layers = dequantize_cpu_layers(model, precision, quant=quant, device=device, training=True)
    model = attach_adapter(
        model,
        lora=lora,
        previous_adapter=previous_adapter,
        seed=seed,
        gradient_checkpointing=stage.gradient_checkpointing,
        continuation=continuation,
    )
    merging = previous_adapter is not None and continuation == "merge"
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    log(
        f"{len(examples)} examples ({truncated} lose the start of their prompt to max_seq_len={stage.max_seq_len}); "
        f"base {precision} {layers}; trainable {n_trainable:,} of {n_total:,}"
    )

    # --- build: batches, optimizer ------------------------------------------------------------------------
    steps = stage.steps_for(len(examples))
    batches = length_grouped_batches(
        [len(e.input_ids) for e in examples], batch_size=stage.batch_size, steps=steps, seed=seed
    )
    optimizer = torch.optim.AdamW(trainable, lr=stage.lr, weight_decay=stage.weight_decay)
    # fp16 matmuls on a GPU (an fp16 base, or NF4 with fp16 compute) carry fp16 gradients that underflow without
    # mixed precision's loss scaling. The adapter's weights are fp32 (peft upcasts them), so their gradients can be
    # unscaled before clipping. A disabled scaler (CPU, every other precision) leaves loss and step unchanged.
    fp16_on_gpu = device == "cuda" and compute_dtype(precision, quant=quant, device=device) == "fp16"
    scaler = torch.amp.GradScaler(device, enabled=fp16_on_gpu)
    model.train()
    probes = probe_sets(tokenizer, probe_files, examples=stage.probe_examples, max_seq_len=stage.max_seq_len)
    probe_every = stage.probe_every(steps) if probes else None
    probe_curve: list[list] = []
    probe_seconds = 0.0

    def probe(done: int) -> None:
        nonlocal probe_seconds
        t0 = time.perf_counter()
        probe_curve.extend([done, task, loss] for task, loss in probe_losses(model, probes, pad_id=pad_id,
                                                                             device=device).items())  # fmt: skip
        probe_seconds += time.perf_counter() - t0

    # --- step, log ----------------------------------------------------------------------------------------
    curve: list[list[float]] = []
    tokens = padded = 0
    step_seconds: list[float] = []
    progress = tqdm(batches, desc=f"{precision} {cell.get('stage')}", file=sys.stderr, mininterval=5)
    startup = None
    for step, indices in enumerate(progress):
        if startup is None:
            startup = lm.seconds_since_process_start()
            if probe_every:
                probe(0)
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(
                step, lr=stage.lr, warmup_steps=stage.warmup_steps, total_steps=steps, schedule=stage.schedule
            )
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in indices], pad_id=pad_id).items()}
        loss = stage_loss(model, batch, reduction=stage.loss_reduction)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        clip_gradients(trainable, max_norm=stage.grad_clip, scope=stage.grad_clip_scope)
        # Skips the update (and lowers the scale) when the scaled gradients overflowed.
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step_seconds.append(time.perf_counter() - t0)
        tokens += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
        # Six decimals is far below step-to-step noise and keeps train.json readable.
        curve.append([step, round(loss.item(), 6)])
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if probe_every and ((step + 1) % probe_every == 0 or step + 1 == steps):
            probe(step + 1)

    # --- save ---------------------------------------------------------------------------------------------
    train_seconds = sum(step_seconds)
    with staging_dir(adapter_out) as tmp:
        if merging:
            save_merged_adapter(model, tmp)
        else:
            model.save_pretrained(tmp)
    write_manifest(adapter_out)
    steady = sorted(step_seconds[1:] or step_seconds)
    report = {
        "cell": cell,
        "base": base,
        "previous_adapter": previous_adapter,
        "continuation": continuation if previous_adapter is not None else None,
        "lora": asdict(lora),
        "quantization": asdict(quant),
        "stage": asdict(stage),
        "seed": seed,
        "threads": threads,
        "device": lm.device_name(device),
        "examples": len(examples),
        "truncated_examples": truncated,
        "steps": steps,
        "loss_curve": curve,
        # [optimizer steps done, earlier task, eval-mode loss of its probe set]: forgetting as it happens.
        "probe_every": probe_every,
        "probe_examples": stage.probe_examples if probes else None,
        "probe_curve": probe_curve,
        "probe_seconds": probe_seconds,
        "tokens": tokens,
        "padding_fraction": 1 - tokens / max(1, padded),
        "tokens_per_second": tokens / max(train_seconds, 1e-9),
        "median_step_ms": 1000 * steady[len(steady) // 2],
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
        "trainable_parameters": n_trainable,
        "total_parameters": n_total,
        "base_weight_bytes": base_bytes,
        "base_layers": layers,
        # bitsandbytes layers swapped for fp32 Linear layers holding the weights they multiply by (cpu_layers).
        "dequantized_cpu_layers": dequantized_layers,
        "compute_dtype": compute_dtype(precision, quant=quant, device=device),
        "control_arm": controls.describe(precision, noise_seed=quant.noise_seed),
        "cpu_capability": cpu_capability(),
        # From process start (interpreter, imports, data, model load) to the first step.
        "startup_seconds": startup,
        "loss_scaling": scaler.is_enabled(),
        "versions": package_versions(("torch", "transformers", "peft", "bitsandbytes", "accelerate")),
        "data_sha256": sha256_files(train_files),
        "pid": os.getpid(),
    }
    write_json(report_out, report, indent=1)
    log(f"trained {steps} steps in {train_seconds:.1f} s, last loss {curve[-1][1]:.4f}")
    return StageResult(steps=steps, examples=len(examples), loss_curve=curve, report=report)


def run_stage(
    *,
    base_dir: str,
    train_files: Sequence[str],
    previous_adapter: str | None,
    adapter_out: str,
    report_out: str,
    settings: dict,
    cell: dict,
    threads: int,
    probe_files: Sequence[str] = (),
    setting_keys: dict | None = None,
    log: Callable[[str], None] = print,
) -> StageResult:
    """The train_stage step: check the inputs against their manifests, build the typed settings from the job's
    params and train the stage.

    `probe_files`: test splits of the earlier stages' tasks (the probe sets). `setting_keys`: the config key each
    stage setting comes from (`quantreplay.grid.stage_setting_keys`)."""
    from quantreplay.bases import checked_base

    check_inputs(train_files, previous_adapter, probe_files)
    return train_stage(
        base=checked_base(base_dir),
        precision=cell["precision"],
        train_files=train_files,
        previous_adapter=previous_adapter,
        adapter_out=adapter_out,
        report_out=report_out,
        lora=parse(LoraSettings, settings["lora"], "lora"),
        quant=parse(QuantConfig, settings["quantization"], "quantization"),
        stage=parse(StageSettings, settings["stage"], f"training.stages.{cell['stage']}"),
        seed=int(cell["seed"]),
        threads=threads,
        cell=cell,
        probe_files=probe_files,
        setting_keys=setting_keys,
        continuation=settings.get("continuation", "continue"),
        log=log,
    )
