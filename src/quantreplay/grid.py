"""The study's grid: which cells exist, where their files live, and what each job's params are.

A cell is (model, precision, seed, buffer). Stage 1 sees no replay, so its folder holds no buffer and one
stage-1 job per (model, precision, seed) serves every buffer; stage k > 1 lives under the buffer's folder
and continues stage k - 1's adapter of the same buffer.
"""

from __future__ import annotations

import json
from pathlib import Path

from quantreplay.replay import Buffer


def canonical(value):
    """`value` with every mapping's keys sorted, so Snakemake's repr-based params comparison is stable."""
    return json.loads(json.dumps(value, sort_keys=True))


def buffer_labels(config: dict) -> list[str]:
    """Path labels of every configured buffer: the fractions, then the per-task counts (n<count>)."""
    labels = [Buffer(fraction=b).label for b in config["buffers"]]
    return labels + [Buffer(count=c).label for c in config.get("buffer_counts", [])]


def tasks_of(config: dict, family: str, split: str, splits: dict[str, tuple[str, ...]]) -> list[str]:
    """Tasks of `family` that have `split`, in config order."""
    return [t for t, spec in config["tasks"].items() if spec["family"] == family and split in splits[t]]


def data_path(task: str, split: str) -> str:
    return f"results/data/{task}/{split}.parquet"


def replay_path(seed, buffer: str, stage: str) -> str:
    return f"results/replay/seed{seed}/buf{buffer}/{stage}.parquet"


def train_dir(config: dict, *, model: str, precision: str, seed, buffer: str, stage: str) -> str:
    """Folder of one training stage; stage 1's holds no buffer."""
    cell = f"results/train/{model}/{precision}/seed{seed}"
    if stage == config["stages"][0]:
        return f"{cell}/{stage}"
    return f"{cell}/buf{buffer}/{stage}"


def adapter_dir(config: dict, **cell) -> str:
    """The PEFT adapter folder of one training stage (cell: model, precision, seed, buffer, stage)."""
    return f"{train_dir(config, **cell)}/adapter"


def previous_stage(config: dict, stage: str) -> str | None:
    """The stage trained just before `stage`, None for the first."""
    k = config["stages"].index(stage)
    return config["stages"][k - 1] if k > 0 else None


def train_outputs(config: dict) -> list[str]:
    """Every train.json of the grid, each stage once (stage 1 once per model, precision and seed)."""
    out = []
    for model in config["models"]:
        for precision in config["precisions"]:
            for seed in config["seeds"]:
                cell = {"model": model, "precision": precision, "seed": seed}
                out.append(train_dir(config, **cell, buffer="", stage=config["stages"][0]) + "/train.json")
                for buffer in buffer_labels(config):
                    for stage in config["stages"][1:]:
                        out.append(train_dir(config, **cell, buffer=buffer, stage=stage) + "/train.json")
    return out


def stage_settings(config: dict, stage: str) -> dict:
    """The training settings of `stage`: config `training` with that stage's overrides applied."""
    training = config["training"]
    base = {k: v for k, v in training.items() if k != "stages"}
    return canonical({**base, **training.get("stages", {}).get(stage, {})})


def train_params(config: dict, stage: str) -> dict:
    """Everything besides the inputs that shapes a train_stage job (so params changes re-run it)."""
    return canonical(
        {"lora": config["lora"], "quantization": config["quantization"], "stage": stage_settings(config, stage)}
    )


def checkpoint_name(config: dict, *, seed=None, buffer: str | None = None, stage: str | None = None) -> str:
    """The checkpoint part of evaluation paths: 'base' (after_stage 0), 'seed0/nlu' or 'seed0/buf0.1/math'."""
    if stage is None:
        return "base"
    if stage == config["stages"][0]:
        return f"seed{seed}/{stage}"
    return f"seed{seed}/buf{buffer}/{stage}"


def eval_dir(config: dict, *, model: str, precision: str, **checkpoint) -> str:
    return f"results/eval/{model}/{precision}/{checkpoint_name(config, **checkpoint)}"


def eval_outputs(config: dict) -> list[str]:
    """Every scores.json: the untrained base per precision, and every trained stage of the grid."""
    out = []
    for model in config["models"]:
        for precision in config["precisions"]:
            cell = {"model": model, "precision": precision}
            out.append(eval_dir(config, **cell) + "/scores.json")
            for seed in config["seeds"]:
                out.append(eval_dir(config, **cell, seed=seed, stage=config["stages"][0]) + "/scores.json")
                for buffer in buffer_labels(config):
                    for stage in config["stages"][1:]:
                        out.append(eval_dir(config, **cell, seed=seed, buffer=buffer, stage=stage) + "/scores.json")
    return out


