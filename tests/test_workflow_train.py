"""End to end: a micro grid trains every precision through two stages; re-runs schedule only what changed."""

import copy
import json

import pytest
from peft import PeftModel

from conftest import MICRO_GRID_PRECISIONS, job_counts, micro_config, run_snakemake, scheduled_jobs
from quantreplay.bases import resolve_base
from quantreplay.quantize import QuantConfig, load_base

pytestmark = pytest.mark.slow
PRECISIONS = MICRO_GRID_PRECISIONS


@pytest.fixture(scope="module")
def grid(micro_grid):
    return micro_grid


def test_dry_run_has_one_stage_one_job_per_precision_and_seed(default_config, tmp_path):
    config = micro_config(default_config)
    config.update(precisions=PRECISIONS, seeds=[0, 1], buffers=[0, 0.001, 0.1], stages=["nlu", "math", "code"])
    proc = run_snakemake(config, tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["train_first_stage"] == 5 * 2
    # stages 2 and 3 for every precision, seed and buffer; replay mixes are shared by the precisions.
    assert counts["train_stage"] == 5 * 2 * 3 * 2
    assert counts["replay_mix"] == 2 * 3 * 2


def test_job_resources_come_from_the_model(default_config, tmp_path):
    config = micro_config(default_config)
    config["models"]["toy"]["resources"]["train"] = {"threads": 2, "mem_mb": 1234, "runtime": 7, "gpu": 1}
    proc = run_snakemake(config, tmp_path, "--dry-run", "--resources", "gpu=1")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("\n\n")
    train = [b for b in blocks if "rule train_first_stage:" in b or "rule train_stage:" in b]
    evaluate = [b for b in blocks if "rule evaluate:" in b]
    assert train and evaluate
    for block in train:
        assert "threads: 2" in block and "mem_mb=1234" in block and "runtime=7" in block and "gpu=1" in block
    for block in evaluate:
        assert "mem_mb=2000" in block and "gpu=0" in block


def test_every_cell_trained_both_stages(grid):
    workdir, config = grid
    for precision in PRECISIONS:
        stage1 = workdir / f"results/train/toy/{precision}/seed0/nlu"
        report = json.loads((stage1 / "train.json").read_text())
        assert report["steps"] == 3 and report["previous_adapter"] is None
        assert report["cell"]["precision"] == precision
        for buffer in ("0", "0.1"):
            stage2 = workdir / f"results/train/toy/{precision}/seed0/buf{buffer}/math"
            report = json.loads((stage2 / "train.json").read_text())
            assert report["previous_adapter"].endswith(f"results/train/toy/{precision}/seed0/nlu/adapter")
            assert (workdir / f"logs/train/toy/{precision}/seed0/buf{buffer}/math.log").exists()
    layers = json.loads((workdir / "results/train/toy/nf4/seed0/nlu/train.json").read_text())["base_layers"]
    assert layers["Linear4bit"] == 14


def test_replay_mix_holds_the_buffer(grid):
    import polars as pl

    workdir, _ = grid
    none = pl.read_parquet(workdir / "results/replay/seed0/buf0/math.parquet")
    ten = pl.read_parquet(workdir / "results/replay/seed0/buf0.1/math.parquet")
    assert not none["replay"].any() and none.height == 40
    # 10 % of each of the eight 40-row NLU training splits: 4 each.
    assert ten.filter(ten["replay"]).group_by("task").len()["len"].to_list() == [4] * 8
    # Only training rows: no id and no prompt of any test split enters a mix.
    tests = pl.concat(
        [pl.read_parquet(p, columns=["id", "prompt"]) for p in workdir.glob("results/data/*/test.parquet")]
    )
    assert not set(ten["id"]) & set(tests["id"]) and not set(ten["prompt"]) & set(tests["prompt"])


def test_adapters_are_standard_peft_folders(grid):
    workdir, _ = grid
    base = load_base(resolve_base(workdir / "results/base/toy"), precision="int8", quant=QuantConfig(), device="cpu")
    model = PeftModel.from_pretrained(base, workdir / "results/train/toy/int8/seed0/buf0.1/math/adapter")
    assert model.peft_config["default"].r == 8


def test_every_checkpoint_is_evaluated_and_every_cell_has_metrics(grid):
    workdir, config = grid
    tasks = set(config["tasks"])
    for precision in PRECISIONS:
        for checkpoint in ("base", "seed0/nlu", "seed0/buf0/math", "seed0/buf0.1/math"):
            scores = json.loads((workdir / f"results/eval/toy/{precision}/{checkpoint}/scores.json").read_text())
            assert set(scores["tasks"]) == tasks
            assert all(0 <= s["value"] <= 1 and s["n"] == 4 for s in scores["tasks"].values())
        for buffer in ("0", "0.1"):
            metrics = json.loads((workdir / f"results/metrics/toy/{precision}/seed0/buf{buffer}.json").read_text())
            # Rows: base, after nlu, after math; columns: nlu, math.
            assert len(metrics["R"]) == 3 and all(len(row) == 2 for row in metrics["R"])
            assert set(metrics) >= {"forward", "retention", "bwt", "forgetting", "average_accuracy"}
    # Stage 1 is shared: both buffers' metrics hold the same stage-1 row.
    a = json.loads((workdir / "results/metrics/toy/nf4/seed0/buf0.json").read_text())
    b = json.loads((workdir / "results/metrics/toy/nf4/seed0/buf0.1.json").read_text())
    assert a["R"][:2] == b["R"][:2]


def test_tables_follow_the_contract(grid):
    import polars as pl

    workdir, config = grid
    accuracy = pl.read_csv(workdir / "results/tables/accuracy.csv")
    assert accuracy.columns == ["model", "precision", "buffer", "seed", "after_stage", "task", "family", "metric",
                                "value", "n"]  # fmt: skip
    # 5 precisions x 2 buffers x 1 seed, after stages 0..2, 10 tasks each.
    assert accuracy.height == 5 * 2 * 3 * len(config["tasks"])
    assert accuracy.select("model", "precision", "buffer", "seed", "after_stage", "task").is_duplicated().sum() == 0
    summary = pl.read_csv(workdir / "results/tables/summary.csv", schema_overrides={"buffer": pl.String})
    assert summary.height == 10
    metrics = ["forward_nlu", "forward_math", "gain_nlu", "gain_math", "retention_nlu_after_math",
               "relative_retention_nlu_after_math", "bwt", "forgetting_nlu", "average_accuracy"]  # fmt: skip
    assert summary.columns == ["model", "precision", "buffer", "seed", *metrics]
    strings = {"buffer": pl.String, "seed": pl.String}
    intervals = pl.read_csv(workdir / "results/tables/intervals.csv", schema_overrides=strings)
    # Every metric of every cell, for seed 0 and pooled ('all').
    assert intervals.height == 10 * len(metrics) * 2
    pooled = intervals.filter(pl.col("seed") == "all").join(
        summary.unpivot(index=["precision", "buffer"], on=metrics, variable_name="metric"),
        on=["precision", "buffer", "metric"],
    )
    assert pooled.height == 10 * len(metrics)
    finite = pooled.filter(pl.col("value").is_not_nan())
    assert (finite["estimate"] - finite["value"]).abs().max() < 1e-9
    assert ((finite["ci_low"] <= finite["estimate"]) & (finite["estimate"] <= finite["ci_high"])).all()
    comparison = pl.read_csv(workdir / "results/tables/comparison.csv", schema_overrides=strings)
    # fp32 (the widest float precision) is the reference; the four others x 2 buffers x (seed 0, all).
    assert set(comparison["reference"]) == {"fp32"} and comparison.height == 4 * 2 * len(metrics) * 2
    table = (workdir / "results/tables/paper_table.md").read_text().splitlines()
    assert table[2].startswith("| model | precision | buffer |") and "Difference from fp32" in "\n".join(table)
    assert any(line.startswith("Learning and forgetting") for line in table)
    assert (workdir / "results/tables/paper_table.html").read_text().count("<table>") == 3


def test_figures_are_written_and_not_blank(grid):
    import matplotlib.image

    from quantreplay.grid import plot_names, r_matrix_plots

    workdir, config = grid
    names = plot_names(config)
    assert {"heatmap_retention", "retention_by_buffer", "difference_by_buffer", "training_loss"} <= set(names)
    figures = [f"results/plots/{name}.png" for name in names] + r_matrix_plots(config)
    assert len(figures) == len(names) + 10
    for png in figures:
        image = matplotlib.image.imread(workdir / png)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.05, png
        assert (workdir / png).with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def _dry(config, workdir):
    proc = run_snakemake(config, workdir, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    return job_counts(proc.stdout)


def _jobs(config, workdir) -> list[tuple[str, dict]]:
    proc = run_snakemake(config, workdir, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    return scheduled_jobs(proc.stdout)


def _values(jobs, key: str) -> set[str]:
    """The values of one wildcard over the jobs that have it."""
    return {w[key] for _, w in jobs if key in w}


def _downstream(cells: int) -> dict[str, int]:
    """The jobs that follow `cells` changed cells: their metrics and R-matrix figures, and the grid's tables."""
    return {"cell_metrics": cells, "plot_r_matrix": cells, "aggregate": 1, "plots": 1, "all": 1}


def _retrained(cells: int) -> dict[str, int]:
    """The jobs that follow `cells` cells with new adapters: `_downstream`, and the adapter telemetry."""
    return {**_downstream(cells), "telemetry": 1}


def test_reruns_schedule_only_the_affected_jobs(grid):
    workdir, config = grid
    assert _dry(config, workdir) == {}
    changed = copy.deepcopy(config)
    changed["buffers"] = [0, 0.2]
    # One new buffer: its mix, then per precision its stage 2, that checkpoint's evaluation and the new cell.
    after_new_buffer = {"replay_mix": 1, "train_stage": 5, "evaluate": 5, **_retrained(5)}
    assert _dry(changed, workdir) == after_new_buffer
    # ... and every one of them is the new buffer's (evaluations name it in their checkpoint).
    jobs = _jobs(changed, workdir)
    assert _values(jobs, "buffer") == {"0.2"} and {w["checkpoint"] for r, w in jobs if r == "evaluate"} == {
        "seed0/buf0.2/math"
    }
    added = copy.deepcopy(config)
    added["buffers"] = [0, 0.1, 0.05]
    assert _dry(added, workdir) == after_new_buffer
    counted = copy.deepcopy(config)
    counted["buffer_counts"] = [2]
    assert _dry(counted, workdir) == after_new_buffer
    seeded = copy.deepcopy(config)
    seeded["seeds"] = [0, 1]
    # The untrained base is scored once per precision, not per seed.
    assert _dry(seeded, workdir) == {
        "replay_mix": 2,
        "train_first_stage": 5,
        "train_stage": 10,
        "evaluate": 15,
        **_retrained(10),
    }
    jobs = _jobs(seeded, workdir)
    assert _values(jobs, "seed") == {"1"} and all(
        w["checkpoint"].startswith("seed1/") for r, w in jobs if r == "evaluate"
    )
    later_lr = copy.deepcopy(config)
    later_lr["training"]["stages"] = {"math": {"lr": 1.0e-4}}
    assert _dry(later_lr, workdir) == {"train_stage": 10, "evaluate": 10, **_retrained(10)}
    assert _values(_jobs(later_lr, workdir), "stage") == {"math"}
    first_lr = copy.deepcopy(config)
    first_lr["training"]["stages"] = {"nlu": {"lr": 1.0e-4}}
    # Stage 1 re-runs, and every stage 2 after it because its input adapter will change.
    assert _dry(first_lr, workdir) == {"train_first_stage": 5, "train_stage": 10, "evaluate": 15, **_retrained(10)}
    evaluation = copy.deepcopy(config)
    evaluation["evaluation"]["max_examples"] = 5
    # Re-scoring only: every checkpoint (base, stage 1, two stage 2s per precision) and every cell's metrics.
    assert _dry(evaluation, workdir) == {"evaluate": 20, **_downstream(10)}
    resourced = copy.deepcopy(config)
    resourced["models"]["toy"]["resources"]["train"]["mem_mb"] = 8000
    # Where a job runs and what it may use is not what it computes: nothing re-runs.
    assert _dry(resourced, workdir) == {}
    analysis = copy.deepcopy(config)
    analysis["analysis"]["bootstrap_resamples"] = 500
    # Intervals are drawn from the predictions already there: the tables and figures only.
    assert _dry(analysis, workdir) == {"aggregate": 1, "plots": 1, "all": 1}
