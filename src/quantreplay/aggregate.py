"""One tidy table of every score, one row of metrics per cell, and the paper-style table.

accuracy.csv: one row per (model, precision, buffer, seed, after_stage, task), after_stage 0 being the
untrained base (its scores, like stage 1's, are shared by every buffer and repeated in each cell's rows).
summary.csv: one row per (model, precision, buffer, seed) with the metrics of quantreplay.metrics.
intervals.csv: every summary metric with its bootstrap interval, per seed and pooled over seeds (seed 'all').
comparison.csv: each precision minus the reference precision, paired by test example and seed, with intervals and
the power of each comparison (quantreplay.intervals.with_power).
findings.csv, findings.md (and .html): a verdict on each of the paper's headline claims (quantreplay.findings).
mechanism.csv, mechanism.md (and .html): the control arms beside int8, nf4 and the reference (quantreplay.mechanism).
cost.csv and jobs.csv: what each rule, precision and stage cost (quantreplay.cost), from Snakemake's benchmarks.
heldout_loss.csv, heldout_intervals.csv, heldout_comparison.csv, heldout_loss.md (and .html): the held-out target
loss tables (rule heldout_tables, `heldout_tables`; quantreplay.heldout).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from quantreplay.cost import cost_table, job_table
from quantreplay.findings import Run, Section, describe_base, findings_sections, findings_table
from quantreplay.grid import per_cell
from quantreplay.heldout import SCORE
from quantreplay.intervals import AnalysisSettings, cell_groups, interval_tables, with_power
from quantreplay.io import read_json, read_parquet, write_csv, write_text
from quantreplay.mechanism import mechanism_sections, mechanism_table
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


def _learning_columns(stages: Sequence[str]) -> list[str]:
    """Each stage's gain over the untrained base on its own family, then each earlier family's forgetting."""
    return [f"gain_{f}" for f in stages] + [f"forgetting_{f}" for f in stages[:-1]]


def _formatted(frame: pl.DataFrame, columns: Sequence[str], *, signed: bool, scale: float = 100,
               decimals: int = 1) -> tuple[list[str], list[list[str]]]:  # fmt: skip
    """Header and rows, one per (model, precision, buffer) of frame's seed-'all' rows: each metric of `columns`
    times `scale` (percent, by default; a negative scale turns a log-likelihood into a loss) with its interval, then
    the number of seeds."""
    keys = ["model", "precision", "buffer"]
    value = "difference" if "difference" in frame.columns else "estimate"
    pooled = frame.filter(pl.col("seed") == "all", pl.col("metric").is_in(columns)).with_columns(
        pl.col("buffer").cast(pl.Float64, strict=False).alias("_order")
    )
    fmt = f"{{:{'+' if signed else ''}.{decimals}f}}"
    rows = []
    for group, cells in pooled.sort("model", "precision", "_order", "buffer").group_by(keys, maintain_order=True):
        by_metric = {r["metric"]: r for r in cells.iter_rows(named=True)}
        values = []
        for c in columns:
            low, high = sorted((scale * by_metric[c]["ci_low"], scale * by_metric[c]["ci_high"]))
            values.append(f"{fmt.format(scale * by_metric[c][value])} [{fmt.format(low)}, {fmt.format(high)}]")
        rows.append([*map(str, group), *values, str(cells["n_seeds"][0])])
    return [*keys, *(c.replace("_", " ") for c in columns), "seeds"], rows


def _captions(intervals: pl.DataFrame, comparison: pl.DataFrame) -> tuple[str, str]:
    confidence = f"{100 * intervals['confidence'][0]:g} %"
    accuracy = f"Accuracy in percent [{confidence} bootstrap interval], mean over seeds."
    learning = (f"Learning and forgetting in percentage points [{confidence} bootstrap interval], mean over seeds: "
                "gain = a stage's forward accuracy minus the untrained base's on the same family; forgetting = "
                "the family's best score before the last stage minus its score after it.")  # fmt: skip
    reference = comparison["reference"][0] if comparison.height else ""
    difference = (f"Difference from {reference} in percentage points, paired by test example and seed "
                  f"[{confidence} bootstrap interval].")  # fmt: skip
    return accuracy, learning, difference


def markdown(sections: Sequence[Section], title: str | None = None) -> str:
    """Sections (caption, header, rows, notes) as Markdown: each caption, its table, its notes as a list."""
    lines = [f"# {title}", ""] if title else []
    for caption, header, rows, notes in sections:
        lines += [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", *(f"- {n}" for n in notes)] if notes else []
        lines.append("")
    return "\n".join(lines[:-1]) + "\n"


def html_page(sections: Sequence[Section], title: str, *, heading: bool = True,
              images: Sequence[str | os.PathLike] = ()) -> str:  # fmt: skip
    """Sections (caption, header, rows, notes) as a standalone HTML page, for the report; `title` also as its
    heading unless `heading` is False; after the sections each PNG of `images`, embedded, so the page is one file."""
    import base64
    from html import escape

    parts = [f"<h1>{escape(title)}</h1>"] if heading else []
    for caption, header, rows, notes in sections:
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        parts.append(f"<table><caption>{escape(caption)}</caption><tr>{head}</tr>{body}</table>")
        if notes:
            parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    for image in images:
        data = base64.b64encode(Path(image).read_bytes()).decode("ascii")
        parts.append(f"<p><img alt='{escape(Path(image).name)}' style='max-width:100%' "
                     f"src='data:image/png;base64,{data}'></p>")  # fmt: skip
    style = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin:1em 0}"
             "caption{text-align:left;font-weight:bold;padding:4px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "white-space:nowrap}tr:nth-child(even){background:#f4f4f4}")  # fmt: skip
    head = f"<head><meta charset='utf-8'><title>{escape(title)}</title><style>{style}</style></head>"
    return f"<!DOCTYPE html><html>{head}<body>{''.join(parts)}</body></html>\n"


def _paper_sections(intervals: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str]) -> list[Section]:
    accuracy, learning, difference = _captions(intervals, comparison)
    sections = [(accuracy, *_formatted(intervals, _table_columns(stages), signed=False), []),
                (learning, *_formatted(intervals, _learning_columns(stages), signed=True), [])]  # fmt: skip
    if comparison.height:
        sections.append((difference, *_formatted(comparison, _table_columns(stages), signed=True), []))
    return sections


def paper_table(intervals: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str]) -> str:
    """Markdown: per precision and buffer, forward accuracy after each stage and retention of earlier families
    in percent (means over seeds) with bootstrap intervals; each stage's gain over the base and each earlier
    family's forgetting; then each precision minus the reference."""
    return markdown(_paper_sections(intervals, comparison, stages))


