"""Generators of the built-in suite's eight nlu tasks, multiple choice shaped like the paper's datasets.

BoolQ, PIQA, SocialIQA, ARC-Challenge, ARC-Easy, OpenBookQA, HellaSwag and WinoGrande. Each generator takes
(world, rng, slot, split) and returns one example as a dict with prompt, target, choices (the answer strings
scored by log-likelihood) and answer (the index of the correct one). `slot` is the example's index within its
split (`generate_task` passes it): the correct answer goes to position `slot % len(choices)`, so every answer
position is equally common in every split and a model that always picks one position scores chance. `split`
says whether the row may ask about a held-out item (`HELD_OUT_EVERY`): half of the test rows do, no
training row does.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from quantreplay.data.builtin.world import (
    CLASSES,
    COLORS,
    FOOD_TRAITS,
    FOODS,
    HABITATS,
    PEOPLE,
    ROUTINES,
    SIZES,
    SOCIAL_EVENTS,
    TOOLS,
    WINO_TEMPLATES,
    World,
    with_article,
)


def _place(correct: str, wrong: list[str], slot: int, rng: random.Random) -> list[str]:
    """The wrong options in a seeded order with `correct` inserted at position `slot % (len(wrong) + 1)`."""
    wrong = list(wrong)
    rng.shuffle(wrong)
    k = slot % (len(wrong) + 1)
    return [*wrong[:k], correct, *wrong[k:]]


def _mc(prompt: str, correct: str, wrong: list[str], rng: random.Random, slot: int) -> dict:
    choices = _place(correct, wrong, slot, rng)
    return {"prompt": prompt, "choices": choices, "answer": choices.index(correct), "target": correct}


def _listed_row(question: str, options: list[str], correct: str) -> dict:
    """A row whose prompt lists the options (Answer1: ...) and whose choices are the options themselves."""
    prompt = question + "\n" + "\n".join(f"Answer{i + 1}: {o}" for i, o in enumerate(options)) + "\nAnswer:"
    return {"prompt": prompt, "choices": [" " + o for o in options], "answer": options.index(correct),
            "target": " " + correct}  # fmt: skip


# Every `every`-th item (the last of each group of `every`) is held out: no training row asks about it, half of
# the test rows do. Their facts are in the pretraining corpus, so the test measures how well the adapter turns
# what the base knows into answers as well as what the training rows taught (and a test split cannot be learned
# by heart from the training split).
HELD_OUT_EVERY = {"creatures": 4, "tool uses": 3, "social events": 4, "routines": 3, "wino pairs": 4}


def is_held_out(index: int, every: int) -> bool:
    """Whether a table's item at `index` is held out: every `every`-th one, starting at index `every - 1`."""
    return index % every == every - 1


def held_out(items, every: int) -> list:
    """The held-out items of a table (`is_held_out`)."""
    return [x for i, x in enumerate(items) if is_held_out(i, every)]


# How often the pretraining corpus states a held-out item, relative to an item that training rows ask about: from
# 1 for the first held-out item down to 1/64 for the last, halving in equal steps. The held-out half of a test split
# then spans facts the base knows well to facts it has barely seen, so what the adapter makes of the base's knowledge
# is measured along a gradient instead of at a ceiling (with every held-out fact stated as often as the rest, piqa,
# arc_challenge and openbookqa scored 96-100 % after their stage).
RAREST_HELD_OUT = 1 / 64


def corpus_weights(items, every: int) -> list[float]:
    """The relative frequency with which the pretraining corpus states each item of a table (see RAREST_HELD_OUT)."""
    n_held = len(held_out(items, every))
    weights, rank = [], 0
    for i in range(len(items)):
        if is_held_out(i, every):
            weights.append(RAREST_HELD_OUT ** (rank / max(1, n_held - 1)))
            rank += 1
        else:
            weights.append(1.0)
    return weights


def _pick(items, every: int, split: str, rng: random.Random, slot: int):
    """One item for a row: a training row draws from the items that are not held out; a test row from the held-out
    ones in every other run of four slots, so exactly half of a test split asks about held-out items (runs of four
    slots leave the answer positions, slot % choices, evenly spread over both halves)."""
    fresh = split == "test" and slot // 4 % 2 == 1
    return rng.choice([x for i, x in enumerate(items) if is_held_out(i, every) == fresh])


def _offered(items, every: int, split: str) -> list:
    """The items a row may offer as distractors: in a training row none that is held out (a model must not
    learn that they are always wrong), in a test row any."""
    return [x for i, x in enumerate(items) if split == "test" or not is_held_out(i, every)]


