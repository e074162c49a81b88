"""Snakemake adapter: score one checkpoint on every test split (rule evaluate)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.warm import run_job

run_job(
    "quantreplay.evaluate:run_evaluation",
    {
        "base_dir": snakemake.input.base,
        "adapter": snakemake.input.adapter or None,
        "test_files": list(snakemake.input.tests),
        "settings": snakemake.params.settings,
        "predictions_out": snakemake.output.predictions,
        "scores_out": snakemake.output.scores,
        "cell": dict(snakemake.wildcards.items()),
        "threads": snakemake.threads,
    },
    log=snakemake.log[0],
)
