"""Snakemake adapter: write one task split (rule prepare_data)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
# The library in this checkout, also in conda environments (--sdm conda) that do not install the project.
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.data.sources import prepare_split
from quantreplay.errors import one_line_errors

with one_line_errors():
    frame = prepare_split(
        task=snakemake.wildcards.task,
        split=snakemake.wildcards.split,
        params=snakemake.params.spec,
        output=snakemake.output[0],
    )
    print(f"wrote {frame.height} rows to {snakemake.output[0]}", file=sys.stderr)
