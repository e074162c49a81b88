"""A second seed: it schedules only its own cells, leaves seed 0's numbers as they were, and pools with them."""

import copy
import shutil

import polars as pl
import pytest

from conftest import job_counts, run_snakemake

pytestmark = pytest.mark.slow
LINEAR = ["forward_nlu", "forward_math", "retention_nlu_after_math", "bwt", "average_accuracy"]


def _intervals(workdir) -> pl.DataFrame:
    return pl.read_csv(workdir / "results/tables/intervals.csv", schema_overrides={"buffer": pl.String,
                                                                                    "seed": pl.String})  # fmt: skip


def test_a_second_seed_adds_only_its_cells_and_pools(micro_grid, tmp_path):
    grid_dir, grid_config = micro_grid
    workdir = tmp_path / "grid"
    # A copy with Snakemake's records, so the micro grid stays as other tests expect it.
    shutil.copytree(grid_dir, workdir, symlinks=True)
    one = copy.deepcopy(grid_config)
    one["precisions"] = ["fp16", "nf4"]
    proc = run_snakemake(one, workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    before = _intervals(workdir)

    two = copy.deepcopy(one)
    two["seeds"] = [0, 1]
    dry = run_snakemake(two, workdir, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-4000:]
    # Seed 1's mixes, its stage 1 per precision, stage 2 per precision and buffer, their evaluations (the base is
    # shared), its cells' metrics and figures; then the tables.
    seed_jobs = {"replay_mix": 2, "train_first_stage": 2, "train_stage": 4, "evaluate": 6, "cell_metrics": 4}
    assert job_counts(dry.stdout) == {**seed_jobs, "plot_r_matrix": 4, "telemetry": 1, "aggregate": 1, "plots": 1,
                                      "all": 1}  # fmt: skip
    proc = run_snakemake(two, workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = _intervals(workdir)

    # Seed 0's own rows are unchanged, to the last digit.
    assert after.filter(pl.col("seed") == "0").equals(before.filter(pl.col("seed") == "0"))
    pooled = after.filter(pl.col("seed") == "all")
    assert set(pooled["n_seeds"]) == {2} and set(pooled["resampled"]) == {"examples and seeds"}
    for row in pooled.filter(pl.col("metric").is_in(LINEAR)).iter_rows(named=True):
        per_seed = after.filter(pl.col("precision") == row["precision"], pl.col("buffer") == row["buffer"],
                                pl.col("metric") == row["metric"], pl.col("seed") != "all")  # fmt: skip
        assert row["estimate"] == pytest.approx(per_seed["estimate"].mean())
        # On the same test set, the mean of two runs is measured at least as precisely as the less precise run.
        widest = (per_seed["ci_high"] - per_seed["ci_low"]).max()
        assert row["examples_ci_high"] - row["examples_ci_low"] <= widest + 1e-9, row
    for precision in ("fp16", "nf4"):
        for buffer in ("0", "0.1"):
            assert (workdir / f"results/plots/r_matrix/toy/{precision}/seed1/buf{buffer}.png").exists()
    assert "| 2 |" in (workdir / "results/tables/paper_table.md").read_text()
