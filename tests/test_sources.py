"""The registry of data sources: one interface for builtin, offline and hub, and room for a new one."""

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pytest

from conftest import ROOT
from quantreplay.config import ConfigError, check_config, load_schema, task_catalog_entry, task_splits
from quantreplay.data.builtin import BUILTIN_TASKS
from quantreplay.data.hub import HUB_FORMATS
from quantreplay.data.offline import OFFLINE_TASKS
from quantreplay.data.rows import COLUMNS, FAMILIES, SPLITS, to_frame
from quantreplay.data.sources import SOURCES, CatalogueEntry, base_params, prepare_split, source_of, split_params

DATA = {
    "seed": 1234,
    "builtin": {"train_size": 1000, "test_size": 200, "n_creatures": 30},
    "offline": {"test_fraction": 0.5, "max_train": None, "max_test": 300},
    "hub": {"max_train": 500, "max_test": None},
}
HUB_SPLIT = {"path": "json", "name": None, "split": "train", "data_files": "gsm8k.jsonl", "format": "gsm8k"}


def _one_line_error(call, *args) -> str:
    with pytest.raises(ValueError) as info:
        call(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_the_registry_holds_the_three_sources_by_name():
    assert list(SOURCES) == ["builtin", "offline", "hub"]
    assert all(name == source.name for name, source in SOURCES.items())


@pytest.mark.parametrize("name", SOURCES)
def test_every_source_gives_family_and_splits_for_its_catalogue(name, tmp_path, monkeypatch):
    # The hub splits' local file, where a relative data_files is read from: the working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / HUB_SPLIT["data_files"]).write_text("")
    source = SOURCES[name]
    catalogue = source.catalogue()
    assert catalogue
    for key, entry in catalogue.items():
        assert isinstance(entry, CatalogueEntry)
        assert entry.family in FAMILIES
        assert entry.splits and entry.splits == tuple(s for s in SPLITS if s in entry.splits)
        if name == "hub":
            # A format is chosen per split; a task with one split of it gets that split.
            task = {"source": "hub", "family": entry.family, "test": {**HUB_SPLIT, "format": key}}
            assert source.catalogue_entry("t", task) == (entry.family, ("test",))
        else:
            task = {"source": name, "family": entry.family}
            assert source.catalogue_entry(key, task) == entry
            assert source.catalogue_entry("renamed", {**task, "dataset": key}) == entry
        assert list(source.check(key, task)) == []


def test_catalogues_are_the_loaders_own():
    assert SOURCES["builtin"].catalogue() == {t: (f, ("train", "test")) for t, f in BUILTIN_TASKS.items()}
    assert SOURCES["offline"].catalogue() == {t: (s.family, s.splits) for t, s in OFFLINE_TASKS.items()}
    assert SOURCES["hub"].catalogue() == {f: (s.family, ("train", "test")) for f, s in HUB_FORMATS.items()}
    assert SOURCES["offline"].catalogue()["humaneval"] == ("code", ("test",))


# The parameters of prepare_data jobs, written out: they are Snakemake params, so any change to them would
# re-run the data jobs of every existing results folder.
PARAMS = [
    (
        "pyfunc",
        {"source": "builtin", "family": "code"},
        "train",
        {
            "dataset": "pyfunc",
            "family": "code",
            "n_creatures": 30,
            "seed": 1234,
            "source": "builtin",
            "test_size": 200,
            "train_size": 1000,
        },
    ),
    (
        "math_real",
        {"source": "offline", "family": "math", "dataset": "gsm8k"},
        "test",
        {
            "dataset": "gsm8k",
            "family": "math",
            "max_examples": 300,
            "seed": 1234,
            "source": "offline",
            "test_fraction": 0.5,
        },
    ),
    (
        "gsm",
        {"source": "hub", "family": "math", "train": HUB_SPLIT},
        "train",
        {
            "data_files": "gsm8k.jsonl",
            "family": "math",
            "format": "gsm8k",
            "max_examples": 500,
            "name": None,
            "path": "json",
            "seed": 1234,
            "source": "hub",
            "split": "train",
        },
    ),
]


@pytest.mark.parametrize(("name", "task", "split", "expected"), PARAMS, ids=[p[1]["source"] for p in PARAMS])
def test_split_params_are_todays(name, task, split, expected):
    params = split_params(name, task, DATA, split)
    assert params == expected
    assert list(params) == sorted(expected)
    assert SOURCES[task["source"]].split_params(name, task, DATA, split) == expected


@pytest.mark.parametrize(
    ("source", "what"), [("builtin", "a builtin task"), ("offline", "an offline task")], ids=["builtin", "offline"]
)
def test_an_unknown_dataset_names_the_key(source, what):
    task = {"source": source, "family": "nlu", "dataset": "x"}
    message = _one_line_error(SOURCES[source].catalogue_entry, "foo", task)
    assert message.startswith(f"tasks.foo.dataset: 'x' is not {what}; choose from boolq, piqa, ")
    with pytest.raises(ConfigError, match="^tasks.foo.dataset: 'x' is not"):
        task_catalog_entry("foo", task)


def test_hub_format_errors_name_the_split_key():
    hub = SOURCES["hub"]
    wrong_family = {"source": "hub", "family": "nlu", "train": HUB_SPLIT}
    assert _one_line_error(hub.catalogue_entry, "h", wrong_family) == (
        "tasks.h.train.format: 'gsm8k' gives math rows, but the task's family is nlu"
    )
    unknown = {"source": "hub", "family": "math", "test": {**HUB_SPLIT, "format": "csv"}}
    assert _one_line_error(hub.catalogue_entry, "h", unknown).startswith(
        "tasks.h.test.format: 'csv' is not a hub format; choose from commonsense170k, boolq, "
    )
    assert _one_line_error(hub.catalogue_entry, "h", {"source": "hub", "family": "math"}) == (
        "tasks.h: a hub task needs a train or a test split"
    )


def test_unknown_source_names_the_key():
    assert _one_line_error(source_of, "foo", {"source": "web", "family": "nlu"}) == (
        "tasks.foo.source: 'web' is not a source; choose from builtin, offline, hub"
    )


def test_source_checks_keep_their_messages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    builtin_with_splits = {"source": "builtin", "family": "nlu", "train": HUB_SPLIT}
    assert list(SOURCES["builtin"].check("b", builtin_with_splits)) == [
        "tasks.b: train/test entries are only for hub tasks, not builtin"
    ]
    hub_with_dataset = {"source": "hub", "family": "math", "dataset": "gsm8k", "train": HUB_SPLIT}
    assert list(SOURCES["hub"].check("h", hub_with_dataset)) == [
        "tasks.h.dataset: hub tasks name their data under train/test, not dataset",
        f"tasks.h.train.data_files: 'gsm8k.jsonl' does not exist in {tmp_path}",
    ]
    # Local files are checked where they are; URLs and Hub ids are the Hub's business.
    (tmp_path / "gsm8k.jsonl").write_text("")
    remote = {**HUB_SPLIT, "data_files": ["gsm8k.jsonl", "hf://datasets/openai/gsm8k/main/test-00000.parquet"]}
    assert list(SOURCES["hub"].check("h", {"source": "hub", "family": "math", "test": remote})) == []


@pytest.fixture(scope="module")
def schema():
    return load_schema(ROOT / "config" / "schema" / "config.schema.yaml")


def test_a_wrong_family_in_a_config_names_the_key(default_config, schema):
    config = copy.deepcopy(default_config)
    config["tasks"]["pyfunc"]["family"] = "math"
    with pytest.raises(ConfigError) as info:
        check_config(config, schema)
    assert str(info.value) == "tasks.pyfunc.family: 'math' does not match the dataset's family 'code'"


# --- a new source, registered by a test: nothing in config.py or quantreplay.data knows it ---------------


@dataclass(frozen=True)
class SumsSource:
    """Sums of small numbers, a math task with `n_rows` rows per split."""

    name: str = "sums"

    def catalogue(self) -> dict[str, CatalogueEntry]:
        return {"sums": CatalogueEntry("math", ("train", "test"))}

    def catalogue_entry(self, task_name: str, task: dict) -> CatalogueEntry:
        dataset = task.get("dataset", task_name)
        if dataset not in self.catalogue():
            raise ValueError(f"tasks.{task_name}.dataset: {dataset!r} is not a sums task; choose from sums")
        return self.catalogue()[dataset]

    def check(self, task_name: str, task: dict) -> Iterator[str]:
        if "train" in task or "test" in task:
            yield f"tasks.{task_name}: train/test entries are only for hub tasks, not sums"

    def train_size(self, task_name: str, task: dict, data: dict) -> int | None:
        return 3

    def split_params(self, task_name: str, task: dict, data: dict, split: str) -> dict:
        return base_params(task, data, n_rows=3, offset=0 if split == "train" else 100)

    def load(self, task: str, split: str, params: dict) -> pl.DataFrame:
        rows = []
        for i in range(params["n_rows"]):
            a, b = params["offset"] + i, params["seed"]
            rows.append(
                {
                    "id": f"{task}-{split}-{i}",
                    "task": task,
                    "family": params["family"],
                    "prompt": f"Question: {a} + {b}?\nAnswer:",
                    "target": f" #### {a + b}",
                }
            )
        return to_frame(rows, task=task, family=params["family"], split=split)


@pytest.fixture
def sums(monkeypatch):
    monkeypatch.setitem(SOURCES, "sums", SumsSource())


def test_a_registered_source_is_prepared_and_checked_like_the_others(sums, tmp_path, default_config, schema):
    task = {"source": "sums", "family": "math"}
    params = split_params("adding", task, {"seed": 7}, "test")
    assert params == {"family": "math", "n_rows": 3, "offset": 100, "seed": 7, "source": "sums"}
    output = tmp_path / "adding" / "test.parquet"
    frame = prepare_split(task="adding", split="test", params=params, output=output)
    written = pl.read_parquet(output)
    assert written.equals(frame) and written.columns == list(COLUMNS)
    assert written["id"].to_list() == ["adding-test-0", "adding-test-1", "adding-test-2"]
    assert written["target"].to_list() == [" #### 107", " #### 108", " #### 109"]

    assert task_catalog_entry("adding", {**task, "dataset": "sums"}) == ("math", ("train", "test"))
    assert task_splits("sums", task) == ("train", "test")
    config = copy.deepcopy(default_config)
    config["tasks"]["sums"] = task
    check_config(config, schema)
    config["tasks"]["sums"] = {**task, "dataset": "products"}
    with pytest.raises(ConfigError, match="^tasks.sums.dataset: 'products' is not a sums task"):
        check_config(config, schema)
    config["tasks"]["sums"] = {**task, "family": "code"}
    with pytest.raises(ConfigError, match="^tasks.sums.family: 'code' does not match the dataset's family 'math'"):
        check_config(config, schema)
