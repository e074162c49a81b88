"""Task data: one parquet per task and split, from the builtin suite, PyPI-shipped data or the Hub.

`split_params` turns a task's config into the canonical parameters of its `prepare_data` job (so Snakemake
re-runs a split exactly when something that shapes it changes) and `prepare_split` makes the rows.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from quantreplay.data.rows import to_frame
from quantreplay.io import write_parquet


def split_params(name: str, task: dict, data: dict, split: str) -> dict:
    """Everything that decides the rows of `split` of task `name`, as a dict with sorted keys."""
    source = task["source"]
    params: dict = {"family": task["family"], "seed": data["seed"], "source": source}
    if source == "builtin":
        params.update(dataset=task.get("dataset", name), **data["builtin"])
    elif source == "offline":
        offline = data["offline"]
        params.update(
            dataset=task.get("dataset", name),
            test_fraction=offline["test_fraction"],
            max_examples=offline[f"max_{split}"],
        )
    else:
        params.update(max_examples=data["hub"][f"max_{split}"], **task[split])
    return dict(sorted(params.items()))


def load_split(*, task: str, split: str, params: dict) -> pl.DataFrame:
    """The rows of one split as a contract frame (see `quantreplay.data.rows`)."""
    source = params["source"]
    if source == "builtin":
        from quantreplay.data.builtin import generate_task

        rows = generate_task(
            params["dataset"],
            seed=params["seed"],
            train_size=params["train_size"],
            test_size=params["test_size"],
            n_creatures=params["n_creatures"],
        )[split]
        for row in rows:
            row["task"] = task
        return to_frame(rows, task=task, family=params["family"], split=split)
    if source == "offline":
        from quantreplay.data.offline import load_offline_split

        frame = load_offline_split(
            params["dataset"],
            split,
            seed=params["seed"],
            test_fraction=params["test_fraction"],
            max_examples=params["max_examples"],
        )
        return frame.with_columns(task=pl.lit(task))
    from quantreplay.data.hub import load_hub_split

    return load_hub_split(
        task=task,
        family=params["family"],
        split=split,
        path=params["path"],
        name=params["name"],
        hf_split=params["split"],
        format=params["format"],
        data_files=params["data_files"],
        seed=params["seed"],
        max_examples=params["max_examples"],
    )


def prepare_split(*, task: str, split: str, params: dict, output: str | Path) -> pl.DataFrame:
    """Make the rows of one split and write them to `output` (atomically); returns the frame."""
    frame = load_split(task=task, split=split, params=params)
    if frame.height == 0:
        raise ValueError(f"{task}/{split}: no rows")
    write_parquet(frame, output)
    return frame
