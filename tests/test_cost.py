"""Where the time went: Snakemake's benchmark files summed per rule, precision and stage, and the critical path."""

import json
import subprocess
import sys

import polars as pl
import pytest

from quantreplay import grid
from quantreplay.config import task_splits
from quantreplay.cost import cost_table, critical_path, job_table

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _benchmark(path, wall, cpu, rss="120.5"):
    path.write_text(HEADER + f"{wall}\t0:00:01\t{rss}\t300\t100\t110\t0.1\t0.2\t90.0\t{cpu}\n")
    return str(path)


def test_costs_sum_per_rule_precision_and_stage_and_the_critical_path_follows_needs(tmp_path):
    jobs = [
        {"rule": "prepare_data", "wildcards": {"task": "a"}, "stage": None, "id": "d", "needs": []},
        {"rule": "train_stage", "wildcards": {"precision": "nf4"}, "stage": "nlu", "id": "t1", "needs": ["d"]},
        {"rule": "train_stage", "wildcards": {"precision": "nf4"}, "stage": "nlu", "id": "t2", "needs": ["d"]},
        {"rule": "evaluate", "wildcards": {"precision": "nf4"}, "stage": "nlu", "id": "e", "needs": ["t1", "t2"]},
    ]
    costs = zip(jobs, (1, 10, 3, 2), (1, 9, 3, "NA"), strict=True)
    files = [_benchmark(tmp_path / f"{j['id']}.tsv", wall, cpu) for j, wall, cpu in costs]
    table = job_table(jobs, files)
    cost = cost_table(table)
    train = cost.filter(pl.col("rule") == "train_stage").row(0, named=True)
    assert train == {"rule": "train_stage", "precision": "nf4", "stage": "nlu", "jobs": 2, "wall_seconds": 13.0,
                     "cpu_seconds": 12.0, "max_rss_mb": 120.5}  # fmt: skip
    # A value Snakemake could not measure is missing, not zero.
    assert table.filter(pl.col("id") == "e")["cpu_seconds"].to_list() == [None]
    assert critical_path(table) == (13.0, ["d", "t1", "e"])


def test_the_grid_names_a_benchmark_file_for_every_job_before_the_tables(default_config):
    from conftest import AFTER_JOBS, ROOT, expected_job_counts
    from quantreplay.config import check_config, load_schema

    config = json.loads(json.dumps(default_config))
    check_config(config, load_schema(ROOT / "config" / "schema" / "config.schema.yaml"))
    splits = {name: task_splits(name, task) for name, task in config["tasks"].items()}
    jobs = grid.jobs(config, splits)
    counts = {rule: sum(j["rule"] == rule for j in jobs) for rule in {j["rule"] for j in jobs}}
    expected = expected_job_counts(config)
    assert counts == {r: n for r, n in expected.items() if r not in AFTER_JOBS}
    ids = [j["id"] for j in jobs]
    assert len(set(ids)) == len(ids) and len({grid.job_benchmark(j) for j in jobs}) == len(jobs)
    # Every job comes after the jobs it needs, so one pass finds the critical path.
    seen = set()
    for job in jobs:
        assert set(job["needs"]) <= seen
        seen.add(job["id"])


@pytest.mark.slow
def test_a_run_records_what_every_job_cost(micro_grid):
    workdir, config = micro_grid
    cost = pl.read_csv(workdir / "results/tables/cost.csv", schema_overrides={"stage": pl.String})
    jobs = pl.read_csv(workdir / "results/tables/jobs.csv", schema_overrides={"stage": pl.String})
    from conftest import AFTER_JOBS, expected_job_counts

    assert (
        cost["jobs"].sum()
        == jobs.height
        == sum(n for r, n in expected_job_counts(config).items() if r not in AFTER_JOBS)
    )
    assert (jobs["wall_seconds"] > 0).all() and jobs["max_rss_mb"].max() > 100
    for rule in ("aggregate", "plots"):
        assert (workdir / grid.rule_benchmark(rule)).is_file()
    out = subprocess.run([sys.executable, "-m", "quantreplay.cost", str(workdir / "results/tables/jobs.csv")],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "critical path:" in out and "CPU seconds" in out and "evaluate" in out
    report = json.loads(next((workdir / "results/train/toy/nf4").rglob("train.json")).read_text())
    assert report["compute_dtype"] == "fp32" and report["cpu_capability"] and 0 < report["startup_seconds"] < 120
    scores = json.loads((workdir / "results/eval/toy/bf16/base/scores.json").read_text())
    assert scores["compute_dtype"] == "fp32" and 0 < scores["startup_seconds"] < 120
