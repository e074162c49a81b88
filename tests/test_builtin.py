"""The built-in synthetic suite: deterministic, correct, and split without leaks."""

import re
from collections import Counter

import pytest

from quantreplay.data.builtin import (
    BUILTIN_TASKS,
    CLASSES,
    build_world,
    generate_task,
    pretraining_corpus,
)
from quantreplay.data.builtin.math_code import ARGUMENT, EQUATION, K_RANGE, math_facts, number_word
from quantreplay.data.builtin.nlu import (
    HELD_OUT_EVERY,
    RAREST_HELD_OUT,
    TOOL_USES,
    WINO_PAIRS,
    corpus_weights,
    held_out,
)
from quantreplay.data.builtin.world import ROUTINES, SOCIAL_EVENTS, WINO_TEMPLATES
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


NLU_TASKS = [t for t, family in BUILTIN_TASKS.items() if family == "nlu"]


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("task", NLU_TASKS)
def test_multiple_choice_answers_are_balanced(suite, task, split):
    # A model that always picks one answer (one position, or "yes") must score no better than chance: no answer
    # index is the right one in more than 1/choices + 0.05 of a split's rows (the generators place them evenly).
    rows = suite[task][split]
    n_choices = len(rows[0]["choices"])
    assert all(len(r["choices"]) == n_choices for r in rows)
    shares = {i: n / len(rows) for i, n in Counter(r["answer"] for r in rows).items()}
    assert len(shares) == n_choices and max(shares.values()) <= 1 / n_choices + 0.05, shares
    # The answer is the target, and the same string is never offered twice.
    for r in rows:
        assert r["choices"][r["answer"]] == r["target"] and len(set(r["choices"])) == n_choices, r


def _names_pattern(template: str) -> str:
    """A regex for `template` with every {placeholder} a word (captured)."""
    return re.sub(r"\\\{\w+\\\}", r"(\\w+)", re.escape(template))


def _asks_about(task: str, row: dict, world) -> object:
    """The item of a world table that an nlu row asks about (the tables HELD_OUT_EVERY holds items out of)."""
    prompt = row["prompt"]
    first = prompt.split("\n")[0]
    if task == "piqa":
        return next(use for use in TOOL_USES if f"wants to {use[1]}." in prompt)
    if task == "siqa":
        return next(e for e in SOCIAL_EVENTS if re.match(_names_pattern(e[0]) + r"\. ", first))
    if task == "hellaswag":
        return next(name for name in ROUTINES if f" is {name}." in prompt)
    if task == "winogrande":
        return next(p for p in WINO_PAIRS for t, _ in p if re.fullmatch(_names_pattern(t), first))
    if task == "openbookqa":
        return next(c for c in world.creatures if row["target"] == " " + c.name)
    return next(c for c in world.creatures if re.search(rf"\b{c.name}\b", prompt))


HELD_OUT_TABLES = {
    "piqa": (TOOL_USES, "tool uses"),
    "siqa": (SOCIAL_EVENTS, "social events"),
    "hellaswag": (tuple(ROUTINES), "routines"),
    "winogrande": (WINO_PAIRS, "wino pairs"),
}


@pytest.mark.parametrize("task", NLU_TASKS)
def test_held_out_items_are_asked_only_in_the_test_split(suite, task):
    # No training row asks about a held-out item; about half of the test rows do (the rest ask about items that
    # training rows ask about too), so the test split cannot be learned by heart from the training split.
    world = build_world(7)
    table, key = HELD_OUT_TABLES.get(task, (world.creatures, "creatures"))
    fresh = held_out(table, HELD_OUT_EVERY[key])
    assert 0 < len(fresh) < len(table)
    assert not [r["id"] for r in suite[task]["train"] if _asks_about(task, r, world) in fresh]
    share = sum(_asks_about(task, r, world) in fresh for r in suite[task]["test"]) / len(suite[task]["test"])
    assert 0.4 <= share <= 0.6, share


