"""The synthetic world of the built-in suite: its vocabulary, its creatures and `build_world`.

The world is a set of invented creatures with properties (class, habitat, food, colour, size), tools and
what they are for, social events and how people react, daily routines and their steps, and WinoGrande-style
sentence templates. Every task generator and the pretraining corpus draw from these tables and from the
creatures that `build_world` invents from a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PEOPLE = (
    "Ana", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jade", "Kai", "Lena", "Milo", "Nia",
    "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vik", "Wren", "Xavi", "Yara", "Zed",
)  # fmt: skip
CLASSES = {
    # class: (body covering, how it moves, how its young start)
    "mammal": ("fur", "walks", "born alive"),
    "bird": ("feathers", "flies", "hatched from eggs"),
    "fish": ("scales", "swims", "hatched from eggs"),
    "insect": ("a hard shell", "crawls", "hatched from eggs"),
    "reptile": ("dry scales", "creeps", "hatched from eggs"),
}
HABITATS = ("forest", "river", "desert", "cave", "meadow", "mountain")
FOODS = ("berries", "seeds", "fish", "leaves", "insects", "roots")
COLORS = ("red", "blue", "green", "yellow", "gray", "white", "black", "orange")
SIZES = ("tiny", "small", "large", "huge")
# Each food gives its eaters one trait; OpenBookQA-style questions state the rule and ask for an instance.
FOOD_TRAITS = {
    "berries": "a purple tongue",
    "seeds": "a strong beak",
    "fish": "sharp teeth",
    "leaves": "a long neck",
    "insects": "a sticky tongue",
    "roots": "strong claws",
}
TOOLS = {
    # tool: things it is the right tool for (PIQA-style goals: "to <verb> the <object>")
    "knife": ("cut the rope", "slice the bread", "peel the apple"),
    "hammer": ("drive in the nail", "crack the walnut", "flatten the tin"),
    "bucket": ("carry the water", "collect the rain", "hold the sand"),
    "broom": ("sweep the floor", "clear the leaves", "brush the porch"),
    "ladder": ("reach the roof", "pick the high apples", "fix the ceiling lamp"),
    "spoon": ("stir the soup", "taste the sauce", "scoop the sugar"),
    "needle": ("sew the button", "mend the sock", "stitch the torn shirt"),
    "towel": ("dry the dishes", "wipe the wet table", "dry your hands"),
    "shovel": ("dig the hole", "move the snow", "plant the tree"),
    "lamp": ("light the dark room", "read at night", "see in the cellar"),
    "rope": ("tie the boat", "pull the cart", "hang the washing"),
    "umbrella": ("stay dry in the rain", "keep the sun off", "shelter from the drizzle"),
}
SOCIAL_EVENTS = (
    # (event with {x} and {y}, how {x} feels, what {y} wants next, how others would describe {x})
    ("{x} won the race against {y}", "proud", "train harder", "fast"),
    ("{x} broke {y}'s favourite cup", "guilty", "get a new cup", "clumsy"),
    ("{x} helped {y} carry heavy boxes", "useful", "thank {x}", "kind"),
    ("{x} forgot {y}'s birthday", "ashamed", "talk to {x}", "forgetful"),
    ("{x} shared lunch with {y}", "generous", "share back", "caring"),
    ("{x} yelled at {y} in the market", "angry", "walk away", "rude"),
    ("{x} found {y}'s lost dog", "relieved", "hug the dog", "helpful"),
    ("{x} told {y} a funny joke", "cheerful", "laugh", "funny"),
    ("{x} lied to {y} about the money", "nervous", "ask for the truth", "dishonest"),
    ("{x} taught {y} to swim", "patient", "swim more", "patient"),
    ("{x} took {y}'s seat on the bus", "comfortable", "find another seat", "selfish"),
    ("{x} cooked dinner for {y}", "tired", "eat the dinner", "thoughtful"),
)
ROUTINES = {
    # an everyday script, step by step (HellaSwag-style continuations)
    "making tea": ("boiled some water", "put the leaves in a cup", "poured the hot water", "waited a while",
                   "drank the tea"),
    "washing the car": ("filled a bucket with soap", "scrubbed the doors", "rinsed the car with the hose",
                        "dried it with a cloth", "parked it in the sun"),
    "planting a tree": ("dug a deep hole", "set the young tree in it", "filled the hole with soil",
                        "watered the roots", "tied the stem to a stick"),
    "baking bread": ("mixed flour and water", "kneaded the dough", "let the dough rise", "shaped the loaf",
                     "baked it in the oven"),
    "painting a fence": ("sanded the old boards", "opened the paint tin", "stirred the paint",
                         "brushed on the first coat", "let the paint dry"),
    "packing for a trip": ("pulled out the suitcase", "folded the shirts", "rolled up the socks",
                           "closed the zip", "carried the case to the door"),
    "fixing a bike tire": ("turned the bike upside down", "took off the wheel", "found the hole in the tube",
                           "glued a patch over it", "pumped the tire up"),
    "writing a letter": ("took out a clean sheet", "wrote the date at the top", "wrote the message",
                         "signed the letter", "sealed it in an envelope"),
    "cleaning the kitchen": ("cleared the table", "washed the plates", "wiped the counters", "swept the floor",
                             "took out the rubbish"),
    "catching a fish": ("baited the hook", "cast the line into the lake", "waited for a bite",
                        "reeled the fish in", "put it in the basket"),
}  # fmt: skip
WINO_TEMPLATES = (
    # (sentence with {a}, {b} and a blank, index of the person the blank refers to: 0 = {a}, 1 = {b}).
    # Twin pairs differ in one word and flip the answer, as in WinoGrande.
    ("{a} paid {b} back because _ owed money.", 0),
    ("{a} paid {b} back because _ was owed money.", 1),
    ("{a} could not lift the box for {b} because _ was weak.", 0),
    ("{a} could not lift the box for {b} because _ was busy elsewhere.", 1),
    ("{a} thanked {b} because _ had been helped.", 0),
    ("{a} thanked {b} because _ had been helpful.", 1),
    ("{a} asked {b} for directions because _ was lost.", 0),
    ("{a} asked {b} for directions because _ knew the town.", 1),
    ("{a} lent {b} a coat because _ had a spare one.", 0),
    ("{a} lent {b} a coat because _ was cold.", 1),
    ("{a} beat {b} at chess because _ played well.", 0),
    ("{a} beat {b} at chess because _ played badly.", 1),
    ("{a} visited {b} in hospital because _ was worried.", 0),
    ("{a} visited {b} in hospital because _ was sick.", 1),
    ("{a} apologised to {b} because _ was wrong.", 0),
    ("{a} apologised to {b} because _ was upset.", 1),
)
SYLLABLES = ("zor", "quim", "bel", "tra", "vok", "lin", "mu", "pex", "dra", "sil", "nob", "ruk", "fen", "gal",
             "tip", "wob", "yan", "kes", "lop", "hux")  # fmt: skip


@dataclass(frozen=True)
class Creature:
    """One invented creature and the facts the world holds about it."""

    name: str
    klass: str
    habitat: str
    food: str
    color: str
    size: str


@dataclass(frozen=True)
class World:
    """The facts every task and the pretraining corpus draw from; built from a seed by `build_world`."""

    creatures: tuple[Creature, ...]


def build_world(seed: int, n_creatures: int = 30) -> World:
    """Invent `n_creatures` creatures with seeded properties; the same seed always gives the same world."""
    rng = random.Random(f"world-{seed}")
    names: list[str] = []
    while len(names) < n_creatures:
        name = "".join(rng.sample(SYLLABLES, 2))
        if name not in names:
            names.append(name)
    creatures = tuple(
        Creature(n, rng.choice(list(CLASSES)), rng.choice(HABITATS), rng.choice(FOODS), rng.choice(COLORS),
                 rng.choice(SIZES))
        for n in names
    )  # fmt: skip
    return World(creatures)


def with_article(word: str) -> str:
    """`word` with "a" or "an" in front."""
    return ("an " if word[0] in "aeiou" else "a ") + word
