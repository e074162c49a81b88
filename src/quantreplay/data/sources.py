"""The data sources, one registry: what a task's `source` key names and everything that depends on it.

A source knows its catalogue (every task it can give, as a `CatalogueEntry` of family and splits), checks the
task entries of a config that name it, turns a task's config into the canonical parameters of its
`prepare_data` job, and makes the rows of a split from those parameters. `SOURCES` maps each `source` value
to its `Source`; `quantreplay.config` and `quantreplay.data` go through it, so a new source is one module
with a `Source` implementation, one line in `SOURCES` and the keys its tasks take in the config schema
(`tasks` in config/schema/config.schema.yaml).

Messages are one line that starts with the config key they are about (`tasks.<name>.dataset: ...`), so
`quantreplay.config` can raise them as they are. The loaders' heavy imports (datasets, the data packages)
stay inside `load`, and the catalogues are imported when first needed, so importing this module is cheap.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import polars as pl

from quantreplay.data.rows import SPLITS, to_frame
from quantreplay.io import write_parquet
from quantreplay.manifest import write_manifest


class CatalogueEntry(NamedTuple):
    """What a source says about one task (or, for hub, one format): its family and the splits it gives."""

    family: str
    splits: tuple[str, ...]


class Source(Protocol):
    """One data source; see the module docstring. `task` is a task's config entry (source, family, ...)."""

    name: str

    def catalogue(self) -> Mapping[str, CatalogueEntry]:
        """Every entry the source can give, by the name a task config chooses it with."""
        ...

    def catalogue_entry(self, task_name: str, task: dict) -> CatalogueEntry:
        """The (family, splits) of configured task `task_name`; raise ValueError naming the key if it has none."""
        ...

    def check(self, task_name: str, task: dict) -> Iterator[str]:
        """The source's own problems with the task entry (keys it does not take, ...), one line each."""
        ...

    def train_size(self, task_name: str, task: dict, data: dict) -> int | None:
        """How many rows the task's train split will have, where the config alone decides it (else None)."""
        ...

    def split_params(self, task_name: str, task: dict, data: dict, split: str) -> dict:
        """Everything that decides the rows of `split`, with sorted keys; includes family, seed and source.

        `data` is the config's `data` section. The dict becomes the Snakemake params of the task's
        `prepare_data` job, so changing what it holds for an existing config re-runs users' jobs.
        """
        ...

    def load(self, task: str, split: str, params: dict) -> pl.DataFrame:
        """The rows of `split` of task `task` as a contract frame (see `quantreplay.data.rows`)."""
        ...


def base_params(task: dict, data: dict, **specific) -> dict:
    """The parameters every source's split has (family, seed, source) and `specific`, with sorted keys."""
    params = {"family": task["family"], "seed": data["seed"], "source": task["source"], **specific}
    return dict(sorted(params.items()))


def _dataset_entry(task_name: str, task: dict, catalogue: Mapping[str, CatalogueEntry], what: str) -> CatalogueEntry:
    dataset = task.get("dataset", task_name)
    if dataset not in catalogue:
        raise ValueError(f"tasks.{task_name}.dataset: {dataset!r} is not {what}; choose from {', '.join(catalogue)}")
    return catalogue[dataset]


def _no_hub_splits(task_name: str, task: dict) -> Iterator[str]:
    if "train" in task or "test" in task:
        yield f"tasks.{task_name}: train/test entries are only for hub tasks, not {task['source']}"


@dataclass(frozen=True)
class BuiltinSource:
    """The synthetic suite (`quantreplay.data.builtin`): a task chooses a generator by `dataset`."""

    name: str = "builtin"

    def catalogue(self) -> dict[str, CatalogueEntry]:
        from quantreplay.data.builtin import BUILTIN_TASKS

        return {dataset: CatalogueEntry(family, SPLITS) for dataset, family in BUILTIN_TASKS.items()}

    def catalogue_entry(self, task_name: str, task: dict) -> CatalogueEntry:
        return _dataset_entry(task_name, task, self.catalogue(), "a builtin task")

    def check(self, task_name: str, task: dict) -> Iterator[str]:
        yield from _no_hub_splits(task_name, task)

    def train_size(self, task_name: str, task: dict, data: dict) -> int | None:
        return data["builtin"]["train_size"]

    def split_params(self, task_name: str, task: dict, data: dict, split: str) -> dict:
        return base_params(task, data, dataset=task.get("dataset", task_name), **data["builtin"])

    def load(self, task: str, split: str, params: dict) -> pl.DataFrame:
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


@dataclass(frozen=True)
class OfflineSource:
    """Real data that PyPI packages ship (`quantreplay.data.offline`): a task chooses a set by `dataset`."""

    name: str = "offline"

    def catalogue(self) -> dict[str, CatalogueEntry]:
        from quantreplay.data.offline import OFFLINE_TASKS

        return {dataset: CatalogueEntry(t.family, tuple(t.splits)) for dataset, t in OFFLINE_TASKS.items()}

    def catalogue_entry(self, task_name: str, task: dict) -> CatalogueEntry:
        return _dataset_entry(task_name, task, self.catalogue(), "an offline task")

    def check(self, task_name: str, task: dict) -> Iterator[str]:
        yield from _no_hub_splits(task_name, task)

    def train_size(self, task_name: str, task: dict, data: dict) -> int | None:
        # The packaged set's size is only known once it is read; max_train is a cap, not a size.
        return None

    def split_params(self, task_name: str, task: dict, data: dict, split: str) -> dict:
        offline = data["offline"]
        return base_params(
            task,
            data,
            dataset=task.get("dataset", task_name),
            test_fraction=offline["test_fraction"],
            max_examples=offline[f"max_{split}"],
        )

    def load(self, task: str, split: str, params: dict) -> pl.DataFrame:
        from quantreplay.data.offline import load_offline_split

        frame = load_offline_split(
            params["dataset"],
            split,
            seed=params["seed"],
            test_fraction=params["test_fraction"],
            max_examples=params["max_examples"],
        )
        return frame.with_columns(task=pl.lit(task))


