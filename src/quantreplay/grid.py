"""The study's grid: which cells exist, where every file lives, and what each job's params are.

A cell is (model, precision, seed, buffer). Stage 1 sees no replay, so its folder holds no buffer and one
stage-1 job per (model, precision, seed) serves every buffer; stage k > 1 lives under the buffer's folder
and continues stage k - 1's adapter of the same buffer.

Every list of files the DAG needs is formatted from `PATHS`, the one table of path patterns, which lives in
quantreplay.paths (with the rule that writes each artifact) and is named here as `grid.PATHS` for the rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from quantreplay.paths import CHECKPOINTS, PATHS, path, pattern
from quantreplay.paths import manifest as manifest  # the rules name each artifact's manifest through the grid
from quantreplay.replay import Buffer

# The aggregate step's tables (file names under results/tables/).
TABLES = (
    "accuracy.csv",
    "summary.csv",
    "intervals.csv",
    "comparison.csv",
    "findings.csv",
    "findings.md",
    "findings.html",
    "mechanism.csv",
    "mechanism.md",
    "mechanism.html",
    "paper_table.md",
    "paper_table.html",
    "cost.csv",
    "jobs.csv",
)

# The telemetry step's tables (quantreplay.telemetry), beside the aggregate step's.
TELEMETRY_TABLES = ("quant_error.csv", "adapter_telemetry.csv")

# The held-out loss step's tables (quantreplay.heldout), by the heldout_tables rule's output names.
HELDOUT_TABLES = {
    "losses": "heldout_loss.csv",
    "intervals": "heldout_intervals.csv",
    "comparison": "heldout_comparison.csv",
    "markdown": "heldout_loss.md",
    "html": "heldout_loss.html",
}

# Float precisions that can serve as the comparisons' reference, widest first (fp16 keeps more mantissa than bf16).
REFERENCE_ORDER = ("fp32", "fp16", "bf16")


# Each rule's log (a key of PATHS, with the checkpoint's shape where the pattern has one). Its benchmark file,
# Snakemake's record of the job's wall and CPU time and peak memory, mirrors the log under benchmarks/.
RULE_LOGS = {
    "prepare_data": ("data_log", None),
    "build_base": ("base_log", None),
    "replay_mix": ("replay_log", None),
    "train_first_stage": ("train_log", "first"),
    "train_stage": ("train_log", "later"),
    "evaluate": ("eval_log", None),
    "heldout_loss": ("heldout_loss_log", None),
    "heldout_tables": ("heldout_tables_log", None),
    "cell_metrics": ("metrics_log", None),
    "aggregate": ("tables_log", None),
    "quant_error": ("quant_error_log", None),
    "telemetry": ("telemetry_log", None),
    "plots": ("figures_log", None),
    "plot_r_matrix": ("r_matrix_log", None),
}


def rule_log(rule: str) -> str:
    """The log pattern of `rule`."""
    key, checkpoint = RULE_LOGS[rule]
    return pattern(key, checkpoint=checkpoint) if checkpoint else PATHS[key]


def rule_benchmark(rule: str) -> str:
    """The benchmark-file pattern of `rule`: its log's, under benchmarks/ as TSV."""
    return "benchmarks/" + rule_log(rule).removeprefix("logs/").removesuffix(".log") + ".tsv"


def log_of_benchmark(benchmark: str) -> str:
    """The log file of the job whose benchmark file is `benchmark` (the inverse of `rule_benchmark`)."""
    return "logs/" + benchmark.removeprefix("benchmarks/").removesuffix(".tsv") + ".log"


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


def previous_stage(config: dict, stage: str) -> str | None:
    """The stage trained just before `stage`, None for the first."""
    k = config["stages"].index(stage)
    return config["stages"][k - 1] if k > 0 else None


def checkpoint_name(config: dict, *, seed=None, buffer: str | None = None, stage: str | None = None) -> str:
    """The checkpoint part of training and evaluation paths: 'base' (after_stage 0, stage None), 'seed0/nlu'
    (a first stage) or 'seed0/buf0.1/math'."""
    if stage is None:
        return CHECKPOINTS["base"]
    shape = "first" if stage == config["stages"][0] else "later"
    return CHECKPOINTS[shape].format(seed=seed, buffer=buffer, stage=stage)


def checkpoint_adapter(model: str, precision: str, checkpoint: str) -> str | None:
    """The adapter folder a checkpoint name points at; None for the untrained base."""
    if checkpoint == CHECKPOINTS["base"]:
        return None
    return path("adapter", model=model, precision=precision, checkpoint=checkpoint)


