"""Snakemake adapter: accuracy.csv, summary.csv, intervals.csv, comparison.csv and the paper-style table (rule
aggregate)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.aggregate import aggregate
from quantreplay.intervals import BootstrapSettings

analysis = snakemake.params.analysis
settings = BootstrapSettings(confidence=analysis["confidence"], resamples=analysis["resamples"], seed=analysis["seed"])
summary = aggregate(
    cells=snakemake.params.grid["cells"],
    score_files=snakemake.params.grid["score_files"],
    metric_files=snakemake.params.grid["metric_files"],
    stages=snakemake.params.stages,
    settings=settings,
    reference=analysis["reference"],
    out=dict(snakemake.output.items()),
)
print(f"{summary.height} cells aggregated", file=sys.stderr)
