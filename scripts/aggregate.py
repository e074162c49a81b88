"""Snakemake adapter: every table of the study, from scores, predictions, metrics and benchmarks (rule aggregate)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.aggregate import aggregate
from quantreplay.errors import one_line_errors
from quantreplay.intervals import AnalysisSettings
from quantreplay.settings import parse

with one_line_errors():
    summary = aggregate(
        cells=snakemake.params.cells,
        score_files=list(snakemake.input.scores),
        prediction_files=list(snakemake.input.predictions),
        metric_files=list(snakemake.input.metrics),
        jobs=snakemake.params.jobs,
        benchmark_files=list(snakemake.input.benchmarks),
        base_dirs=list(snakemake.input.bases),
        stages=snakemake.params.stages,
        settings=parse(AnalysisSettings, snakemake.params.analysis, "analysis"),
        out=dict(snakemake.output.items()),
    )
    print(f"{summary.height} cells aggregated", file=sys.stderr)
