"""The row contract of `results/data/{task}/{split}.parquet`, shared by every data source.

One row per example. Every row has id, task, family, prompt and target; the training loss is taken on
`target` given `prompt`. Multiple-choice rows also carry `choices` (the answer strings whose
log-likelihood given the prompt is compared) and `answer` (the index of the correct one, so
`target == choices[answer]`). Code rows also carry `tests` (Python source that raises if the function is
wrong) and `entry_point` (the function's name); `code_prefix` is the text that precedes the completion in
the program that the tests run against (the prompt for HumanEval-style signature prompts, "" when the
completion is a whole program).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

FAMILIES = ("nlu", "math", "code")
SPLITS = ("train", "test")

SCHEMA = {
    "id": pl.String,
    "task": pl.String,
    "family": pl.String,
    "prompt": pl.String,
    "target": pl.String,
    "choices": pl.List(pl.String),
    "answer": pl.Int64,
    "tests": pl.String,
    "entry_point": pl.String,
    "code_prefix": pl.String,
}
COLUMNS = tuple(SCHEMA)


class RowError(ValueError):
    """A row breaks the contract; the message names the task, split, row id and field."""


def check_row(row: dict, *, task: str, family: str, where: str) -> None:
    """Raise RowError if `row` breaks the contract for a `family` row of `task`."""
    rid = row.get("id")
    for key in ("id", "prompt", "target"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise RowError(f"{where}: row {rid!r} has no {key}")
    if row.get("task") != task or row.get("family") != family:
        raise RowError(
            f"{where}: row {rid!r} has task/family {row.get('task')}/{row.get('family')}, expected {task}/{family}"
        )
    choices, answer = row.get("choices"), row.get("answer")
    if (choices is None) != (answer is None):
        raise RowError(f"{where}: row {rid!r} has choices without answer or answer without choices")
    if choices is not None:
        if len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise RowError(f"{where}: row {rid!r} needs at least two non-empty choices")
        if not 0 <= answer < len(choices):
            raise RowError(f"{where}: row {rid!r} answer {answer} is outside its {len(choices)} choices")
        if row["target"] != choices[answer]:
            raise RowError(f"{where}: row {rid!r} target is not choices[answer]")
    if family == "code" and row.get("tests") is not None and not row.get("entry_point"):
        raise RowError(f"{where}: row {rid!r} has tests but no entry_point")


def to_frame(rows: Iterable[dict], *, task: str, family: str, split: str) -> pl.DataFrame:
    """Check every row and return them as a frame with exactly the contract's columns and types.

    Raises RowError on a broken row or on duplicate ids.
    """
    rows = list(rows)
    where = f"{task}/{split}"
    for row in rows:
        check_row(row, task=task, family=family, where=where)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise RowError(f"{where}: duplicate ids")
    return pl.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA, orient="row")
