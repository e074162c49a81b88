"""Held-out target loss (quantreplay.heldout): each example's loss is the model's own, the tables' metrics follow the
loss matrix with the signs of accuracy, and turning the step on adds its jobs to a finished grid and re-runs nothing
that trains or scores."""

import copy
import os
import shutil

import numpy as np
import polars as pl
import pytest

from conftest import expected_job_counts, job_counts, run_snakemake
from quantreplay.aggregate import heldout_tables
from quantreplay.heldout import HeldoutSettings, example_losses, heldout_losses
from quantreplay.intervals import AnalysisSettings
from quantreplay.quantize import QuantConfig


def _tiny_model(tiny_base):
    from quantreplay import lm
    from quantreplay.bases import checked_base

    return lm.load_checkpoint(checked_base(tiny_base), precision="fp32", quant=QuantConfig(), device="cpu")


def test_each_examples_loss_is_the_models_own_token_mean_loss_whatever_its_batch(tiny_base, tiny_task_files):
    import torch

    from quantreplay import lm
    from quantreplay.train import collate, probe_sets

    tokenizer, model = _tiny_model(tiny_base)
    model.eval()
    files = [tiny_task_files["boolq/test"], tiny_task_files["arithmetic/test"]]
    examples = [e for probes in probe_sets(tokenizer, files, examples=4, max_seq_len=96).values() for e in probes]
    pad = lm.pad_id(tokenizer)
    # Right-padded batches of 3 mix a one-word boolq answer with worked arithmetic: lengths differ within a batch.
    losses, tokens = example_losses(model, examples, pad_id=pad, batch_size=3, device="cpu")
    assert len(set(tokens)) > 1
    with torch.no_grad():
        alone = [model(**collate([e], pad_id=pad)).loss.item() for e in examples]
    np.testing.assert_allclose(losses, alone, rtol=1e-5)
    # The first position is never a target (a prompt token at least stays before it).
    assert tokens == [sum(label != lm.IGNORE_INDEX for label in e.labels) for e in examples]


def test_every_checkpoint_measures_the_training_probes_examples(tiny_base, tiny_task_files):
    from quantreplay.train import probe_rows

    tokenizer, model = _tiny_model(tiny_base)
    model.eval()
    files = [tiny_task_files["boolq/test"], tiny_task_files["arithmetic/test"]]
    settings = HeldoutSettings(examples=4, max_seq_len=96)
    frame = heldout_losses(model, tokenizer, files, settings=settings, device="cpu", log=lambda s: None)
    assert frame.columns == ["task", "family", "id", "target_tokens", "loss", "loglik"]
    assert frame.group_by("task").len().sort("task").rows() == [("arithmetic", 4), ("boolq", 4)]
    assert (frame["loss"] > 0).all() and frame["loglik"].equals(-frame["loss"], check_names=False)
    for path in files:
        drawn = probe_rows(path, examples=4, columns=("task", "id"))
        assert frame.filter(pl.col("task") == drawn["task"][0])["id"].to_list() == drawn["id"].to_list()
    # More examples than the split holds: all of them, once.
    every = heldout_losses(model, tokenizer, files[:1], settings=HeldoutSettings(examples=500, max_seq_len=96),
                           device="cpu", log=lambda s: None)  # fmt: skip
    assert every.height == pl.read_parquet(files[0]).height == every["id"].n_unique()


def test_the_step_is_off_by_default_and_on_reads_what_each_evaluation_reads(default_config):
    from conftest import ROOT
    from quantreplay import grid
    from quantreplay.config import check_config, load_schema, task_splits

    schema = load_schema(ROOT / "config" / "schema" / "config.schema.yaml")
    config = copy.deepcopy(default_config)
    check_config(config, schema)
    splits = {name: task_splits(name, task) for name, task in config["tasks"].items()}
    assert grid.heldout_outputs(config) == [] and not any(
        j["rule"] == "heldout_loss" for j in grid.jobs(config, splits)
    )

    config = copy.deepcopy(default_config)
    config["heldout_loss"] = {"examples": 16}
    check_config(config, schema)
    jobs = grid.jobs(config, splits)
    evaluations = {tuple(j["wildcards"].items()): j for j in jobs if j["rule"] == "evaluate"}
    heldout = {tuple(j["wildcards"].items()): j for j in jobs if j["rule"] == "heldout_loss"}
    assert heldout.keys() == evaluations.keys()
    assert all(heldout[k]["needs"] == evaluations[k]["needs"] for k in heldout)
    outputs = grid.heldout_outputs(config)
    assert outputs[: len(heldout)] == grid.eval_outputs(config, "heldout_loss")
    assert {o.removeprefix("results/tables/") for o in outputs[len(heldout) :]} == set(grid.HELDOUT_TABLES.values())
    # null: the longest sequence any stage trains on.
    longest = max(grid.stage_settings(config, s)["max_seq_len"] for s in config["stages"])
    assert grid.heldout_params(config)["heldout_loss"]["max_seq_len"] == longest


