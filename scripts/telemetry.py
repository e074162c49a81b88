"""Snakemake adapter: the telemetry tables (rule telemetry)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.errors import one_line_errors
from quantreplay.telemetry import write_telemetry

with one_line_errors():
    write_telemetry(
        quant_error_files=list(snakemake.input.quant_error),
        cells=snakemake.params.cells,
        adapters=list(snakemake.input.adapters),
        stages=snakemake.params.stages,
        quant_error_out=snakemake.output.quant_error,
        adapters_out=snakemake.output.adapters,
    )
