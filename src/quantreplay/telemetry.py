"""What a precision does to the frozen weights, and what the adapter does through the stages.

quant_error: per quantized Linear layer and precision, the change of the weights the layer multiplies by from the
fp32 checkpoint (relative Frobenius norm, RMS, mean, largest magnitude), and for int8 the share of input columns
that LLM.int8 sends down its outlier path on a probe of the first stage's training text.

adapter telemetry: per cell, stage and layer, the LoRA update dW_k = (alpha / r) B_k A_k held after stage k; its
norm; the norm of stage k's own step u_k = dW_k - dW_{k-1}; the cosine between successive steps u_k and u_{k-1};
and how much of the previous step survives, <dW_k, u_{k-1}> / |u_{k-1}|^2 (1: kept, 0: erased, < 0: reversed).
Every inner product comes from the low-rank factors (<B1 A1, B2 A2> = sum((B1^T B2) * (A1 A2^T))), so no dW is
ever formed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl

from quantreplay.io import read_json, write_csv
from quantreplay.quantize import held_weight

QUANT_ERROR_COLUMNS = ("model", "precision", "layer", "module", "block", "rows", "columns", "relative_error",
                       "error_rms", "error_mean", "error_max", "outlier_share")  # fmt: skip
ADAPTER_COLUMNS = ("model", "precision", "seed", "buffer", "after_stage", "stage", "layer", "update_norm",
                   "step_norm", "step_cosine", "previous_step_kept")  # fmt: skip
# Examples of the first stage's training text that the outlier share is measured on.
PROBE_EXAMPLES = 32
TOTAL = "total"


class HeldWeights(Mapping):
    """`held_weight` of every Linear layer of a model by name, computed when read: one layer's fp32 copy at a time,
    whatever the model's size."""

    def __init__(self, model):
        import torch

        self._modules = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}

    def __getitem__(self, name: str):
        return held_weight(self._modules[name])

    def __iter__(self):
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


def held_weights(model) -> HeldWeights:
    """What each Linear layer of `model` multiplies by (`held_weight`), by name."""
    return HeldWeights(model)


def _layer_position(name: str) -> tuple[str, int | None]:
    """('q_proj', 3) for 'model.layers.3.self_attn.q_proj'."""
    parts = name.split(".")
    block = next((int(p) for p in parts if p.isdigit()), None)
    return parts[-1], block


def weight_error_rows(reference: Mapping[str, object], held: Mapping[str, object], layers: Sequence[str]) -> list:
    """quant_error rows (without model and precision) for `layers`: held minus reference weights."""
    rows = []
    for name in layers:
        weight, error = reference[name], held[name] - reference[name]
        module, block = _layer_position(name)
        rows.append({
            "layer": name, "module": module, "block": block, "rows": weight.shape[0], "columns": weight.shape[1],
            "relative_error": float(error.norm() / weight.norm()), "error_rms": float(error.pow(2).mean().sqrt()),
            "error_mean": float(error.mean()), "error_max": float(error.abs().max()),
        })  # fmt: skip
    return rows


def outlier_shares(model, batches: Sequence[dict], layers: Sequence[str], threshold: float) -> dict[str, float]:
    """Per layer, the share of its input columns in which some real token's activation exceeds `threshold` in
    magnitude on the probe `batches` (LLM.int8 decomposes such columns into its high-precision path)."""
    import torch

    modules = dict(model.named_modules())
    peak: dict[str, torch.Tensor] = {}
    mask: list[torch.Tensor] = []

    def record(name):
        def hook(_module, inputs):
            x = inputs[0].detach().abs().float()
            x = x[mask[0].bool()] if x.dim() == 3 else x
            top = x.amax(dim=0)
            peak[name] = top if name not in peak else torch.maximum(peak[name], top)

        return hook

    handles = [modules[name].register_forward_pre_hook(record(name)) for name in layers]
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            for batch in batches:
                ids, attention = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                mask[:] = [attention]
                model(input_ids=ids, attention_mask=attention)
    finally:
        for handle in handles:
            handle.remove()
    return {name: float((peak[name] > threshold).float().mean()) for name in layers}


