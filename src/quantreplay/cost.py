"""Where the time went, from Snakemake's own records: every job's benchmark file (wall seconds, CPU seconds, peak
memory), summed per rule, precision and stage, and the run's critical path.

`python -m quantreplay.cost results/tables/jobs.csv` prints the total CPU time, the summed wall time and the
critical path: the longest chain of jobs that wait on each other, a lower bound on the run's wall time however
many cores it gets.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

import polars as pl

from quantreplay.grid import log_of_benchmark
from quantreplay.io import read_csv
from quantreplay.warm import worker_record

# Snakemake's benchmark columns: `s` (wall seconds), `cpu_time` (user + system seconds), `max_rss` (MB).
BENCHMARK_COLUMNS = {"s": "wall_seconds", "cpu_time": "cpu_seconds", "max_rss": "max_rss_mb"}
COST_KEYS = ("rule", "precision", "stage")


def job_table(jobs: Sequence[dict], benchmark_files: Sequence[str]) -> pl.DataFrame:
    """One row per job (`quantreplay.grid.jobs`, whose benchmark files are `benchmark_files`, in order): rule,
    precision, stage, id, needs (JSON), wall and CPU seconds, peak memory (`job_cost`)."""
    rows = []
    for job, path in zip(jobs, benchmark_files, strict=True):
        rows.append({
            "rule": job["rule"],
            "precision": job["wildcards"].get("precision"),
            "stage": job["stage"],
            "id": job["id"],
            "needs": json.dumps(job["needs"]),
            **job_cost(path),
        })  # fmt: skip
    schema = {"rule": pl.String, "precision": pl.String, "stage": pl.String, "id": pl.String, "needs": pl.String,
              **dict.fromkeys(BENCHMARK_COLUMNS.values(), pl.Float64)}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def job_cost(benchmark: str) -> dict[str, float | None]:
    """Wall and CPU seconds and peak memory of the job whose Snakemake benchmark file is `benchmark`.

    A warm-started job (quantreplay.warm) ran outside the process tree that Snakemake measured: its own CPU time
    and peak memory, which it recorded beside its log (`worker_record`) if it ran so, add to the script's.
    """
    cost = {name: _number(value) for name, value in _first_record(benchmark).items()}
    if os.path.exists(worker := worker_record(log_of_benchmark(benchmark))):
        worker_cost = {name: _number(value) for name, value in _first_record(worker).items()}
        cost["cpu_seconds"] = (cost["cpu_seconds"] or 0.0) + (worker_cost["cpu_seconds"] or 0.0)
        cost["max_rss_mb"] = max(cost["max_rss_mb"] or 0.0, worker_cost["max_rss_mb"] or 0.0)
    return cost


def _first_record(path: str) -> dict[str, str | None]:
    # A job benchmarked with --benchmark-repeats has several lines; its cost is the first run's.
    record = read_csv(path, separator="\t", infer_schema_length=0).row(0, named=True)
    return {name: record.get(column) for column, name in BENCHMARK_COLUMNS.items()}


def _number(value) -> float | None:
    # Snakemake writes NA where psutil could not read a value (a job that ended within its first poll).
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def cost_table(jobs: pl.DataFrame) -> pl.DataFrame:
    """Per rule, precision and stage: jobs, wall and CPU seconds summed, the largest peak memory."""
    return (
        jobs.group_by(COST_KEYS, maintain_order=True)
        .agg(
            pl.len().alias("jobs"),
            # Snakemake records hundredths of a second.
            pl.col("wall_seconds").sum().round(2),
            pl.col("cpu_seconds").sum().round(2),
            pl.col("max_rss_mb").max(),
        )
        .sort(COST_KEYS, nulls_last=True)
    )


def critical_path(jobs: pl.DataFrame) -> tuple[float, list[str]]:
    """The longest chain of dependent jobs by wall time: (its seconds, its job ids from first to last)."""
    wall = dict(zip(jobs["id"], jobs["wall_seconds"].fill_null(0.0), strict=True))
    needs = {i: json.loads(n) for i, n in zip(jobs["id"], jobs["needs"], strict=True)}
    finish: dict[str, tuple[float, str | None]] = {}
    # Jobs are listed after the jobs they need (quantreplay.grid.jobs adds them in that order).
    for job in jobs["id"]:
        before = max(((finish[n][0], n) for n in needs[job]), default=(0.0, None))
        finish[job] = (before[0] + wall[job], before[1])
    last = max(finish, key=lambda j: finish[j][0])
    chain, node = [], last
    while node is not None:
        chain.append(node)
        node = finish[node][1]
    return finish[last][0], chain[::-1]


def summary(jobs: pl.DataFrame) -> str:
    """Total CPU and wall time of the jobs and the critical path, as lines for a terminal."""
    seconds, chain = critical_path(jobs)
    wall = dict(zip(jobs["id"], jobs["wall_seconds"].fill_null(0.0), strict=True))
    lines = [
        f"{jobs.height} jobs: {jobs['cpu_seconds'].sum():.0f} CPU seconds, {jobs['wall_seconds'].sum():.0f} wall "
        f"seconds summed over jobs",
        f"critical path: {seconds:.0f} s over {len(chain)} jobs (the least wall time any number of cores allows)",
        *(f"  {wall[job]:8.1f} s  {job}" for job in chain),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantreplay.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", nargs="?", default="results/tables/jobs.csv", help="jobs.csv of the aggregate step")
    args = parser.parse_args(argv)
    print(summary(pl.read_csv(args.jobs, schema_overrides={"precision": pl.String, "stage": pl.String})))


if __name__ == "__main__":
    main()
