"""The pretraining corpus of the built-in suite: the world stated in plain narrative.

No instruction formats: creatures' facts, what tools are for, how people react to events, how
routines go, who a WinoGrande sentence means, yes and no as answers about a creature, every equation the arithmetic
problems need (alone and in small stories) and small Python functions, so that a base model pretrained on it knows
the facts that the instruction tasks then ask about.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from quantreplay.data.builtin.math_code import ADDENDS, CODE_OPS, FACTORS, ITEMS, code_constants, math_facts
from quantreplay.data.builtin.nlu import BOOLQ_MEMORY, BOOLQ_READING, HELD_OUT_EVERY, TOOL_USES, corpus_weights
from quantreplay.data.builtin.world import (
    CLASSES,
    FOOD_TRAITS,
    PEOPLE,
    ROUTINES,
    SOCIAL_EVENTS,
    WINO_TEMPLATES,
    build_world,
    with_article,
)

# The chance that a creature document states each of its creature's facts (times the creature's corpus weight).
FACT_SHARE = 0.8
# What a creature document says in place of a fact it leaves unsaid.
SIGHTINGS = ("saw", "drew", "followed", "heard", "fed", "photographed")


def pretraining_corpus(*, seed: int, n_documents: int, n_creatures: int = 30) -> list[str]:
    """Plain narrative documents about the world, in none of the instruction formats.

    They teach the base model the creatures' facts, what tools are for, how people react to events, how
    routines go, arithmetic statements and small Python functions, so fine-tuning mostly has to teach the
    formats and the mapping from question to fact.
    """
    world = build_world(seed, n_creatures)
    rng = random.Random(f"corpus-{seed}")
    writers: list[Callable[[], str]] = []
    # Held-out items (those no training row asks about) are stated less often: nlu.corpus_weights.
    creature_weights = corpus_weights(world.creatures, HELD_OUT_EVERY["creatures"])
    tool_weights = corpus_weights(TOOL_USES, HELD_OUT_EVERY["tool uses"])

    def some_creature():
        return rng.choices(world.creatures, creature_weights)[0]

    def creature() -> str:
        # A creature's own facts, each stated with probability FACT_SHARE times its corpus weight. The creature is
        # drawn uniformly, so a held-out creature's facts are rare but its name is as common as any other's (a rare
        # name would lose every log-likelihood comparison it is a choice of: openbookqa's answers are names). What
        # its class implies (body, movement, young) is stated only of the class (kind), so arc_challenge's
        # questions take two hops: the creature's class, then the class's property.
        i = rng.randrange(len(world.creatures))
        c, share = world.creatures[i], FACT_SHARE * creature_weights[i]
        facts = [
            f"The {c.name} is {with_article(c.size)} {c.color} {c.klass}.",
            f"The {c.name} lives in the {c.habitat}.",
            f"The {c.name} eats {c.food}.",
            f"Because it eats {c.food}, the {c.name} has {FOOD_TRAITS[c.food]}.",
        ]
        # A fact left unsaid gives way to a sentence that only names the creature, so every name is as common.
        said = [
            f if rng.random() < share else f"{rng.choice(PEOPLE)} {rng.choice(SIGHTINGS)} the {c.name}." for f in facts
        ]
        rng.shuffle(said)
        return " ".join(said)

    def kind() -> str:
        klass = rng.choice(list(CLASSES))
        cover, move, young = CLASSES[klass]
        sents = [f"Every {klass} has {cover}.", f"Every {klass} {move}.", f"The young of every {klass} are {young}."]
        rng.shuffle(sents)
        return " ".join(sents)

    def tool() -> str:
        person, (t, goal) = rng.choice(PEOPLE), rng.choices(TOOL_USES, tool_weights)[0]
        return f"{person} took the {t} to {goal}. The {t} is good for that."

    def social() -> str:
        x, y = rng.sample(PEOPLE, 2)
        event, feel, want, describe = rng.choice(SOCIAL_EVENTS)
        fmt = {"x": x, "y": y}
        return (
            f"{event.format(**fmt)}. {x} felt {feel}. Then {y} wanted to {want.format(**fmt)}. "
            f"People say {x} is {describe}."
        )

    def routine() -> str:
        name = rng.choice(list(ROUTINES))
        person = rng.choice(PEOPLE)
        return f"When {person} was {name}, {person} " + ", then ".join(ROUTINES[name]) + "."

    facts = math_facts()

    def numbers() -> str:
        # Eight of the equations the arithmetic problems need, one a line: each of the 374 is stated about 30
        # times in the default 20000 documents, and about 15 more in stories.
        return "\n".join(rng.choice(facts) for _ in range(8)) + "\n"

    def story() -> str:
        # Numbers told in a story, then worked in equations of math_facts(): how a number in words becomes a
        # step (no questions, no "####": the tasks' format is left to fine-tuning).
        person, item = rng.choice(PEOPLE), rng.choice(ITEMS)
        a, b, c = rng.choice(FACTORS), rng.choice(FACTORS), rng.choice(ADDENDS)
        p = a * b
        first = f"{person} had {a} bags of {b} {item}, and {a} * {b} = {p}."
        second = rng.choice(
            (
                f"{person} found {c} more, and {p} + {c} = {p + c}.",
                f"{person} lost {min(c, p)} of them, and {p} - {min(c, p)} = {p - min(c, p)}.",
                f"{person} sold them for {p} dollars and was paid {p + c}, and {p + c} - {p} = {c}.",
            )
        )
        return f"{first} {second}"

    def asked() -> str:
        # " yes" and " no" in narrative, as answers to boolq's own questions about a creature's facts. boolq's
        # answer words are otherwise in no pretraining text: their tied embeddings stay near zero, and a LoRA on
        # the frozen base cannot raise their logits (boolq was stuck at p(yes) + p(no) = 0.03 after training).
        x, y = rng.sample(PEOPLE, 2)
        c = some_creature()
        attr, values, question = rng.choice(BOOLQ_READING + BOOLQ_MEMORY)
        truth = rng.random() < 0.5
        value = getattr(c, attr) if truth else rng.choice([v for v in values if v != getattr(c, attr)])
        asked = question.format(n=c.name, v=value, av=with_article(value))
        return f"{x} asked {y}: {asked} {y} answered {'yes' if truth else 'no'}."

    def roles() -> str:
        # Who a WinoGrande sentence means: the clause without its "because" part, then who did what.
        x, y = rng.sample(PEOPLE, 2)
        template, who = rng.choice(WINO_TEMPLATES)
        clause, predicate = template.removesuffix(".").split(" because _ ")
        return f"{clause.format(a=x, b=y)}. The one who {predicate} was {(x, y)[who]}."

    def code() -> str:
        name_pat, doc_pat, body_pat, kind = rng.choice(CODE_OPS)
        fmt = code_constants(rng, kind)
        return f"# {doc_pat.format(**fmt)}\nresult = {body_pat.format(**fmt)[len('return ') :]}\n"

    writers = [
        creature,
        creature,
        creature,
        creature,
        kind,
        tool,
        social,
        routine,
        numbers,
        story,
        story,
        code,
        roles,
        asked,
    ]
    return [rng.choice(writers)() for _ in range(n_documents)]