def test_boolq_is_half_yes_and_winogrande_uses_both_twins(suite):
    for split in ("train", "test"):
        assert Counter(r["target"] for r in suite["boolq"][split]) == {
            " yes": len(suite["boolq"][split]) / 2,
            " no": len(suite["boolq"][split]) / 2,
        }
        sentences = {r["prompt"].splitlines()[0] for r in suite["winogrande"][split]}
        assert len(sentences) == len(suite["winogrande"][split])
    assert len(WINO_PAIRS) * 2 == len(WINO_TEMPLATES) and all(p[0][1] == 0 and p[1][1] == 1 for p in WINO_PAIRS)


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


def test_every_math_step_is_a_fact_the_corpus_states_many_times(suite):
    # Fine-tuning teaches the procedure, not arithmetic: every equation of every worked answer is one of
    # math_facts(), and the default corpus (20000 documents) states each of those at least 20 times.
    facts = set(math_facts())
    assert len(facts) == len(math_facts()) == 374
    for split in ("train", "test"):
        for row in suite["arithmetic"][split]:
            steps = EQUATION.findall(row["target"])
            assert len(steps) == 2 and set(steps) <= facts, row["target"]
    counts = Counter(EQUATION.findall("\n".join(pretraining_corpus(seed=1234, n_documents=20000))))
    assert set(counts) == facts and min(counts.values()) >= 20, min(counts.values())


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


def test_code_prompts_use_one_argument_name_per_kind_and_tests_catch_a_wrong_constant(suite):
    rows = suite["pyfunc"]["train"] + suite["pyfunc"]["test"]
    for row in rows:
        argument = re.match(r"def \w+\((\w+)\):", row["prompt"]).group(1)
        assert argument in ARGUMENT.values() and re.search(rf"\b{argument}\b", row["target"]), row["prompt"]
    constants = Counter(int(k) for r in rows for k in re.findall(r"\d+", r["target"]))
    assert set(range(K_RANGE[0], K_RANGE[1] + 1)) <= set(constants)
    # The first constant off by one: the hidden tests must notice it.
    shifted = [
        _program(r, re.sub(r"\d+", lambda m: str(int(m.group()) + 1), r["target"], count=1))
        for r in rows[:60]
        if re.search(r"\d", r["target"])
    ]
    caught = [not v.passed for v in judge_programs(shifted, Limits(), boundary())]
    assert sum(caught) >= 0.9 * len(caught), caught


def test_number_words_name_the_constants():
    assert [number_word(n) for n in (2, 14, 20, 28)] == ["two", "fourteen", "twenty", "twenty_eight"]


def test_world_is_seeded_and_corpus_states_its_facts():
    world = build_world(3)
    assert world == build_world(3) and world != build_world(4)
    corpus = pretraining_corpus(seed=3, n_documents=3000)
    assert corpus == pretraining_corpus(seed=3, n_documents=3000)
    text = "\n".join(corpus)
    # Held-out creatures' facts are rare by design (test_held_out_facts_are_rarer_in_the_corpus); the rest are stated.
    asked = {c.name for c in world.creatures} - {
        c.name for c in held_out(world.creatures, HELD_OUT_EVERY["creatures"])
    }
    for c in world.creatures:
        if c.name in asked:
            assert f"The {c.name} eats {c.food}." in text and f"The {c.name} lives in the {c.habitat}." in text
    # Narrative, not instruction formats: no task prompt scaffolding leaks into pretraining.
    for marker in ("Question:", "Answer:", "Answer1:", "####", '"""', "Option1:", "_"):
        assert marker not in text
    # Who each WinoGrande template means, stated after the clause without its "because" part.
    for template, who in WINO_TEMPLATES:
        clause, predicate = template.removesuffix(".").split(" because _ ")
        found = re.findall(_names_pattern(clause) + rf"\. The one who {re.escape(predicate)} was (\w+)\.", text)
        assert found and all(m[who] == m[2] for m in found), template
    assert set(CLASSES) <= {w.strip(".") for w in text.split()}


