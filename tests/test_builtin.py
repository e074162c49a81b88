"""The built-in synthetic suite: deterministic, correct, and split without leaks."""

import re

import pytest

from quantreplay.data.builtin import (
    BUILTIN_TASKS,
    CLASSES,
    build_world,
    generate_task,
    pretraining_corpus,
)
from quantreplay.data.rows import to_frame
from quantreplay.judge import Program, judge_programs
from quantreplay.sandbox import Limits, boundary

SIZES = {"train_size": 1000, "test_size": 200}


@pytest.fixture(scope="module")
def suite():
    return {task: generate_task(task, seed=7, **SIZES) for task in BUILTIN_TASKS}


@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_sizes_contract_and_no_shared_prompt(suite, task):
    out = suite[task]
    assert len(out["train"]) == 1000 and len(out["test"]) == 200
    for split, rows in out.items():
        frame = to_frame(rows, task=task, family=BUILTIN_TASKS[task], split=split)
        assert frame["id"].n_unique() == frame.height
    train_prompts = {r["prompt"] for r in out["train"]}
    assert not train_prompts & {r["prompt"] for r in out["test"]}


@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_same_seed_same_rows_other_seed_other_rows(suite, task):
    assert generate_task(task, seed=7, **SIZES) == suite[task]
    assert generate_task(task, seed=8, **SIZES)["train"] != suite[task]["train"]


def test_multiple_choice_answers_are_balanced(suite):
    # A model that always picks one position must not score well: every position is the answer sometimes.
    for task, family in BUILTIN_TASKS.items():
        if family != "nlu":
            continue
        rows = suite[task]["train"]
        n_choices = len(rows[0]["choices"])
        counts = [sum(r["answer"] == i for r in rows) for i in range(n_choices)]
        assert min(counts) > 0.5 * len(rows) / n_choices, (task, counts)


def _evaluate_steps(target: str) -> int:
    """Check every 'a op b ... = c' step of a worked answer and return the number after ####."""
    for expr, result in re.findall(r"((?:\d+ [-+*] )+\d+) = (\d+)", target):
        assert eval(expr) == int(result), (expr, result)
    final = re.search(r"#### (-?\d+)$", target)
    assert final, target
    return int(final.group(1))


def test_math_targets_compute_and_end_with_the_answer(suite):
    for split in ("train", "test"):
        for row in suite["arithmetic"][split]:
            final = _evaluate_steps(row["target"])
            assert final >= 0, row["target"]
            last_line = row["target"].splitlines()[-2]
            # The last worked step states the same number the answer line reports.
            assert last_line.split(" = ")[-1].split()[0] == str(final), row["target"]


def test_math_answers_vary_and_are_never_negative():
    for seed in range(5):
        rows = generate_task("arithmetic", seed=seed, train_size=1000, test_size=200)["train"]
        answers = [_evaluate_steps(r["target"]) for r in rows]
        assert min(answers) >= 0 and len(set(answers)) > 30


def _program(row: dict, completion: str) -> Program:
    return Program.of(completion, row["code_prefix"], row["tests"], row["entry_point"])


def test_every_code_reference_passes_its_tests_and_a_wrong_body_fails(suite):
    rows = suite["pyfunc"]["train"] + suite["pyfunc"]["test"]
    verdicts = judge_programs([_program(r, r["target"]) for r in rows], Limits(), boundary())
    assert all(v.passed for v in verdicts), [
        (r["id"], v.reason) for r, v in zip(rows, verdicts, strict=True) if not v.passed
    ]
    # Tests that a constant-None body passes would be useless: they must catch a broken function.
    broken = [_program(r, r["target"].replace("return ", "return None and ", 1)) for r in rows[:20]]
    caught = [not v.passed for v in judge_programs(broken, Limits(), boundary())]
    assert sum(caught) >= 18, caught


def test_world_is_seeded_and_corpus_states_its_facts():
    world = build_world(3)
    assert world == build_world(3) and world != build_world(4)
    corpus = pretraining_corpus(seed=3, n_documents=3000)
    assert corpus == pretraining_corpus(seed=3, n_documents=3000)
    text = "\n".join(corpus)
    for c in world.creatures:
        assert f"The {c.name} eats {c.food}." in text
        assert f"It lives in the {c.habitat}." in text or c.habitat in text
    # Narrative, not instruction formats: no task prompt scaffolding leaks into pretraining.
    for marker in ("Question:", "Answer:", "Answer1:", "####", '"""', "Option1:"):
        assert marker not in text
    assert set(CLASSES) <= {w.strip(".") for w in text.split()}


def test_too_many_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="winogrande.*distinct prompts"):
        generate_task("winogrande", seed=0, train_size=100_000, test_size=10)
    with pytest.raises(ValueError, match="unknown builtin task 'nope'"):
        generate_task("nope", seed=0, train_size=1, test_size=1)
