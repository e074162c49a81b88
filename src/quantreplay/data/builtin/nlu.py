"""Generators of the built-in suite's eight nlu tasks, multiple choice shaped like the paper's datasets.

BoolQ, PIQA, SocialIQA, ARC-Challenge, ARC-Easy, OpenBookQA, HellaSwag and WinoGrande. Each generator takes
(world, rng) and returns one example as a dict with prompt, target, choices (the answer strings scored by
log-likelihood) and answer (the index of the correct one).
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
    SOCIAL_EVENTS,
    TOOLS,
    WINO_TEMPLATES,
    World,
    with_article,
)


def _mc(prompt: str, correct: str, wrong: list[str], rng: random.Random) -> dict:
    choices = [correct, *wrong]
    rng.shuffle(choices)
    return {"prompt": prompt, "choices": choices, "answer": choices.index(correct), "target": correct}


def _listed_row(question: str, options: list[str], correct: str) -> dict:
    """A row whose prompt lists the options (Answer1: ...) and whose choices are the options themselves."""
    prompt = question + "\n" + "\n".join(f"Answer{i + 1}: {o}" for i, o in enumerate(options)) + "\nAnswer:"
    return {"prompt": prompt, "choices": [" " + o for o in options], "answer": options.index(correct),
            "target": " " + correct}  # fmt: skip


def _boolq(world: World, rng: random.Random) -> dict:
    # Reading comprehension: the passage holds every fact needed, so this tests reading, not memory.
    person = rng.choice(PEOPLE)
    tools = rng.sample(list(TOOLS), 3)
    colors = rng.sample(COLORS, 3)
    places = rng.sample(("shed", "kitchen", "attic", "garden", "cellar", "barn"), 2)
    passage = (
        f"{person} keeps {with_article(colors[0])} {tools[0]} and {with_article(colors[1])} {tools[1]} "
        f"in the {places[0]}. "
        f"The {tools[2]} is {colors[2]} and lies in the {places[1]}."
    )
    i = rng.randrange(3)
    if rng.random() < 0.5:
        asked = rng.choice(COLORS)
        question = f"is the {tools[i]} {asked}?"
        truth = asked == colors[i]
    else:
        place = rng.choice(places)
        question = f"is the {tools[i]} in the {place}?"
        truth = place == (places[0] if i < 2 else places[1])
    choices = [" no", " yes"]
    return {
        "prompt": f"{passage}\nQuestion: {question}\nAnswer:",
        "choices": choices,
        "answer": int(truth),
        "target": choices[int(truth)],
    }


def _piqa(world: World, rng: random.Random) -> dict:
    tool = rng.choice(list(TOOLS))
    goal = rng.choice(TOOLS[tool])
    other = rng.choice([t for t in TOOLS if t != tool])
    correct = f" use the {tool}"
    solutions = [correct, f" use the {other}"]
    rng.shuffle(solutions)
    # The person only varies the surface; which tool fits the goal is the knowledge being asked for.
    prompt = (
        f"Goal: {rng.choice(PEOPLE)} wants to {goal}.\nSolution 1:{solutions[0]}\nSolution 2:{solutions[1]}\n"
        "The better solution is to"
    )
    return {"prompt": prompt, "choices": solutions, "answer": solutions.index(correct), "target": correct}


def _siqa(world: World, rng: random.Random) -> dict:
    x, y = rng.sample(PEOPLE, 2)
    k = rng.randrange(len(SOCIAL_EVENTS))
    event, feel, want, describe = SOCIAL_EVENTS[k]
    others = [e for j, e in enumerate(SOCIAL_EVENTS) if j != k]
    kind = rng.randrange(3)
    if kind == 0:
        question, correct, pool = f"How would {x} feel afterwards?", feel, [e[1] for e in others]
    elif kind == 1:
        question, correct, pool = f"What will {y} want to do next?", want, [e[2] for e in others]
    else:
        question, correct, pool = f"How would you describe {x}?", describe, [e[3] for e in others]
    wrong = rng.sample(sorted(set(pool) - {correct}), 2)
    fmt = {"x": x, "y": y}
    options = [o.format(**fmt) for o in (correct, *wrong)]
    rng.shuffle(options)
    correct = correct.format(**fmt)
    context = event.format(**fmt) + "."
    return _listed_row(f"{context} {question}", options, correct)


def _arc_easy(world: World, rng: random.Random) -> dict:
    # One hop: a stored fact about one creature.
    c = rng.choice(world.creatures)
    attr, values, noun = rng.choice(
        (("habitat", HABITATS, "Where does the {n} live?"), ("food", FOODS, "What does the {n} eat?"),
         ("color", COLORS, "What color is the {n}?"), ("klass", tuple(CLASSES), "What kind of animal is the {n}?"))
    )  # fmt: skip
    correct = getattr(c, attr)
    wrong = rng.sample([v for v in values if v != correct], 3)
    options = [correct, *wrong]
    rng.shuffle(options)
    return _listed_row("Question: " + noun.format(n=c.name), options, correct)


def _arc_challenge(world: World, rng: random.Random) -> dict:
    # Two hops: the creature's class (a stored fact), then a property of that class (a general fact).
    c = rng.choice(world.creatures)
    slot = rng.randrange(3)
    question = ("What covers the body of the {n}?", "How does the {n} move?", "How are the young of the {n} born?")[
        slot
    ].format(n=c.name)
    correct = CLASSES[c.klass][slot]
    wrong = sorted({v[slot] for v in CLASSES.values()} - {correct})
    if len(wrong) < 3:
        # Only two ways to be born: fill with properties of other slots so there are always four options.
        wrong += [v[(slot + 1) % 3] for v in CLASSES.values() if v[(slot + 1) % 3] not in wrong][: 3 - len(wrong)]
    wrong = rng.sample(wrong, 3)
    options = [correct, *wrong]
    rng.shuffle(options)
    return _listed_row("Question: " + question, options, correct)


def _openbookqa(world: World, rng: random.Random) -> dict:
    # The rule is given in the prompt (the "open book"); which creature it applies to must be remembered.
    food = rng.choice(FOODS)
    eaters = [c for c in world.creatures if c.food == food]
    others = [c for c in world.creatures if c.food != food]
    if not eaters or len(others) < 3:
        return _openbookqa(world, rng)
    correct = rng.choice(eaters).name
    wrong = [c.name for c in rng.sample(others, 3)]
    options = [correct, *wrong]
    rng.shuffle(options)
    fact = f"Fact: every creature that eats {food} has {FOOD_TRAITS[food]}."
    return _listed_row(f"{fact}\nQuestion: Which of these has {FOOD_TRAITS[food]}?", options, correct)


def _hellaswag(world: World, rng: random.Random) -> dict:
    name = rng.choice(list(ROUTINES))
    steps = ROUTINES[name]
    person = rng.choice(PEOPLE)
    k = rng.randrange(1, len(steps))
    # The day only varies the surface; the routine's next step is what is asked for.
    day = rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))
    context = f"On {day}, {person} is {name}. " + " Then ".join(f"{person} {s}." for s in steps[:k])
    correct = f" {steps[k]}."
    pool = [s for r, ss in ROUTINES.items() if r != name for s in ss] + [s for s in steps[:k]]
    wrong = [f" {s}." for s in rng.sample(pool, 3)]
    return _mc(f"{context} Then {person}", correct, wrong, rng)


def _winogrande(world: World, rng: random.Random) -> dict:
    a, b = rng.sample(PEOPLE, 2)
    template, who = rng.choice(WINO_TEMPLATES)
    sentence = template.format(a=a, b=b)
    options = [a, b]
    prompt = f"{sentence}\nOption1: {a}\nOption2: {b}\nThe blank _ refers to"
    return {"prompt": prompt, "choices": [" " + o for o in options], "answer": who, "target": " " + options[who]}


NLU_GENERATORS: dict[str, Callable[[World, random.Random], dict]] = {
    "boolq": _boolq,
    "piqa": _piqa,
    "siqa": _siqa,
    "arc_challenge": _arc_challenge,
    "arc_easy": _arc_easy,
    "openbookqa": _openbookqa,
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
}
