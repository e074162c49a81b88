import re
import sys
from pathlib import Path

# The library in this checkout, also where Snakemake runs outside the project's venv.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from quantreplay import grid
from quantreplay.config import ConfigError, check_config, load_schema, task_splits

# Snakemake's validate() prints the whole schema with a traceback; check_config applies the same schema,
# fills its defaults, adds the checks a schema cannot express, and names the bad key in one line.
try:
    check_config(
        config,
        load_schema(
            Path(workflow.basedir) / "config" / "schema" / "config.schema.yaml"
        ),
    )
except ConfigError as error:
    sys.exit(f"Config error: {error}")


TASKS = config["tasks"]
MODELS = config["models"]
STAGES = config["stages"]
SPLITS = {name: task_splits(name, task) for name, task in TASKS.items()}
BUFFERS = grid.buffer_labels(config)
PLOT_NAMES = grid.plot_names(config)


wildcard_constraints:
    task="|".join(TASKS),
    split="train|test",
    model="|".join(MODELS),
    precision="|".join(config["precisions"]),
    seed="|".join(str(s) for s in config["seeds"]),
    buffer="|".join(re.escape(b) for b in BUFFERS),
    stage="|".join(STAGES),
    checkpoint="base|seed[0-9]+/(buf[^/]+/)?(" + "|".join(STAGES) + ")",


def get_data_outputs():
    return [
        grid.data_path(task, split)
        for task, splits in SPLITS.items()
        for split in splits
    ]


def get_base_outputs():
    return [f"results/base/{model}" for model in MODELS]


def get_final_output():
    return (
        get_data_outputs()
        + get_base_outputs()
        + grid.train_outputs(config)
        + grid.eval_outputs(config)
        + grid.metrics_outputs(config)
        + [
            "results/tables/accuracy.csv",
            "results/tables/summary.csv",
            "results/tables/intervals.csv",
            "results/tables/comparison.csv",
            "results/tables/paper_table.md",
            "results/tables/paper_table.html",
        ]
        + [f"results/plots/{name}.png" for name in PLOT_NAMES]
        + grid.r_matrix_plots(config)
    )


def get_split_params(wildcards):
    from quantreplay.data import split_params

    return split_params(
        wildcards.task, TASKS[wildcards.task], config["data"], wildcards.split
    )


def get_tokenizer_data(wildcards):
    # A toy model's tokenizer learns the training text of every task, so no task's words split into bytes.
    if MODELS[wildcards.model]["kind"] != "toy":
        return []
    return [
        grid.data_path(task, "train")
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


def get_stage_data(wildcards):
    """Training splits of the tasks that stage `wildcards.stage` learns."""
    return [
        grid.data_path(task, "train")
        for task in grid.tasks_of(config, wildcards.stage, "train", SPLITS)
    ]


def get_earlier_data(wildcards):
    """Training splits of every task of every stage before `wildcards.stage`: what replay draws from."""
    earlier = STAGES[: STAGES.index(wildcards.stage)]
    return [
        grid.data_path(task, "train")
        for stage in earlier
        for task in grid.tasks_of(config, stage, "train", SPLITS)
    ]


def get_replay_mix(wildcards):
    """A later stage trains on its replay mix (a list, like a first stage's task splits)."""
    return [grid.replay_path(wildcards.seed, wildcards.buffer, wildcards.stage)]


def get_previous_adapter(wildcards):
    """The adapter of the stage before, same cell: the DAG itself enforces the training order."""
    previous = grid.previous_stage(config, wildcards.stage)
    cell = dict(
        model=wildcards.model, precision=wildcards.precision, seed=wildcards.seed
    )
    return grid.adapter_dir(config, **cell, buffer=wildcards.buffer, stage=previous)


def get_train_params(wildcards):
    return grid.train_params(config, wildcards.stage)


def get_test_data(wildcards):
    """Test splits of every task that has one: every checkpoint is scored on all of them."""
    return [
        grid.data_path(task, "test")
        for task, splits in SPLITS.items()
        if "test" in splits
    ]


def get_checkpoint_adapter(wildcards):
    adapter = grid.checkpoint_adapter(
        wildcards.model, wildcards.precision, wildcards.checkpoint
    )
    return [] if adapter is None else adapter


def get_eval_params(wildcards):
    return grid.eval_params(config)


def get_cell_scores(wildcards):
    return grid.cell_score_files(
        config,
        model=wildcards.model,
        precision=wildcards.precision,
        seed=wildcards.seed,
        buffer=wildcards.buffer,
    )
