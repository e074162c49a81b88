"""Snakemake adapter: the held-out target loss of one checkpoint (rule heldout_loss)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.warm import run_job

run_job(
    "quantreplay.heldout:run_heldout_loss",
    {
        "base_dir": snakemake.input.base,
        "adapter": snakemake.input.adapter or None,
        "test_files": list(snakemake.input.tests),
        "settings": snakemake.params.settings,
        "output": snakemake.output[0],
        "cell": dict(snakemake.wildcards.items()),
        "threads": snakemake.threads,
    },
    log=snakemake.log[0],
)