# boolq's questions: (attribute, its values, question); {n} the creature, {v} the value, {av} it with an article.
# The reading ones ask what the passage states, the memory ones what only the pretraining corpus states (which
# also asks all of them, with yes or no answers: quantreplay.data.builtin.corpus).
BOOLQ_READING = (("color", COLORS, "is the {n} {v}?"), ("size", SIZES, "is the {n} {v}?"))
BOOLQ_MEMORY = (("habitat", HABITATS, "does the {n} live in the {v}?"), ("food", FOODS, "does the {n} eat {v}?"),
                ("klass", tuple(CLASSES), "is the {n} {av}?"))  # fmt: skip


def _boolq(world: World, rng: random.Random, slot: int, split: str) -> dict:
    # A yes/no question about a creature. Most ask about its size or colour, which the passage affirms or denies in
    # so many words (reading: "The zorquim was not red." answers "is the zorquim red?"); the rest about where it
    # lives, what it eats or what it is, which only the pretraining corpus states (memory; the place the passage
    # names is a distractor). Odd slots are "yes".
    truth = slot % 2 == 1
    c = _pick(world.creatures, HELD_OUT_EVERY["creatures"], split, rng, slot)
    spot = rng.choice(HABITATS)
    passage = f"{rng.choice(PEOPLE)} saw {with_article(c.size)} {c.color} {c.name} near the {spot}."
    # Three rows in four are reading rows, as most of BoolQ's questions are answered by their passage: runs of eight
    # slots (as long as _pick's period, so both kinds are half about held-out creatures), every fourth run memory.
    reading = slot // 8 % 4 != 3
    attr, values, question = rng.choice(BOOLQ_READING if reading else BOOLQ_MEMORY)
    value = getattr(c, attr) if truth else rng.choice([v for v in values if v != getattr(c, attr)])
    if reading:
        passage += f" The {c.name} was {'' if truth else 'not '}{value}."
    choices = [" no", " yes"]
    return {
        "prompt": f"{passage}\nQuestion: {question.format(n=c.name, v=value, av=with_article(value))}\nAnswer:",
        "choices": choices,
        "answer": int(truth),
        "target": choices[int(truth)],
    }


TOOL_USES = tuple((tool, goal) for tool, goals in TOOLS.items() for goal in goals)


def _piqa(world: World, rng: random.Random, slot: int, split: str) -> dict:
    tool, goal = _pick(TOOL_USES, HELD_OUT_EVERY["tool uses"], split, rng, slot)
    other = rng.choice([t for t in TOOLS if t != tool])
    correct = f" use the {tool}"
    solutions = _place(correct, [f" use the {other}"], slot, rng)
    # The person only varies the surface; which tool fits the goal is the knowledge being asked for.
    prompt = (
        f"Goal: {rng.choice(PEOPLE)} wants to {goal}.\nSolution 1:{solutions[0]}\nSolution 2:{solutions[1]}\n"
        "The better solution is to"
    )
    return {"prompt": prompt, "choices": solutions, "answer": solutions.index(correct), "target": correct}


def _siqa(world: World, rng: random.Random, slot: int, split: str) -> dict:
    x, y = rng.sample(PEOPLE, 2)
    k = _pick(range(len(SOCIAL_EVENTS)), HELD_OUT_EVERY["social events"], split, rng, slot)
    event, feel, want, describe = SOCIAL_EVENTS[k]
    offered = _offered(range(len(SOCIAL_EVENTS)), HELD_OUT_EVERY["social events"], split)
    others = [SOCIAL_EVENTS[j] for j in offered if j != k]
    kind = rng.randrange(3)
    if kind == 0:
        question, correct, pool = f"How would {x} feel afterwards?", feel, [e[1] for e in others]
    elif kind == 1:
        question, correct, pool = f"What will {y} want to do next?", want, [e[2] for e in others]
    else:
        question, correct, pool = f"How would you describe {x}?", describe, [e[3] for e in others]
    wrong = rng.sample(sorted(set(pool) - {correct}), 2)
    fmt = {"x": x, "y": y}
    options = _place(correct.format(**fmt), [o.format(**fmt) for o in wrong], slot, rng)
    context = event.format(**fmt) + "."
    return _listed_row(f"{context} {question}", options, correct.format(**fmt))


def _arc_easy(world: World, rng: random.Random, slot: int, split: str) -> dict:
    # One hop: a stored fact about one creature.
    c = _pick(world.creatures, HELD_OUT_EVERY["creatures"], split, rng, slot)
    attr, values, noun = rng.choice(
        (("habitat", HABITATS, "Where does the {n} live?"), ("food", FOODS, "What does the {n} eat?"),
         ("color", COLORS, "What color is the {n}?"), ("klass", tuple(CLASSES), "What kind of animal is the {n}?"))
    )  # fmt: skip
    correct = getattr(c, attr)
    options = _place(correct, rng.sample([v for v in values if v != correct], 3), slot, rng)
    return _listed_row("Question: " + noun.format(n=c.name), options, correct)