def checkpoint_adapter(model: str, precision: str, checkpoint: str) -> str | None:
    """The adapter folder a checkpoint name points at; None for the untrained base."""
    if checkpoint == "base":
        return None
    return f"results/train/{model}/{precision}/{checkpoint}/adapter"


def eval_params(config: dict) -> dict:
    """Everything besides the inputs that shapes an evaluation (so changing it re-evaluates, not retrains)."""
    return canonical({"evaluation": config["evaluation"], "quantization": config["quantization"]})


def cell_score_files(config: dict, *, model: str, precision: str, seed, buffer: str) -> list[str]:
    """The scores.json of a cell's checkpoints in stage order: the base, then stages 1..T of that buffer."""
    cell = {"model": model, "precision": precision}
    files = [eval_dir(config, **cell) + "/scores.json"]
    for stage in config["stages"]:
        files.append(eval_dir(config, **cell, seed=seed, buffer=buffer, stage=stage) + "/scores.json")
    return files


def cells(config: dict) -> list[dict]:
    """Every (model, precision, buffer, seed) of the grid, as strings, the way paths and tables show them."""
    return [
        {"model": model, "precision": precision, "buffer": buffer, "seed": str(seed)}
        for model in config["models"]
        for precision in config["precisions"]
        for seed in config["seeds"]
        for buffer in buffer_labels(config)
    ]


def metrics_path(cell: dict) -> str:
    return f"results/metrics/{cell['model']}/{cell['precision']}/seed{cell['seed']}/buf{cell['buffer']}.json"


def metrics_outputs(config: dict) -> list[str]:
    """Every cell's metrics file."""
    return [metrics_path(cell) for cell in cells(config)]


def aggregate_inputs(config: dict) -> dict:
    """For the aggregate rule: the cells, each cell's score files in stage order, and its metrics file."""
    grid_cells = cells(config)
    return {
        "cells": grid_cells,
        "score_files": [cell_score_files(config, **c) for c in grid_cells],
        "metric_files": [metrics_path(c) for c in grid_cells],
    }


def predictions_path(scores: str) -> str:
    """The per-example predictions.parquet an evaluation writes beside its scores.json."""
    return str(Path(scores).with_name("predictions.parquet"))


def prediction_outputs(config: dict) -> list[str]:
    """Every predictions.parquet: the bootstrap resamples their examples."""
    return [predictions_path(p) for p in eval_outputs(config)]


def comparison_reference(config: dict) -> str | None:
    """The precision every other is compared with (`analysis.reference_precision`, resolved); None for none."""
    from quantreplay.intervals import reference_precision

    return reference_precision(config["precisions"], config["analysis"]["reference_precision"])


def analysis_params(config: dict) -> dict:
    """The aggregate rule's bootstrap settings and the resolved reference precision of the comparisons."""
    analysis = config["analysis"]
    return {
        "confidence": analysis["confidence"],
        "resamples": analysis["bootstrap_resamples"],
        "seed": analysis["bootstrap_seed"],
        "reference": comparison_reference(config),
    }


def first_stage_reports(config: dict) -> list[str]:
    """train.json of every first stage (one per model, precision and seed)."""
    return [p for p in train_outputs(config) if "/buf" not in p]


def plot_names(config: dict) -> list[str]:
    """The figures quantreplay.plots.make_plots writes for this config (retention needs two stages, the
    comparison a reference and another precision)."""
    retention = ["heatmap_retention", "retention_by_buffer"] if len(config["stages"]) > 1 else []
    compared = comparison_reference(config) is not None and len(config["precisions"]) > 1
    difference = ["difference_by_buffer"] if compared else []
    return [*retention, "heatmap_final_forward", *difference, "forward_by_stage", "training_loss", "cost_by_precision"]


def r_matrix_plot(cell: dict) -> str:
    """The PNG of one cell's R matrix figure (an SVG beside it)."""
    return f"results/plots/r_matrix/{cell['model']}/{cell['precision']}/seed{cell['seed']}/buf{cell['buffer']}.png"


def r_matrix_plots(config: dict) -> list[str]:
    """Every cell's R matrix figure."""
    return [r_matrix_plot(cell) for cell in cells(config)]
