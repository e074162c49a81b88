"""Snakemake adapter: every figure of the study (rule plots)."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.plots import make_plots

stems = make_plots(
    summary_csv=snakemake.input.summary,
    intervals_csv=snakemake.input.intervals,
    comparison_csv=snakemake.input.comparison,
    cost_csv=snakemake.input.cost,
    train_reports=list(snakemake.input.train),
    first_stage_reports=list(snakemake.input.first_stage),
    stages=snakemake.params.stages,
    stems={
        name: str(Path(p).with_suffix(""))
        for name, p in zip(snakemake.params.names, snakemake.output.png, strict=True)
    },
)
print(f"wrote {len(stems)} figures", file=sys.stderr)