def probe_batches(tokenizer, files: Sequence[str], *, seed: int, max_seq_len: int, batch_size: int = 8) -> list:
    """PROBE_EXAMPLES seeded rows of the training `files` (prompt + target), as padded batches."""
    from quantreplay import lm
    from quantreplay.train import collate, read_training_rows, tokenize_examples

    rows = read_training_rows(files)
    picked = sorted(random.Random(seed).sample(range(rows.height), min(PROBE_EXAMPLES, rows.height)))
    rows = rows[picked]
    examples = tokenize_examples(tokenizer, rows["prompt"], rows["target"], max_seq_len=max_seq_len)
    pad = lm.pad_id(tokenizer)
    return [collate(examples[i : i + batch_size], pad_id=pad) for i in range(0, len(examples), batch_size)]


def quant_error_table(*, base: str, model_name: str, precision: str, quant, probe_files: Sequence[str], seed: int,
                      max_seq_len: int, threads: int) -> pl.DataFrame:  # fmt: skip
    """quant_error rows of one precision: every Linear layer that int8 and nf4 quantize."""
    import torch

    from quantreplay import lm
    from quantreplay.controls import quantized_linear_names
    from quantreplay.quantize import load_base

    torch.set_num_threads(threads)
    device = lm.job_device(threads)
    reference = load_base(base, precision="fp32", quant=quant, device=device)
    layers = quantized_linear_names(reference)
    model = load_base(base, precision=precision, quant=quant, device=device)
    # A stepnoise arm shows one training-time draw; every other precision is the same in both modes.
    model.train()
    rows = weight_error_rows(held_weights(reference), held_weights(model), layers)
    shares: dict[str, float] = {}
    if precision == "int8":
        batches = probe_batches(lm.load_tokenizer(base), probe_files, seed=seed, max_seq_len=max_seq_len)
        shares = outlier_shares(reference, batches, layers, quant.int8_threshold)
    frame = pl.DataFrame(
        [
            {"model": model_name, "precision": precision, **row, "outlier_share": shares.get(row["layer"])}
            for row in rows
        ],  # fmt: skip
        schema_overrides={"outlier_share": pl.Float64, "block": pl.Int64},
    )
    return frame.select(QUANT_ERROR_COLUMNS)


def run_quant_error(*, base_dir: str, probe_files: Sequence[str], settings: dict, output: str, cell: dict,
                    threads: int, log: Callable[[str], None] = print) -> None:  # fmt: skip
    """The quant_error step: inputs checked against their manifests, then `quant_error_table` to `output`."""
    from quantreplay.bases import checked_base
    from quantreplay.manifest import check_inputs
    from quantreplay.quantize import QuantConfig
    from quantreplay.settings import parse

    check_inputs(probe_files)
    frame = quant_error_table(
        base=checked_base(base_dir), model_name=cell["model"], precision=cell["precision"],
        quant=parse(QuantConfig, settings["quantization"], "quantization"), probe_files=probe_files,
        seed=int(settings["seed"]), max_seq_len=int(settings["max_seq_len"]), threads=threads,
    )  # fmt: skip
    write_csv(frame, output)
    log(f"{cell['precision']}: {frame.height} layers, relative error {frame['relative_error'].mean():.2e} on average")


def lora_factors(adapter: str) -> dict[str, tuple[object, object]]:
    """Per adapted layer (its name in the base model), (scale * B, A) of the PEFT adapter folder `adapter`."""
    from safetensors.torch import load_file

    from quantreplay.io import unreadable

    folder = Path(adapter)
    config = read_json(folder / "adapter_config.json")
    rank, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    weights = folder / "adapter_model.safetensors"
    try:
        tensors = load_file(str(weights))
    except Exception as error:
        raise unreadable(weights, error) from None
    factors = {}
    for key, a in tensors.items():
        if ".lora_A." not in key:
            continue
        layer = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        factors[layer] = (scale * tensors[key.replace(".lora_A.", ".lora_B.")].float(), a.float())
    return factors


