"""Where every file of a run lives: the one table of path patterns, and which rule writes each artifact.

The rules' outputs and logs are `PATHS`' patterns, and every list of files the DAG needs is formatted from it
(quantreplay.grid). A checkpoint is named the same way under results/train (its adapter) and results/eval (its
scores): `CHECKPOINTS` holds the three shapes of that name. The steps read this module only to check their inputs
(quantreplay.manifest): where a file lies is Snakemake's to track, so an edit here re-runs only the jobs whose files
move (quantreplay.fingerprint leaves this module out of every rule's code hash).
"""

from __future__ import annotations

import re

# The part of a training or evaluation path that names the checkpoint: the untrained base (after_stage 0),
# a first stage (no buffer), a later stage (under its buffer).
CHECKPOINTS = {"base": "base", "first": "seed{seed}/{stage}", "later": "seed{seed}/buf{buffer}/{stage}"}

PATHS = {
    "data": "results/data/{task}/{split}.parquet",
    "data_log": "logs/data/{task}/{split}.log",
    "base": "results/base/{model}",
    "base_log": "logs/base/{model}.log",
    "replay": "results/replay/seed{seed}/buf{buffer}/{stage}.parquet",
    "replay_log": "logs/replay/seed{seed}/buf{buffer}/{stage}.log",
    "adapter": "results/train/{model}/{precision}/{checkpoint}/adapter",
    "train_report": "results/train/{model}/{precision}/{checkpoint}/train.json",
    "train_log": "logs/train/{model}/{precision}/{checkpoint}.log",
    "predictions": "results/eval/{model}/{precision}/{checkpoint}/predictions.parquet",
    "scores": "results/eval/{model}/{precision}/{checkpoint}/scores.json",
    "eval_log": "logs/eval/{model}/{precision}/{checkpoint}.log",
    "heldout_loss": "results/eval/{model}/{precision}/{checkpoint}/heldout_loss.parquet",
    "heldout_loss_log": "logs/heldout_loss/{model}/{precision}/{checkpoint}.log",
    "heldout_tables_log": "logs/heldout_tables.log",
    "metrics": "results/metrics/{model}/{precision}/seed{seed}/buf{buffer}.json",
    "metrics_log": "logs/metrics/{model}/{precision}/seed{seed}/buf{buffer}.log",
    "quant_error": "results/telemetry/{model}/{precision}/quant_error.csv",
    "quant_error_log": "logs/telemetry/{model}/{precision}.log",
    "telemetry_log": "logs/telemetry.log",
    "table": "results/tables/{name}",
    "tables_log": "logs/aggregate.log",
    "figure": "results/plots/{name}.{ext}",
    "figures_log": "logs/plots.log",
    "r_matrix": "results/plots/r_matrix/{model}/{precision}/seed{seed}/buf{buffer}.{ext}",
    "r_matrix_log": "logs/plots/r_matrix/{model}/{precision}/seed{seed}/buf{buffer}.log",
    # Beside every artifact of MANIFESTED (a file or a folder): the sha256 of each of its files.
    "manifest": "{artifact}.manifest.json",
}

# What each rule writes that another step reads (keys of PATHS, with the checkpoint's shape where the pattern has
# one; None: any shape): a step that finds one of them corrupt names the rule that rebuilds it.
RULE_OUTPUTS = {
    "prepare_data": [("data", None)],
    "build_base": [("base", None)],
    "replay_mix": [("replay", None)],
    "train_first_stage": [("adapter", "first"), ("train_report", "first")],
    "train_stage": [("adapter", "later"), ("train_report", "later")],
    "evaluate": [("predictions", None), ("scores", None)],
    "heldout_loss": [("heldout_loss", None)],
    "cell_metrics": [("metrics", None)],
    "aggregate": [("table", None)],
    "quant_error": [("quant_error", None)],
}
# The model and data artifacts among them, which prove they are whole with a manifest beside them
# (quantreplay.manifest); the rest are small JSON and CSV files whose readers name a broken one.
MANIFESTED = ("data", "base", "replay", "adapter")


def pattern(key: str, **fixed: str) -> str:
    """The pattern `PATHS[key]` with some wildcards fixed: `checkpoint` by its shape (a key of CHECKPOINTS),
    any other by a value (e.g. ext="png"); the rest stay wildcards for Snakemake."""
    out = PATHS[key]
    for name, value in fixed.items():
        out = out.replace("{" + name + "}", CHECKPOINTS[value] if name == "checkpoint" else str(value))
    return out


def manifest(artifact_pattern: str) -> str:
    """The manifest pattern (or path) of an artifact's pattern (or path)."""
    return PATHS["manifest"].replace("{artifact}", artifact_pattern)


def _output_regex(key: str, checkpoint: str | None) -> re.Pattern:
    """A path of PATHS[key] (or of a file inside it), under any folder (an absolute path, --directory)."""
    shapes = [CHECKPOINTS[checkpoint]] if checkpoint else list(CHECKPOINTS.values())
    alternatives = []
    for shape in shapes:
        escaped = re.escape(PATHS[key].replace("{checkpoint}", shape))
        alternatives.append(re.sub(r"\\\{\w+\\\}", "[^/]+", escaped))
    return re.compile(r"(.*/)?(" + "|".join(alternatives) + r")(/.+)?")


def producer(path) -> tuple[str, str, str] | None:
    """(rule, artifact, key of PATHS) for a path of RULE_OUTPUTS or of a file inside one: the rule that writes it
    and the artifact's path as given (the folder, for a file inside one). None for any other path."""
    text = str(path).rstrip("/")
    for rule, outputs in RULE_OUTPUTS.items():
        for key, checkpoint in outputs:
            found = _output_regex(key, checkpoint).fullmatch(text)
            if found:
                return rule, (found.group(1) or "") + found.group(2), key
    return None


def path(key: str, **wildcards) -> str:
    """One concrete path of `PATHS[key]`."""
    return PATHS[key].format(**wildcards)