def paper_table_html(intervals: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str]) -> str:
    """The paper table as a standalone HTML page, for the report."""
    return html_page(_paper_sections(intervals, comparison, stages), "quantreplay tables", heading=False)


HELDOUT_TITLE = "Held-out target loss: learning and forgetting that accuracy may not resolve"


def heldout_sections(intervals: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str]) -> list[Section]:
    """heldout_loss.md and .html (quantreplay.heldout): per precision and buffer, each stage's gain and each earlier
    family's forgetting in held-out target loss, nats per token; the first family's loss after its stage and each
    later one; then each precision minus the reference in gain and forgetting."""
    confidence = f"{100 * intervals['confidence'][0]:g} %"
    columns = _learning_columns(stages)
    learning = (f"Learning and forgetting in held-out target loss, nats per target token [{confidence} bootstrap "
                "interval], mean over seeds: gain = the untrained base's loss on a stage's own family minus the loss "
                "after that stage; forgetting = the family's loss after the last stage minus the lowest it had "
                "before.")  # fmt: skip
    sections = [(learning, *_formatted(intervals, columns, signed=True, scale=1, decimals=2), [])]
    if len(stages) > 1:
        # The first family's loss along the chain: where forgetting happens, and where replay holds it.
        first = stages[0]
        trajectory = [f"forward_{first}", *(f"retention_{first}_after_{s}" for s in stages[1:])]
        header, rows = _formatted(intervals, trajectory, signed=False, scale=-1, decimals=2)
        caption = (f"The {first} family's held-out loss after its own stage and after each later one, nats per "
                   f"target token [{confidence} bootstrap interval], mean over seeds.")  # fmt: skip
        sections.append((caption, [*header[:3], *(f"{first} loss after {s}" for s in stages), header[-1]], rows, []))
    if comparison.height:
        difference = (f"Difference from {comparison['reference'][0]} in gain and forgetting, nats per token, paired "
                      f"by test example and seed [{confidence} bootstrap interval].")  # fmt: skip
        sections.append((difference, *_formatted(comparison, columns, signed=True, scale=1, decimals=2), []))
    return sections


def heldout_loss_rows(cells: Sequence[dict], loss_files: Sequence[Sequence[str]]) -> pl.DataFrame:
    """heldout_loss.csv: one row per cell, checkpoint (after_stage 0 = the base) and task, with its mean loss."""
    frames = []
    for cell, files in zip(cells, loss_files, strict=True):
        keys = {k: str(cell[k]) for k in ("model", "precision", "buffer", "seed")}
        for after_stage, path in enumerate(files):
            per_task = (
                read_parquet(path, columns=["task", "family", "loss"])
                .group_by("task", "family", maintain_order=True)
                .agg(pl.len().alias("n"), pl.col("loss").mean())
            )
            frames.append(per_task.select(*(pl.lit(v).alias(k) for k, v in keys.items()),
                                          pl.lit(after_stage).alias("after_stage"), pl.all()))  # fmt: skip
    return pl.concat(frames)


