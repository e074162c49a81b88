import re
import sys
from pathlib import Path

# The library in this checkout, also where Snakemake runs outside the project's venv.
SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from quantreplay import grid
from quantreplay.config import (
    check_config,
    check_config_files,
    load_schema,
    task_catalog_entry,
    task_splits,
)
from quantreplay.errors import one_line_errors
from quantreplay.sandbox import boundary
from quantreplay.fingerprint import code_fingerprint

# The default tier, unless --configfile names another: a tier's file is a whole configuration, and Snakemake would
# otherwise merge it into this one (keeping, say, the toy model beside the paper's Llama).
DEFAULT_CONFIG = "config/config.yaml"

# The workstation profile, which Snakemake reads on every call here (and as the workflow profile under
# --profile profiles/slurm).
WORKFLOW_PROFILE = Path(workflow.basedir) / "profiles" / "default" / "config.yaml"

# Snakemake's YAML keeps the last of two equal keys and stops on an empty file with a message that names none, so
# every config file, and the workstation profile, is read once more, strictly, first. Snakemake's validate() prints
# the whole schema with a traceback; check_config applies the same schema (read strictly too), fills its defaults,
# adds the checks a schema cannot express, and names the bad key in one line.
with one_line_errors():
    check_config_files(
        [*(workflow.overwrite_configfiles or [DEFAULT_CONFIG]), WORKFLOW_PROFILE]
    )
    if not workflow.overwrite_configfiles:

        configfile: DEFAULT_CONFIG

    check_config(
        config,
        load_schema(
            Path(workflow.basedir) / "config" / "schema" / "config.schema.yaml"
        ),
    )


# Code is scored only in a sandbox (or with the boundary switched off by name): where none can be built, stop
# before any job rather than after hours of training. The evaluate job checks again on the machine it runs on.
# Scored by ROUGE-1 (evaluation.code_metric), code never runs.
with one_line_errors():
    if config["evaluation"]["code_metric"] == "pass_at_k" and any(
        task_catalog_entry(n, t).family == "code" for n, t in config["tasks"].items()
    ):
        boundary(config["evaluation"]["code_sandbox"])


TASKS = config["tasks"]
MODELS = config["models"]
STAGES = config["stages"]
SPLITS = {name: task_splits(name, task) for name, task in TASKS.items()}
BUFFERS = grid.buffer_labels(config)
PATHS = grid.PATHS
JOBS = grid.jobs(config, SPLITS)


wildcard_constraints:
    task="|".join(TASKS),
    split="train|test",
    model="|".join(MODELS),
    precision="|".join(config["precisions"]),
    seed="|".join(str(s) for s in config["seeds"]),
    buffer="|".join(re.escape(b) for b in BUFFERS),
    stage="|".join(STAGES),
    checkpoint=grid.checkpoint_regex(STAGES),


def library_code(script):
    """The hash of the library code that scripts/<script>.py runs: a rule's params carry it, so editing a module
    in src/quantreplay/ re-runs exactly the rules that import it (Snakemake itself tracks only the script).
    """
    return code_fingerprint(Path(workflow.basedir) / "scripts" / f"{script}.py", SRC)


def get_data_outputs():
    return [
        grid.path("data", task=task, split=split)
        for task, splits in SPLITS.items()
        for split in splits
    ]


def get_final_output():
    return (
        get_data_outputs()
        + [grid.path("base", model=model) for model in MODELS]
        + grid.train_outputs(config)
        + grid.eval_outputs(config)
        + grid.heldout_outputs(config)
        + grid.metrics_outputs(config)
        + grid.table_outputs()
        + grid.telemetry_outputs()
        + grid.figure_outputs(config)
        + grid.r_matrix_plots(config)
    )


def get_split_params(wildcards):
    from quantreplay.data.sources import split_params

    return split_params(
        wildcards.task, TASKS[wildcards.task], config["data"], wildcards.split
    )


def get_tokenizer_data(wildcards):
    # A toy model's tokenizer learns the training text of every task, so no task's words split into bytes.
    if MODELS[wildcards.model]["kind"] != "toy":
        return []
    return [
        grid.path("data", task=task, split="train")
        for task, splits in SPLITS.items()
        if "train" in splits
    ]


def get_model_params(wildcards):
    # Where and how big the job runs is not what the model is: resources stay out of the params.
    model = {k: v for k, v in MODELS[wildcards.model].items() if k != "resources"}
    return grid.canonical({**model, "corpus_seed": config["data"]["seed"]})


def model_job(step, key):
    """`key` (threads, mem_mb, runtime or gpu) of a `step` job for the wildcards' model, from
    `models.<name>.resources.<step>`: what a job needs grows with the model, not with the rule.
    """
    return lambda wildcards: MODELS[wildcards.model]["resources"][step][key]


def stage_splits(stages, split):
    """The `split` parquets of every task of `stages`, in stage and config order."""
    return [
        grid.path("data", task=task, split=split)
        for stage in stages
        for task in grid.tasks_of(config, stage, split, SPLITS)
    ]


def get_stage_data(wildcards):
    """Training splits of the tasks that stage `wildcards.stage` learns."""
    return stage_splits([wildcards.stage], "train")


def get_first_stage_data(wildcards):
    """Training splits of the first stage's tasks (the probe text of rule quant_error)."""
    return stage_splits(STAGES[:1], "train")


def get_earlier_data(wildcards):
    """Training splits of every task of every stage before `wildcards.stage`: what replay draws from."""
    return stage_splits(STAGES[: STAGES.index(wildcards.stage)], "train")


def get_earlier_test_data(wildcards):
    """Test splits of every task of every stage before `wildcards.stage` (the probe sets of train_stage)."""
    return stage_splits(STAGES[: STAGES.index(wildcards.stage)], "test")


def get_previous_adapter(wildcards):
    """The adapter of the stage before, same cell: the DAG itself enforces the training order."""
    previous = grid.previous_stage(config, wildcards.stage)
    previous_checkpoint = grid.checkpoint_name(
        config, seed=wildcards.seed, buffer=wildcards.buffer, stage=previous
    )
    return grid.checkpoint_adapter(
        wildcards.model, wildcards.precision, previous_checkpoint
    )


def get_replay_params(wildcards):
    return grid.replay_params(config, wildcards.buffer)


def get_train_params(wildcards):
    return grid.train_params(config, wildcards.stage, wildcards.precision)


def get_setting_keys(wildcards):
    """The config key each training setting of the stage comes from, so a one-line error names the key to edit."""
    return grid.stage_setting_keys(config, wildcards.stage)


def get_test_data(wildcards):
    """Test splits of every task that has one: every checkpoint is scored on all of them."""
    return [
        grid.path("data", task=task, split="test")
        for task, splits in SPLITS.items()
        if "test" in splits
    ]


def get_checkpoint_adapter(wildcards):
    adapter = grid.checkpoint_adapter(
        wildcards.model, wildcards.precision, wildcards.checkpoint
    )
    return [] if adapter is None else adapter


def get_cell_scores(wildcards):
    return grid.cell_checkpoint_files(config, "scores", **dict(wildcards.items()))