def test_held_out_facts_are_rarer_in_the_corpus():
    # A held-out item is stated less often the later it comes (from 1 down to RAREST_HELD_OUT of an asked item's
    # frequency), so the held-out half of a test split spans well-known to barely-seen facts; its name is as common
    # as any other, so that a rare fact does not make a rare answer word.
    world = build_world(7)
    every = HELD_OUT_EVERY["creatures"]
    weights = corpus_weights(world.creatures, every)
    fresh = [w for i, w in enumerate(weights) if i % every == every - 1]
    assert fresh[0] == 1 and fresh[-1] == pytest.approx(RAREST_HELD_OUT) and fresh == sorted(fresh, reverse=True)
    assert all(w == 1 for i, w in enumerate(weights) if i % every != every - 1)
    text = "\n".join(pretraining_corpus(seed=7, n_documents=20000))
    eats = [text.count(f"The {c.name} eats {c.food}.") for c in world.creatures]
    names = [len(re.findall(rf"\b{c.name}\b", text)) for c in world.creatures]
    asked = [n for i, n in enumerate(eats) if i % every != every - 1]
    held = [n for i, n in enumerate(eats) if i % every == every - 1]
    assert min(asked) >= 100 and held[0] >= 100 and held[-1] <= min(asked) / 16, (asked, held)
    assert max(names) <= 1.5 * min(names), names
    tool_weights = corpus_weights(TOOL_USES, HELD_OUT_EVERY["tool uses"])
    tool_counts = [text.count(f"to {goal}. The {tool} is good for that.") for tool, goal in TOOL_USES]
    rarest = min(range(len(TOOL_USES)), key=lambda i: tool_weights[i])
    assert tool_counts[rarest] <= min(n for n, w in zip(tool_counts, tool_weights, strict=True) if w == 1) / 16


def test_boolq_reading_rows_affirm_or_deny_what_the_question_asks(suite):
    # Three rows in four can be answered from the passage alone ("The zorquim was not red."), and what the passage
    # says is true of the world; the others only from what the corpus states.
    world = {c.name: c for c in build_world(7).creatures}
    for split in ("train", "test"):
        rows = suite["boolq"][split]
        reading = [r for r in rows if re.search(r"\. The \w+ was ", r["prompt"])]
        assert abs(len(reading) - len(rows) * 3 / 4) <= 8, len(reading)
        for r in reading:
            name, negated, value = re.search(r"\. The (\w+) was (not )?(\w+)\.", r["prompt"]).groups()
            assert (value in (world[name].color, world[name].size)) == (not negated) == (r["target"] == " yes"), r


def test_every_answer_word_of_the_nlu_tasks_is_in_the_pretraining_corpus(suite):
    # A LoRA on a frozen base cannot raise the logit of a token whose tied embedding pretraining never trained
    # (boolq's " yes" and " no" once stuck it at a constant answer): every word by which a row's right answer
    # differs from its other choices (log-likelihood scoring compares them; shared words cancel) is pretrained.
    words = Counter(re.findall(r"\w+", "\n".join(pretraining_corpus(seed=7, n_documents=20000))))
    for task in NLU_TASKS:
        answer_words = set()
        for row in suite[task]["train"]:
            each = [set(re.findall(r"\w+", c)) for c in row["choices"]]
            answer_words |= each[row["answer"]] - set.intersection(*each)
        rare = sorted(w for w in answer_words if words[w] < 50)
        assert not rare, (task, rare[:10])


def test_too_many_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="winogrande.*distinct prompts"):
        generate_task("winogrande", seed=0, train_size=100_000, test_size=10)
    with pytest.raises(ValueError, match="unknown builtin task 'nope'"):
        generate_task("nope", seed=0, train_size=1, test_size=1)
