"""Snakemake adapter: the held-out loss tables of the grid (rule heldout_tables)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.aggregate import heldout_tables
from quantreplay.errors import one_line_errors
from quantreplay.intervals import AnalysisSettings
from quantreplay.settings import parse

with one_line_errors():
    intervals = heldout_tables(
        cells=snakemake.params.cells,
        loss_files=list(snakemake.input),
        stages=snakemake.params.stages,
        reference=snakemake.params.reference,
        analysis=parse(AnalysisSettings, snakemake.params.analysis, "analysis"),
        out=dict(snakemake.output.items()),
    )
    print(f"{intervals.height} held-out interval rows", file=sys.stderr)