def _is_remote(location: str) -> bool:
    return "://" in location


def _missing_local_files(key: str, split: Mapping) -> Iterator[str]:
    """Local files a hub split names that are not there (relative paths: from the working directory, where the
    prepare_data job runs too). A glob must match at least one file; URLs and Hub ids are the Hub's business."""
    files = split.get("data_files")
    for i, location in enumerate([files] if isinstance(files, str) else files or []):
        where = f"{key}.data_files" + ("" if isinstance(files, str) else f"[{i}]")
        if _is_remote(location):
            continue
        if any(c in location for c in "*?["):
            if not glob.glob(str(Path(location).expanduser()), recursive=True):
                yield f"{where}: {location!r} matches no file"
        elif not Path(location).expanduser().exists():
            relative = "" if Path(location).expanduser().is_absolute() else f" in {Path.cwd()}"
            yield f"{where}: {location!r} does not exist{relative}"
    # A path that reads as a local folder (not a Hub id such as org/name) must be one.
    path = split["path"]
    if path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().exists():
        relative = "" if Path(path).expanduser().is_absolute() else f" in {Path.cwd()}"
        yield f"{key}.path: {path!r} does not exist{relative}"


@dataclass(frozen=True)
class HubSource:
    """`datasets.load_dataset` (`quantreplay.data.hub`): a task names, per split, a dataset and a format.

    Its catalogue is the formats: each gives rows of one family, for either split.
    """

    name: str = "hub"

    def catalogue(self) -> dict[str, CatalogueEntry]:
        from quantreplay.data.hub import HUB_FORMATS

        return {fmt: CatalogueEntry(spec.family, SPLITS) for fmt, spec in HUB_FORMATS.items()}

    def catalogue_entry(self, task_name: str, task: dict) -> CatalogueEntry:
        formats = self.catalogue()
        splits = tuple(s for s in SPLITS if s in task)
        if not splits:
            raise ValueError(f"tasks.{task_name}: a hub task needs a train or a test split")
        for split in splits:
            fmt = task[split]["format"]
            if fmt not in formats:
                raise ValueError(
                    f"tasks.{task_name}.{split}.format: {fmt!r} is not a hub format; choose from {', '.join(formats)}"
                )
            if formats[fmt].family != task["family"]:
                raise ValueError(
                    f"tasks.{task_name}.{split}.format: {fmt!r} gives {formats[fmt].family} rows, "
                    f"but the task's family is {task['family']}"
                )
        return CatalogueEntry(task["family"], splits)

    def check(self, task_name: str, task: dict) -> Iterator[str]:
        if "dataset" in task:
            yield f"tasks.{task_name}.dataset: hub tasks name their data under train/test, not dataset"
        for split in SPLITS:
            if split in task:
                yield from _missing_local_files(f"tasks.{task_name}.{split}", task[split])

    def train_size(self, task_name: str, task: dict, data: dict) -> int | None:
        return None

    def split_params(self, task_name: str, task: dict, data: dict, split: str) -> dict:
        return base_params(task, data, max_examples=data["hub"][f"max_{split}"], **task[split])

    def load(self, task: str, split: str, params: dict) -> pl.DataFrame:
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


SOURCES: dict[str, Source] = {source.name: source for source in (BuiltinSource(), OfflineSource(), HubSource())}


def source_of(task_name: str, task: dict) -> Source:
    """The registered source that task `task_name` names; raise ValueError (naming the key) if none is."""
    if task["source"] not in SOURCES:
        raise ValueError(
            f"tasks.{task_name}.source: {task['source']!r} is not a source; choose from {', '.join(SOURCES)}"
        )
    return SOURCES[task["source"]]


# --- the prepare_data step ---------------------------------------------------------------------------------


def split_params(name: str, task: dict, data: dict, split: str) -> dict:
    """Everything that decides the rows of `split` of task `name`, as a dict with sorted keys."""
    return dict(sorted(source_of(name, task).split_params(name, task, data, split).items()))


def load_split(*, task: str, split: str, params: dict) -> pl.DataFrame:
    """The rows of one split as a contract frame (see `quantreplay.data.rows`)."""
    return source_of(task, params).load(task, split, params)


def prepare_split(*, task: str, split: str, params: dict, output: str | Path) -> pl.DataFrame:
    """Make the rows of one split and write them to `output` (atomically), then its manifest; returns the frame."""
    frame = load_split(task=task, split=split, params=params)
    if frame.height == 0:
        raise ValueError(f"{task}/{split}: no rows")
    write_parquet(frame, output)
    write_manifest(output)
    return frame
