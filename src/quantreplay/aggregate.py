"""One tidy table of every score, one row of metrics per cell, and the paper-style table.

accuracy.csv: one row per (model, precision, buffer, seed, after_stage, task), after_stage 0 being the
untrained base (its scores, like stage 1's, are shared by every buffer and repeated in each cell's rows).
summary.csv: one row per (model, precision, buffer, seed) with the metrics of quantreplay.metrics.
intervals.csv: every summary metric with its bootstrap interval, per seed and pooled over seeds (seed 'all').
comparison.csv: each precision minus the reference precision, paired by test example and seed, with intervals.
cost.csv and jobs.csv: what each rule, precision and stage cost (quantreplay.cost), from Snakemake's benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from quantreplay.cost import cost_table, job_table
from quantreplay.intervals import AnalysisSettings, interval_tables
from quantreplay.io import read_json, write_csv, write_text
from quantreplay.metrics import metric_columns

ACCURACY_COLUMNS = ("model", "precision", "buffer", "seed", "after_stage", "task", "family", "metric", "value", "n")


def accuracy_rows(cell: dict, score_files: Sequence[str]) -> list[dict]:
    """Rows of accuracy.csv for one cell from its scores.json files (base first, then stages in order)."""
    rows = []
    for after_stage, path in enumerate(score_files):
        tasks = read_json(path)["tasks"]
        for task, score in tasks.items():
            rows.append({**cell, "after_stage": after_stage, "task": task, "family": score["family"],
                         "metric": score["metric"], "value": score["value"], "n": score["n"]})  # fmt: skip
    return rows


def summary_row(metrics: dict) -> dict:
    """One summary.csv row from a cell's metrics (quantreplay.metrics.write_cell_metrics output)."""
    cell = {k: metrics["cell"][k] for k in ("model", "precision", "buffer", "seed")}
    return {**cell, **metric_columns(metrics, metrics["stages"])}


def _table_columns(stages: Sequence[str]) -> list[str]:
    """The paper table's metrics: forward accuracy after each stage, then retention of each earlier family."""
    forward = [f"forward_{f}" for f in stages]
    return forward + [f"retention_{stages[j]}_after_{stages[k]}" for k in range(1, len(stages)) for j in range(k)]


def _formatted(frame: pl.DataFrame, stages: Sequence[str], *, signed: bool) -> tuple[list[str], list[list[str]]]:
    """Header and rows, one per (model, precision, buffer) of frame's seed-'all' rows: each metric in percent
    with its interval, then the number of seeds."""
    keys = ["model", "precision", "buffer"]
    columns = _table_columns(stages)
    value = "difference" if "difference" in frame.columns else "estimate"
    pooled = frame.filter(pl.col("seed") == "all", pl.col("metric").is_in(columns)).with_columns(
        pl.col("buffer").cast(pl.Float64, strict=False).alias("_order")
    )
    fmt = "{:+.1f}" if signed else "{:.1f}"
    rows = []
    for group, cells in pooled.sort("model", "precision", "_order", "buffer").group_by(keys, maintain_order=True):
        by_metric = {r["metric"]: r for r in cells.iter_rows(named=True)}
        values = [
            f"{fmt.format(100 * by_metric[c][value])} [{fmt.format(100 * by_metric[c]['ci_low'])}, "
            f"{fmt.format(100 * by_metric[c]['ci_high'])}]"
            for c in columns
        ]
        rows.append([*map(str, group), *values, str(cells["n_seeds"][0])])
    return [*keys, *(c.replace("_", " ") for c in columns), "seeds"], rows


def _captions(intervals: pl.DataFrame, comparison: pl.DataFrame) -> tuple[str, str]:
    confidence = f"{100 * intervals['confidence'][0]:g} %"
    accuracy = f"Accuracy in percent [{confidence} bootstrap interval], mean over seeds."
    reference = comparison["reference"][0] if comparison.height else ""
    difference = (f"Difference from {reference} in percentage points, paired by test example and seed "
                  f"[{confidence} bootstrap interval].")  # fmt: skip
    return accuracy, difference