def _inner(x: tuple, y: tuple) -> float:
    """<B1 A1, B2 A2> from the factors."""
    (b1, a1), (b2, a2) = x, y
    return float(((b1.T @ b2) * (a1 @ a2.T)).sum())


def _cosine(dot: float, n1: float, n2: float) -> float | None:
    return dot / math.sqrt(n1 * n2) if n1 > 0 and n2 > 0 else None


def update_rows(adapters: Sequence[str]) -> list[dict]:
    """Adapter telemetry rows (without the cell) of one cell's adapters in stage order (after_stage 1..T), per
    layer and, last, for the whole adapter (layer 'total': sums of the per-layer inner products)."""
    factors = [lora_factors(a) for a in adapters]
    layers = list(factors[0])
    rows = []
    for k in range(len(factors)):
        totals = [0.0] * 6
        for layer in [*layers, TOTAL]:
            if layer == TOTAL:
                g = totals
            else:
                # <dW_k,dW_k>, <dW_k,dW_k-1>, <dW_k-1,dW_k-1>, <dW_k,dW_k-2>, <dW_k-1,dW_k-2>, <dW_k-2,dW_k-2>
                pairs = [(k, k), (k, k - 1), (k - 1, k - 1), (k, k - 2), (k - 1, k - 2), (k - 2, k - 2)]
                g = [_inner(factors[i][layer], factors[j][layer]) if i >= 0 and j >= 0 else 0.0 for i, j in pairs]
                totals = [t + v for t, v in zip(totals, g, strict=True)]
            kk, k1, p1, k2, p12, p2 = g
            step = kk - 2 * k1 + p1
            previous_step = p1 - 2 * p12 + p2
            rows.append({
                "after_stage": k + 1, "layer": layer, "update_norm": math.sqrt(max(kk, 0.0)),
                "step_norm": math.sqrt(max(step, 0.0)),
                "step_cosine": _cosine(k1 - k2 - p1 + p12, step, previous_step) if k >= 1 else None,
                "previous_step_kept": (k1 - k2) / previous_step if k >= 1 and previous_step > 0 else None,
            })  # fmt: skip
    return rows


def adapter_table(cells: Sequence[dict], adapters: Sequence[Sequence[str]], stages: Sequence[str]) -> pl.DataFrame:
    """The adapter telemetry of every cell (`adapters[i]`: cell i's adapter folders in stage order)."""
    rows = [
        {**cell, **row, "stage": stages[row["after_stage"] - 1]}
        for cell, folders in zip(cells, adapters, strict=True)
        for row in update_rows(folders)
    ]
    schema = {"step_cosine": pl.Float64, "previous_step_kept": pl.Float64}
    return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None).select(ADAPTER_COLUMNS)


def write_telemetry(*, quant_error_files: Sequence[str], cells: Sequence[dict], adapters: Sequence[str],
                    stages: Sequence[str], quant_error_out: str, adapters_out: str) -> None:  # fmt: skip
    """The telemetry step: quant_error.csv (every model and precision) and adapter_telemetry.csv (every cell).
    `adapters` lists each cell's adapter folders in stage order, cell after cell."""
    from quantreplay.grid import per_cell
    from quantreplay.io import read_csv
    from quantreplay.manifest import check_inputs

    check_inputs(adapters)
    frames = [read_csv(f, schema_overrides={"outlier_share": pl.Float64}) for f in quant_error_files]
    write_csv(pl.concat(frames, how="vertical"), quant_error_out)
    write_csv(adapter_table(cells, per_cell(adapters, len(cells)), stages), adapters_out)