# A loss matrix of two stages (nlu, math), one task each: after_stage 0 is the base. NLU: 3.0 -> 1.0 -> 1.8 (learned
# by 2.0, then forgotten by 0.8); math: 2.0 -> 2.1 -> 1.5 (0.5 below the base: its gain).
LOSSES = {"boolq": [3.0, 1.0, 1.8], "arithmetic": [2.0, 2.1, 1.5]}
FAMILIES = {"boolq": "nlu", "arithmetic": "math"}


def _loss_file(path, after_stage: int, shift: float) -> str:
    rows = []
    for t, (task, means) in enumerate(LOSSES.items()):
        # A zero-mean spread over eight examples, so the bootstrap has something to resample: its own at every
        # checkpoint, the same in every precision.
        spread = np.random.default_rng([after_stage, t]).normal(0, 0.1, 8)
        for i, loss in enumerate(means[after_stage] + shift + spread - spread.mean()):
            rows.append({"task": task, "family": FAMILIES[task], "id": f"{task}-{i}", "target_tokens": 5,
                         "loss": loss, "loglik": -loss})  # fmt: skip
    pl.DataFrame(rows).write_parquet(path)
    return str(path)


def test_tables_report_gain_and_forgetting_in_nats_with_the_signs_of_accuracy(tmp_path):
    cells, files = [], []
    # nf4 starts 0.5 nats worse everywhere and ends as fp16 does: its gains are 0.5 larger.
    for precision, shift in (("fp16", [0.0, 0.0, 0.0]), ("nf4", [0.5, 0.0, 0.0])):
        cells.append({"model": "toy", "precision": precision, "buffer": "0", "seed": "0"})
        files += [_loss_file(tmp_path / f"{precision}{k}.parquet", k, shift[k]) for k in range(3)]
    out = {name: str(tmp_path / name) for name in ("losses", "intervals", "comparison", "markdown", "html")}
    analysis = AnalysisSettings(bootstrap_resamples=500)
    heldout_tables(cells=cells, loss_files=files, stages=["nlu", "math"], reference="fp16", analysis=analysis,
                   out=out)  # fmt: skip

    losses = pl.read_csv(out["losses"], schema_overrides={"buffer": pl.String, "seed": pl.String})
    fp16 = losses.filter(pl.col("precision") == "fp16").sort("task", "after_stage")
    assert fp16["loss"].to_list() == pytest.approx(LOSSES["arithmetic"] + LOSSES["boolq"])
    assert set(losses["n"]) == {8} and losses.height == 2 * 3 * 2

    intervals = pl.read_csv(out["intervals"], schema_overrides={"buffer": pl.String, "seed": pl.String})
    pooled = {
        (r["precision"], r["metric"]): r for r in intervals.filter(pl.col("seed") == "all").iter_rows(named=True)
    }
    expected = {"gain_nlu": 2.0, "gain_math": 0.5, "forgetting_nlu": 0.8}
    for metric, value in expected.items():
        row = pooled["fp16", metric]
        assert row["estimate"] == pytest.approx(value) and row["ci_low"] <= value <= row["ci_high"]
    assert pooled["nf4", "gain_nlu"]["estimate"] == pytest.approx(2.5)
    comparison = pl.read_csv(out["comparison"], schema_overrides={"buffer": pl.String, "seed": pl.String})
    gain = comparison.filter(pl.col("seed") == "all", pl.col("metric") == "gain_nlu").row(0, named=True)
    assert gain["reference"] == "fp16" and gain["difference"] == pytest.approx(0.5)
    # Every example is shifted alike: the paired interval has no width to speak of.
    assert gain["ci_high"] - gain["ci_low"] < 1e-9

    text = open(out["markdown"]).read()
    assert "nats per target token" in text and "Difference from fp16" in text
    assert "| toy | fp16 | 0 | +2.00 [" in text and "| toy | nf4 | 0 | +0.50 [+0.50, +0.50]" in text
    # The first family's loss along the chain, as losses: 1.0 after its own stage, 1.8 after math.
    assert "| model | precision | buffer | nlu loss after nlu | nlu loss after math | seeds |" in text
    trajectory = next(line for line in text.splitlines() if line.startswith("| toy | fp16 | 0 | 1.00 ["))
    low, high = (float(x) for x in trajectory.split(" | ")[4].split("[")[1].rstrip("]").split(", "))
    assert trajectory.split(" | ")[4].startswith("1.80 [") and low <= 1.8 <= high
    page = open(out["html"]).read()
    assert page.startswith("<!DOCTYPE html>") and "<td>+0.50 [+0.50, +0.50]</td>" in page


