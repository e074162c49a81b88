"""Snakemake adapter: one cell's R matrix figure (rule plot_r_matrix)."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.errors import one_line_errors
from quantreplay.io import read_json
from quantreplay.plots import r_matrix

with one_line_errors():
    stem = str(Path(snakemake.output.png).with_suffix(""))
    r_matrix(read_json(snakemake.input[0]), stem=stem)
    print(f"wrote {stem}.png and .svg", file=sys.stderr)