def paper_table(intervals: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str]) -> str:
    """Markdown: per precision and buffer, forward accuracy after each stage and retention of earlier families
    in percent (means over seeds) with bootstrap intervals; then each precision minus the reference."""

    def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                                 for r in rows]  # fmt: skip

    accuracy, difference = _captions(intervals, comparison)
    lines = [accuracy, "", *markdown(*_formatted(intervals, stages, signed=False))]
    if comparison.height:
        lines += ["", difference, "", *markdown(*_formatted(comparison, stages, signed=True))]
    return "\n".join(lines) + "\n"


def paper_table_html(intervals: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str]) -> str:
    """The paper table as a standalone HTML page, for the report."""
    from html import escape

    def table(caption: str, header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><caption>{escape(caption)}</caption><tr>{head}</tr>{body}</table>"

    accuracy, difference = _captions(intervals, comparison)
    parts = [table(accuracy, *_formatted(intervals, stages, signed=False))]
    if comparison.height:
        parts.append(table(difference, *_formatted(comparison, stages, signed=True)))
    style = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin:1em 0}"
             "caption{text-align:left;font-weight:bold;padding:4px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "white-space:nowrap}tr:nth-child(even){background:#f4f4f4}")  # fmt: skip
    head = f"<head><meta charset='utf-8'><title>quantreplay tables</title><style>{style}</style></head>"
    return f"<!DOCTYPE html><html>{head}<body>{''.join(parts)}</body></html>\n"


def per_cell(files: Sequence[str], n_cells: int) -> list[list[str]]:
    """`files`, each cell's checkpoints in stage order and cell after cell, cut into one run per cell."""
    if n_cells == 0 or len(files) % n_cells:
        raise ValueError(f"{len(files)} checkpoint files do not split evenly into {n_cells} cells")
    size = len(files) // n_cells
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def aggregate(*, cells: Sequence[dict], score_files: Sequence[str], prediction_files: Sequence[str],
              metric_files: Sequence[str], jobs: Sequence[dict], benchmark_files: Sequence[str],
              stages: Sequence[str], settings: AnalysisSettings, out: Mapping[str, str]) -> pl.DataFrame:  # fmt: skip
    """Write accuracy.csv, summary.csv, intervals.csv, comparison.csv, cost.csv, jobs.csv and the paper-style
    Markdown table (`out` keys accuracy, summary, intervals, comparison, cost, jobs, table, table_html); returns the
    summary frame. `jobs` (quantreplay.grid.jobs) ran with `benchmark_files` as their Snakemake benchmarks.

    `score_files` and `prediction_files` hold each cell's checkpoints (the base first, then stages in order), cell
    after cell in `cells` order; `metric_files[i]` is the metrics file of `cells[i]`. Precisions are compared with
    `settings.reference_precision` (None: no comparison).
    """
    scores = per_cell(score_files, len(cells))
    rows = [r for cell, files in zip(cells, scores, strict=True) for r in accuracy_rows(cell, files)]
    accuracy = pl.DataFrame(rows).select(ACCURACY_COLUMNS)
    summary = pl.DataFrame([summary_row(read_json(p)) for p in metric_files])
    families = {r["task"]: r["family"] for r in rows}
    intervals, comparison = interval_tables(cells=cells, prediction_files=per_cell(prediction_files, len(cells)),
                                            families=families, stages=stages,
                                            reference=settings.reference_precision, settings=settings)  # fmt: skip
    write_csv(accuracy, out["accuracy"])
    write_csv(summary, out["summary"])
    write_csv(intervals, out["intervals"])
    write_csv(comparison, out["comparison"])
    job_costs = job_table(jobs, benchmark_files)
    write_csv(cost_table(job_costs), out["cost"])
    write_csv(job_costs, out["jobs"])
    write_text(out["table"], paper_table(intervals, comparison, stages))
    write_text(out["table_html"], paper_table_html(intervals, comparison, stages))
    return summary
