"""Snakemake adapter: train one stage of one cell (rules train_first_stage and train_stage)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.warm import run_job

# What only the data can tell (max_seq_len against the longest example) stops the job as a one-line config error.
run_job(
    "quantreplay.train:run_stage",
    {
        "base_dir": snakemake.input.base,
        "train_files": list(snakemake.input.data),
        "previous_adapter": snakemake.input.get("previous"),
        "probe_files": list(snakemake.input.get("probe", [])),
        "adapter_out": snakemake.output.adapter,
        "report_out": snakemake.output.report,
        "settings": snakemake.params.settings,
        "cell": dict(snakemake.wildcards.items()),
        "threads": snakemake.threads,
        "setting_keys": snakemake.params.setting_keys,
    },
    log=snakemake.log[0],
)
