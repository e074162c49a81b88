"""Snakemake adapter: build one frozen base model (rule build_base)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
# The library in this checkout, also in conda environments (--sdm conda) that do not install the project.
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.warm import run_job

# Its warm server (quantreplay.warm) then serves the model jobs that follow.
run_job(
    "quantreplay.bases.build:build_base",
    {
        "output": snakemake.output[0],
        "spec": snakemake.params.spec,
        "tokenizer_data": list(snakemake.input.tokenizer_data),
        "threads": snakemake.threads,
    },
    log=snakemake.log[0],
)
