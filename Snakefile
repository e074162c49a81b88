# quantreplay: how the base model's precision and a replay buffer change forgetting when an LLM is
# LoRA-fine-tuned on one task family after another. Read README.md; the DAG is in rules/, the logic in
# src/quantreplay/.
from snakemake.utils import min_version

min_version("9.0")


# The config (config/config.yaml, or the --configfile given) is read and checked first, in rules/common.smk.
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/replay.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/heldout_loss.smk"
include: "rules/quant_error.smk"
include: "rules/telemetry.smk"
include: "rules/aggregate.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