def checkpoint_regex(stages: list[str]) -> str:
    """The checkpoint wildcard's constraint: every shape of CHECKPOINTS, with the configured stages."""
    stage = "(" + "|".join(re.escape(s) for s in stages) + ")"
    shapes = [
        re.escape(c).replace(r"\{seed\}", "[0-9]+").replace(r"\{buffer\}", "[^/]+") for c in CHECKPOINTS.values()
    ]
    return "|".join(s.replace(r"\{stage\}", stage) for s in shapes)


def _cell_checkpoints(config: dict, model: str, precision: str) -> list[str]:
    """Every trained checkpoint of (model, precision): each seed's first stage once, then its later stages."""
    out = []
    for seed in config["seeds"]:
        out.append(checkpoint_name(config, seed=seed, stage=config["stages"][0]))
        for buffer in buffer_labels(config):
            for stage in config["stages"][1:]:
                out.append(checkpoint_name(config, seed=seed, buffer=buffer, stage=stage))
    return out


def train_outputs(config: dict) -> list[str]:
    """Every train.json of the grid, each stage once (stage 1 once per model, precision and seed)."""
    return [
        path("train_report", model=model, precision=precision, checkpoint=checkpoint)
        for model in config["models"]
        for precision in config["precisions"]
        for checkpoint in _cell_checkpoints(config, model, precision)
    ]


def first_stage_reports(config: dict) -> list[str]:
    """train.json of every first stage (one per model, precision and seed)."""
    return [
        path("train_report", model=model, precision=precision, checkpoint=checkpoint_name(config, seed=s, stage=first))
        for model in config["models"]
        for precision in config["precisions"]
        for s in config["seeds"]
        for first in config["stages"][:1]
    ]


def eval_outputs(config: dict, kind: str = "scores") -> list[str]:
    """Every scores.json (or, with kind 'predictions' or 'heldout_loss', that file): the untrained base per
    precision, and every trained checkpoint of the grid."""
    return [
        path(kind, model=model, precision=precision, checkpoint=checkpoint)
        for model in config["models"]
        for precision in config["precisions"]
        for checkpoint in [CHECKPOINTS["base"], *_cell_checkpoints(config, model, precision)]
    ]


def stage_settings(config: dict, stage: str) -> dict:
    """The training settings of `stage`: config `training` with that stage's overrides applied."""
    training = config["training"]
    base = {k: v for k, v in training.items() if k != "stages"}
    return canonical({**base, **training.get("stages", {}).get(stage, {})})


def stage_setting_keys(config: dict, stage: str) -> dict[str, str]:
    """The config key each training setting of `stage` comes from: its override, else `training`."""
    overrides = config["training"].get("stages", {}).get(stage, {})
    return {
        name: f"training.stages.{stage}.{name}" if name in overrides else f"training.{name}"
        for name in stage_settings(config, stage)
    }


def train_params(config: dict, stage: str, precision: str | None = None) -> dict:
    """Everything besides the inputs that shapes a train_stage job (so params changes re-run it). A later stage of
    `precision` also carries how it continues (`continuation`), so changing one precision's continuation re-runs
    that precision's later stages only."""
    params = {"lora": config["lora"], "quantization": config["quantization"], "stage": stage_settings(config, stage)}
    if precision is not None and stage != config["stages"][0]:
        continuation = config["continuation"]
        params["continuation"] = continuation["per_precision"].get(precision, continuation["mode"])
    return canonical(params)


def replay_params(config: dict, buffer: str) -> dict:
    """What shapes a replay_mix job besides its inputs and wildcards: the `replay` settings, except for the empty
    buffer '0', whose mix no draw changes (so changing the draw re-runs only the mixes it changes)."""
    return {} if Buffer.parse(buffer).fraction == 0 else canonical(config["replay"])


def eval_params(config: dict) -> dict:
    """Everything besides the inputs that shapes an evaluation (so changing it re-evaluates, not retrains)."""
    return canonical({"evaluation": config["evaluation"], "quantization": config["quantization"]})


def heldout_enabled(config: dict) -> bool:
    """Whether the grid measures held-out target loss at every checkpoint (config `heldout_loss.examples` > 0)."""
    return config["heldout_loss"]["examples"] > 0


def heldout_params(config: dict) -> dict:
    """What shapes a heldout_loss job besides its inputs: `heldout_loss`, with its max_seq_len resolved (null: the
    longest of any training stage), and the quantization the checkpoint loads with."""
    heldout = dict(config["heldout_loss"])
    if heldout["max_seq_len"] is None:
        heldout["max_seq_len"] = max(stage_settings(config, s)["max_seq_len"] for s in config["stages"])
    return canonical({"heldout_loss": heldout, "quantization": config["quantization"]})


