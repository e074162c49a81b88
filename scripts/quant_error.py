"""Snakemake adapter: what one precision does to the frozen weights (rule quant_error)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.warm import run_job

run_job(
    "quantreplay.telemetry:run_quant_error",
    {
        "base_dir": snakemake.input.base,
        "probe_files": list(snakemake.input.probe),
        "settings": {
            "quantization": snakemake.params.quantization,
            "seed": snakemake.params.seed,
            "max_seq_len": snakemake.params.max_seq_len,
        },
        "output": snakemake.output[0],
        "cell": dict(snakemake.wildcards.items()),
        "threads": snakemake.threads,
    },
    log=snakemake.log[0],
)
