"""Snakemake adapter: build one frozen base model (rule build_base)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
# The library in this checkout, also in conda environments (--sdm conda) that do not install the project.
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.bases.build import build_base
from quantreplay.errors import one_line_errors

with one_line_errors():
    build_base(
        output=snakemake.output[0],
        spec=snakemake.params.spec,
        tokenizer_data=list(snakemake.input.tokenizer_data),
        threads=snakemake.threads,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