def heldout_outputs(config: dict) -> list[str]:
    """Every heldout_loss.parquet and the held-out tables; none unless `heldout_enabled`."""
    if not heldout_enabled(config):
        return []
    return eval_outputs(config, "heldout_loss") + [path("table", name=n) for n in HELDOUT_TABLES.values()]


def cells(config: dict) -> list[dict]:
    """Every (model, precision, buffer, seed) of the grid, as strings, the way paths and tables show them."""
    return [
        {"model": model, "precision": precision, "buffer": buffer, "seed": str(seed)}
        for model in config["models"]
        for precision in config["precisions"]
        for seed in config["seeds"]
        for buffer in buffer_labels(config)
    ]


def cell_checkpoint_files(config: dict, kind: str, *, model: str, precision: str, seed, buffer: str) -> list[str]:
    """A cell's scores.json (kind 'scores') or predictions.parquet ('predictions') in stage order: the base,
    then stages 1..T of that buffer."""
    stages = [None, *config["stages"]]
    return [
        path(
            kind,
            model=model,
            precision=precision,
            checkpoint=checkpoint_name(config, seed=seed, buffer=buffer, stage=stage),
        )  # fmt: skip
        for stage in stages
    ]


def cell_adapters(config: dict, *, model: str, precision: str, seed, buffer: str) -> list[str]:
    """A cell's adapter folders in stage order (stages 1..T of that buffer)."""
    return [
        path("adapter", model=model, precision=precision,
             checkpoint=checkpoint_name(config, seed=seed, buffer=buffer, stage=stage))
        for stage in config["stages"]
    ]  # fmt: skip


def grid_adapters(config: dict) -> list[str]:
    """`cell_adapters` of every cell, cell after cell in `cells` order (a first stage repeats per buffer)."""
    return [f for c in cells(config) for f in cell_adapters(config, **c)]


def quant_error_outputs(config: dict) -> list[str]:
    """Every model and precision's weight-error table (rule quant_error)."""
    return [path("quant_error", model=m, precision=p) for m in config["models"] for p in config["precisions"]]


def telemetry_outputs() -> list[str]:
    """The telemetry step's tables."""
    return [path("table", name=name) for name in TELEMETRY_TABLES]


def per_cell(files: Sequence[str], n_cells: int) -> list[list[str]]:
    """`files`, each cell's checkpoints in stage order and cell after cell, cut into one run per cell."""
    if n_cells == 0 or len(files) % n_cells:
        raise ValueError(f"{len(files)} checkpoint files do not split evenly into {n_cells} cells")
    size = len(files) // n_cells
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def grid_checkpoint_files(config: dict, kind: str) -> list[str]:
    """`cell_checkpoint_files` of every cell, cell after cell in `cells` order (the base repeats per cell): the
    aggregate step cuts this list back into cells (`per_cell`)."""
    return [f for c in cells(config) for f in cell_checkpoint_files(config, kind, **c)]


def metrics_outputs(config: dict) -> list[str]:
    """Every cell's metrics file, in `cells` order."""
    return [path("metrics", **cell) for cell in cells(config)]


def reference_precision(precisions: list[str], configured: str | None) -> str | None:
    """The precision every other is compared with: `configured`, else the widest float precision in the grid."""
    if configured is not None:
        if configured not in precisions:
            raise ValueError(f"reference_precision: {configured!r} is not one of the precisions {list(precisions)}")
        return configured
    return next((p for p in REFERENCE_ORDER if p in precisions), None)


def comparison_reference(config: dict) -> str | None:
    """The precision every other is compared with (`analysis.reference_precision`, resolved); None for none."""
    return reference_precision(config["precisions"], config["analysis"]["reference_precision"])


def analysis_params(config: dict) -> dict:
    """The aggregate rule's config `analysis`, with the reference precision resolved for this grid."""
    return canonical({**config["analysis"], "reference_precision": comparison_reference(config)})


def plot_names(config: dict) -> list[str]:
    """The study's figures for this config, in the report's order: first the one that answers the question (the
    first family's retention against buffer, and each precision's difference from the reference below it).
    Retention needs two stages, the comparison a reference and another precision. The plots rule writes exactly
    these (quantreplay.plots.make_plots draws what it is given)."""
    retention = ["retention_by_buffer", "heatmap_retention"] if len(config["stages"]) > 1 else []
    compared = comparison_reference(config) is not None and len(config["precisions"]) > 1
    difference = ["difference_by_buffer"] if compared else []
    updates = ["forgetting_in_stage", "adapter_updates"] if len(config["stages"]) > 1 else []
    # The control arms beside int8 and nf4 (with no arm in the grid: int8's and nf4's differences alone).
    mechanism = ["mechanism"] if compared and len(config["stages"]) > 1 else []
    return [*retention, *mechanism, "heatmap_final_forward", *difference, "forward_by_stage", "training_loss",
            "quant_error", *updates, "cost_by_precision", "cost_by_rule"]  # fmt: skip