def _arc_challenge(world: World, rng: random.Random, slot: int, split: str) -> dict:
    # Two hops: the creature's class (a stored fact), then a property of that class (a general fact).
    c = _pick(world.creatures, HELD_OUT_EVERY["creatures"], split, rng, slot)
    k = rng.randrange(3)
    question = ("What covers the body of the {n}?", "How does the {n} move?", "How are the young of the {n} born?")[
        k
    ].format(n=c.name)
    correct = CLASSES[c.klass][k]
    wrong = sorted({v[k] for v in CLASSES.values()} - {correct})
    if len(wrong) < 3:
        # Only two ways to be born: fill with properties of other slots so there are always four options.
        wrong += [v[(k + 1) % 3] for v in CLASSES.values() if v[(k + 1) % 3] not in wrong][: 3 - len(wrong)]
    options = _place(correct, rng.sample(wrong, 3), slot, rng)
    return _listed_row("Question: " + question, options, correct)


def _openbookqa(world: World, rng: random.Random, slot: int, split: str) -> dict:
    # The rule is given in the prompt (the "open book"); which creature it applies to must be remembered.
    c = _pick(world.creatures, HELD_OUT_EVERY["creatures"], split, rng, slot)
    offered = _offered(world.creatures, HELD_OUT_EVERY["creatures"], split)
    others = [o for o in offered if o.food != c.food]
    if len(others) < 3:
        return _openbookqa(world, rng, slot, split)
    options = _place(c.name, [o.name for o in rng.sample(others, 3)], slot, rng)
    trait = FOOD_TRAITS[c.food]
    fact = f"Fact: every creature that eats {c.food} has {trait}."
    return _listed_row(f"{fact}\nQuestion: Which of these has {trait}?", options, c.name)


def _hellaswag(world: World, rng: random.Random, slot: int, split: str) -> dict:
    name = _pick(list(ROUTINES), HELD_OUT_EVERY["routines"], split, rng, slot)
    steps = ROUTINES[name]
    person = rng.choice(PEOPLE)
    # The day only varies the surface; the routine's order is what is asked for.
    day = rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))
    others = [s for r in _offered(list(ROUTINES), HELD_OUT_EVERY["routines"], split) if r != name for s in ROUTINES[r]]
    k = rng.randrange(1, len(steps))
    if rng.random() < 0.5:
        # Forwards: the steps so far, then the next one; a later step of the same routine, when there is one, is
        # the closest distractor (right topic, wrong order).
        context = f"On {day}, {person} is {name}. " + " Then ".join(f"{person} {s}." for s in steps[:k])
        prompt, correct = f"{context} Then {person}", steps[k]
        near = list(steps[k + 1 : k + 2])
        pool = others + list(steps[:k])
    else:
        # Backwards: what came just before a step. The corpus tells every routine forwards only, so this asks
        # for the order read the other way; the other steps of the same routine are the close distractors.
        prompt, correct = f"On {day}, {person} is {name}. Before {person} {steps[k]}, {person}", steps[k - 1]
        near = [rng.choice([s for j, s in enumerate(steps) if j not in (k - 1, k)])]
        pool = others
    wrong = [f" {s}." for s in near + rng.sample(pool, 3 - len(near))]
    return _mc(prompt, f" {correct}.", wrong, rng, slot)


# WinoGrande's twin pairs: (template whose blank means {a}, its twin whose blank means {b}).
WINO_PAIRS = tuple(zip(WINO_TEMPLATES[0::2], WINO_TEMPLATES[1::2], strict=True))


def _winogrande(world: World, rng: random.Random, slot: int, split: str) -> dict:
    a, b = rng.sample(PEOPLE, 2)
    pair = _pick(WINO_PAIRS, HELD_OUT_EVERY["wino pairs"], split, rng, slot)
    # The twin whose blank means the person at position slot % 2.
    template, who = pair[slot % 2]
    sentence = template.format(a=a, b=b)
    # The answer is the option's number, as WinoGrande's own answer field is: which person the template means is
    # what is asked, not copying a name (names as the choices, scored after "refers to", were learned worse: 48 %).
    choices = [" 1", " 2"]
    prompt = f"{sentence}\nOption1: {a}\nOption2: {b}\nThe blank _ refers to option"
    return {"prompt": prompt, "choices": choices, "answer": who, "target": choices[who]}


NLU_GENERATORS: dict[str, Callable[[World, random.Random, int, str], dict]] = {
    "boolq": _boolq,
    "piqa": _piqa,
    "siqa": _siqa,
    "arc_challenge": _arc_challenge,
    "arc_easy": _arc_easy,
    "openbookqa": _openbookqa,
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
}
