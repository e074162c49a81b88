"""Snakemake adapter: one cell's R matrix figure (rule plot_r_matrix)."""

import json
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.plots import r_matrix

stem = str(Path(snakemake.output.png).with_suffix(""))
r_matrix(json.loads(Path(snakemake.input[0]).read_text()), stem=stem)
print(f"wrote {stem}.png and .svg", file=sys.stderr)