def figure_outputs(config: dict, ext: str = "png") -> list[str]:
    """Every figure of the plots rule, as `ext` files."""
    return [path("figure", name=name, ext=ext) for name in plot_names(config)]


def r_matrix_plots(config: dict) -> list[str]:
    """Every cell's R matrix figure (PNG; an SVG beside it)."""
    return [path("r_matrix", **cell, ext="png") for cell in cells(config)]


def table_outputs() -> list[str]:
    """Every table of the aggregate step."""
    return [path("table", name=name) for name in TABLES]


def jobs(config: dict, splits: dict[str, tuple[str, ...]]) -> list[dict]:
    """Every job of the grid before the tables (the aggregate step reads their benchmark files): `rule`,
    `wildcards`, the `stage` it trains or scores (None for the others; 'base' for the untrained base), `id`, and
    `needs`, the ids of the jobs whose outputs it reads. `splits` gives each task's splits. From these and the
    benchmark files follow the cost of a run and its critical path (quantreplay.cost)."""
    out: list[dict] = []

    def add(rule: str, needs: list[str], of_stage: str | None = None, **wildcards) -> str:
        job_id = rule + "".join(f" {k}={v}" for k, v in wildcards.items())
        out.append({"rule": rule, "wildcards": wildcards, "stage": of_stage, "id": job_id, "needs": needs})
        return job_id

    stages = config["stages"]
    data = {(t, split): add("prepare_data", [], task=t, split=split) for t in splits for split in splits[t]}

    def train_data(*families: str) -> list[str]:
        return [data[t, "train"] for f in families for t in tasks_of(config, f, "train", splits)]

    test_data = [data[t, "test"] for t in splits if "test" in splits[t]]
    mixes = {}
    for seed in config["seeds"]:
        for buffer in buffer_labels(config):
            for k, stage in enumerate(stages[1:], start=1):
                mixes[seed, buffer, stage] = add("replay_mix", train_data(*stages[: k + 1]), stage, seed=seed,
                                                 buffer=buffer, stage=stage)  # fmt: skip
    for model, spec in config["models"].items():
        base = add("build_base", train_data(*stages) if spec["kind"] == "toy" else [], model=model)
        for precision in config["precisions"]:
            add("quant_error", [base, *train_data(stages[0])], model=model, precision=precision)
            base_scores = add("evaluate", [base, *test_data], "base", model=model, precision=precision,
                              checkpoint=checkpoint_name(config))  # fmt: skip
            for seed in config["seeds"]:
                cell = {"model": model, "precision": precision, "seed": seed}
                first = add("train_first_stage", [base, *train_data(stages[0])], stages[0], **cell, stage=stages[0])
                first_name = checkpoint_name(config, seed=seed, stage=stages[0])
                first_scores = add("evaluate", [base, first, *test_data], stages[0], model=model,
                                   precision=precision, checkpoint=first_name)  # fmt: skip
                for buffer in buffer_labels(config):
                    trained, scores = first, [base_scores, first_scores]
                    for stage in stages[1:]:
                        probes = [data[t, "test"] for f in stages[: stages.index(stage)]
                                  for t in tasks_of(config, f, "test", splits)]  # fmt: skip
                        trained = add("train_stage", [base, mixes[seed, buffer, stage], trained, *probes], stage,
                                      **cell, buffer=buffer, stage=stage)  # fmt: skip
                        name = checkpoint_name(config, seed=seed, buffer=buffer, stage=stage)
                        scores.append(add("evaluate", [base, trained, *test_data], stage, model=model,
                                          precision=precision, checkpoint=name))  # fmt: skip
                    add("cell_metrics", scores, **cell, buffer=buffer)
    if heldout_enabled(config):
        # The held-out loss of a checkpoint reads what its evaluation reads.
        for job in [j for j in out if j["rule"] == "evaluate"]:
            add("heldout_loss", job["needs"], job["stage"], **job["wildcards"])
    return out


def job_benchmark(job: dict) -> str:
    """The benchmark file of one job of `jobs`."""
    return rule_benchmark(job["rule"]).format(**job["wildcards"])
