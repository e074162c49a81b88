"""Snakemake adapter: one cell's continual-learning metrics (rule cell_metrics)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.errors import one_line_errors
from quantreplay.metrics import write_cell_metrics

with one_line_errors():
    write_cell_metrics(
        score_files=list(snakemake.input),
        stages=snakemake.params.stages,
        output=snakemake.output[0],
        cell=dict(snakemake.wildcards.items()),
    )