def heldout_tables(*, cells: Sequence[dict], loss_files: Sequence[str], stages: Sequence[str], reference: str | None,
                   analysis: AnalysisSettings, out: Mapping[str, str]) -> pl.DataFrame:  # fmt: skip
    """Every held-out table (quantreplay.heldout) from the grid's heldout_loss.parquet files (`loss_files`: each
    cell's checkpoints in stage order, cell after cell as `cells`), written to out['losses'], out['intervals'],
    out['comparison'], out['markdown'] and out['html']. Returns the intervals."""
    files = per_cell(loss_files, len(cells))
    losses = heldout_loss_rows(cells, files)
    write_csv(losses, out["losses"])
    tasks = losses.select("task", "family").unique(maintain_order=True)
    intervals, comparison = interval_tables(
        cells=cells,
        prediction_files=files,
        families=dict(zip(tasks["task"], tasks["family"], strict=True)),
        stages=stages,
        reference=reference,
        settings=analysis,
        column=SCORE,
    )
    write_csv(intervals, out["intervals"])
    write_csv(comparison, out["comparison"])
    sections = heldout_sections(intervals, comparison, stages)
    write_text(out["markdown"], markdown(sections, HELDOUT_TITLE))
    write_text(out["html"], html_page(sections, HELDOUT_TITLE))
    return intervals


FINDINGS_TITLE = "Verdicts on the paper's headline claims"
MECHANISM_TITLE = "What the control arms say about why quantization changes forgetting"


def aggregate(*, cells: Sequence[dict], score_files: Sequence[str], prediction_files: Sequence[str],
              metric_files: Sequence[str], jobs: Sequence[dict], benchmark_files: Sequence[str],
              base_dirs: Sequence[str], stages: Sequence[str], settings: AnalysisSettings,
              out: Mapping[str, str]) -> pl.DataFrame:  # fmt: skip
    """Write accuracy.csv, summary.csv, intervals.csv, comparison.csv (with its power columns), findings.csv and
    findings.md (and .html: the verdicts), cost.csv, jobs.csv and the paper-style Markdown table (`out` keys
    accuracy, summary, intervals, comparison, findings, findings_md, findings_html, mechanism, mechanism_md,
    mechanism_html, cost, jobs, table, table_html);
    returns the summary frame. `jobs` (quantreplay.grid.jobs) ran with `benchmark_files` as their Snakemake
    benchmarks; `base_dirs` are the models' base folders, each named as its model (the findings name the model and
    its size).

    `score_files` and `prediction_files` hold each cell's checkpoints (the base first, then stages in order), cell
    after cell in `cells` order; `metric_files[i]` is the metrics file of `cells[i]`. Precisions are compared with
    `settings.reference_precision` (None: no comparison).
    """
    scores = per_cell(score_files, len(cells))
    rows = [r for cell, files in zip(cells, scores, strict=True) for r in accuracy_rows(cell, files)]
    accuracy = pl.DataFrame(rows).select(ACCURACY_COLUMNS)
    summary = pl.DataFrame([summary_row(read_json(p)) for p in metric_files])
    families = {r["task"]: r["family"] for r in rows}
    predictions = per_cell(prediction_files, len(cells))
    intervals, comparison = interval_tables(cells=cells, prediction_files=predictions, families=families,
                                            stages=stages, reference=settings.reference_precision,
                                            settings=settings)  # fmt: skip
    comparison = with_power(comparison)
    groups = cell_groups(cells, predictions)
    findings = findings_table(groups=groups, intervals=intervals, families=families, stages=stages,
                              settings=settings,
                              models={Path(d).name: describe_base(Path(d).name, d) for d in base_dirs})  # fmt: skip
    sections = findings_sections(findings, comparison, stages, settings.confidence)
    runs = {Path(d).name: Run(Path(d).name, groups, intervals, families, stages, settings) for d in base_dirs}
    mechanism = mechanism_table(runs, settings.reference_precision) if len(stages) > 1 else mechanism_table({}, None)
    mechanism_text = mechanism_sections(mechanism, settings.reference_precision, settings.confidence)
    write_csv(accuracy, out["accuracy"])
    write_csv(summary, out["summary"])
    write_csv(intervals, out["intervals"])
    write_csv(comparison, out["comparison"])
    job_costs = job_table(jobs, benchmark_files)
    write_csv(cost_table(job_costs), out["cost"])
    write_csv(job_costs, out["jobs"])
    write_csv(findings, out["findings"])
    write_text(out["findings_md"], markdown(sections, FINDINGS_TITLE))
    write_text(out["findings_html"], html_page(sections, FINDINGS_TITLE))
    write_csv(mechanism, out["mechanism"])
    write_text(out["mechanism_md"], markdown(mechanism_text, MECHANISM_TITLE))
    write_text(out["mechanism_html"], html_page(mechanism_text, MECHANISM_TITLE))
    write_text(out["table"], paper_table(intervals, comparison, stages))
    write_text(out["table_html"], paper_table_html(intervals, comparison, stages))
    return summary
