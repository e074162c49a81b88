"""Snakemake adapter: every figure of the study (rule plots)."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.errors import one_line_errors
from quantreplay.plots import make_plots

with one_line_errors():
    stems = make_plots(
        summary_csv=snakemake.input.summary,
        intervals_csv=snakemake.input.intervals,
        comparison_csv=snakemake.input.comparison,
        cost_csv=snakemake.input.cost,
        mechanism_csv=snakemake.input.mechanism,
        quant_error_csv=snakemake.input.quant_error,
        adapter_csv=snakemake.input.adapters,
        train_reports=list(snakemake.input.train),
        first_stage_reports=list(snakemake.input.first_stage),
        stages=snakemake.params.stages,
        families=snakemake.params.families,
        stems=dict(
            zip(snakemake.params.names, [str(Path(p).with_suffix("")) for p in snakemake.output.png], strict=True)
        ),
    )
    print(f"wrote {len(stems)} figures", file=sys.stderr)