@pytest.mark.slow
def test_turning_it_on_adds_its_jobs_to_a_finished_grid_and_retrains_nothing(micro_grid, tmp_path):
    grid_dir, grid_config = micro_grid
    workdir = tmp_path / "grid"
    # A copy with Snakemake's records, so the micro grid stays as other tests expect it.
    shutil.copytree(grid_dir, workdir, symlinks=True)
    config = copy.deepcopy(grid_config)
    config["heldout_loss"] = {"examples": 3}
    dry = run_snakemake(config, workdir, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-4000:]
    # Aggregate follows because its cost tables count the new jobs; plots read aggregate's tables.
    counts = expected_job_counts(config)
    assert job_counts(dry.stdout) == {"heldout_loss": counts["heldout_loss"], "heldout_tables": 1, "aggregate": 1,
                                      "plots": 1, "all": 1}  # fmt: skip
    proc = run_snakemake(config, workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]

    base = pl.read_parquet(workdir / "results/eval/toy/fp32/base/heldout_loss.parquet")
    # Every test task, three examples each (the micro grid's test splits hold ten).
    assert base.group_by("task").len()["len"].to_list() == [3] * len(config["tasks"])
    intervals = pl.read_csv(workdir / "results/tables/heldout_intervals.csv",
                            schema_overrides={"buffer": pl.String, "seed": pl.String})  # fmt: skip
    assert set(intervals["precision"]) == set(config["precisions"])
    losses = pl.read_csv(workdir / "results/tables/heldout_loss.csv",
                         schema_overrides={"buffer": pl.String, "seed": pl.String})  # fmt: skip
    # gain_nlu of a cell is its base's NLU loss minus its NLU loss after stage 1, means over the family's tasks.
    fp32 = losses.filter(pl.col("precision") == "fp32", pl.col("buffer") == "0", pl.col("family") == "nlu")
    nlu = fp32.group_by("after_stage").agg(pl.col("loss").mean()).sort("after_stage")["loss"].to_list()
    gain = intervals.filter(pl.col("precision") == "fp32", pl.col("buffer") == "0", pl.col("seed") == "all",
                            pl.col("metric") == "gain_nlu")["estimate"][0]  # fmt: skip
    assert gain == pytest.approx(nlu[0] - nlu[1])
    jobs = pl.read_csv(workdir / "results/tables/jobs.csv", schema_overrides={"stage": pl.String})
    assert (jobs["rule"] == "heldout_loss").sum() == counts["heldout_loss"]
    assert "Held-out target loss" in (workdir / "results/tables/heldout_loss.md").read_text()
    again = run_snakemake(config, workdir, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr

    # A broken loss file stops the tables with one line that names it and the job that rebuilds it.
    broken = "results/eval/toy/nf4/seed0/buf0.1/math/heldout_loss.parquet"
    os.truncate(workdir / broken, 100)
    proc = run_snakemake(config, workdir, "--forcerun", "heldout_tables", "--", "results/tables/heldout_loss.md")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Corrupt input: ")]
    assert len(lines) == 1 and lines[0].startswith(f"Corrupt input: {broken} "), proc.stderr[-4000:]
    assert lines[0].endswith(f"rebuild it with: snakemake --cores all --forcerun heldout_loss -- {broken}")
