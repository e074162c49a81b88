"""The built-in synthetic task suite: one small world, three task families, a pretraining corpus.

Everything is generated from a seed. The world is a set of invented creatures with properties, tools and
what they do, social events and how people react, daily routines and their steps. The pretraining corpus
states this world in plain narrative (no instruction formats), so a base model trained on it knows the
facts; the instruction tasks then ask about the same world in the formats of the paper's datasets:

- nlu: eight multiple-choice tasks shaped like BoolQ, PIQA, SocialIQA, ARC-Challenge, ARC-Easy,
  OpenBookQA, HellaSwag and WinoGrande. The answer strings are the choices scored by log-likelihood.
- math: multi-step arithmetic word problems with a worked answer ending ``#### N``.
- code: small Python functions from a HumanEval-style signature and docstring, with hidden tests.

The families share one vocabulary of names and numbers but ask for different outputs, so stage-wise
LoRA training on one family competes with what the previous family taught.

Modules: `world` (the vocabulary, the creatures and `build_world`), `nlu` and `math_code` (the task
generators), `corpus` (`pretraining_corpus`); this one holds the catalogue `BUILTIN_TASKS` and
`generate_task`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from quantreplay.data.builtin.corpus import pretraining_corpus
from quantreplay.data.builtin.math_code import CODE_GENERATORS, MATH_GENERATORS
from quantreplay.data.builtin.nlu import NLU_GENERATORS
from quantreplay.data.builtin.world import CLASSES, World, build_world

__all__ = ["BUILTIN_TASKS", "CLASSES", "GENERATORS", "World", "build_world", "generate_task", "pretraining_corpus"]

NLU_TASKS = tuple(NLU_GENERATORS)
MATH_TASKS = tuple(MATH_GENERATORS)
CODE_TASKS = tuple(CODE_GENERATORS)
# The catalogue: task name -> family.
BUILTIN_TASKS: dict[str, str] = {
    **{t: "nlu" for t in NLU_TASKS},
    **{t: "math" for t in MATH_TASKS},
    **{t: "code" for t in CODE_TASKS},
}
# Each takes (world, rng, slot, split), slot the example's index within its split, and returns one example (see
# the generator modules).
GENERATORS: dict[str, Callable[[World, random.Random, int, str], dict]] = {
    **NLU_GENERATORS,
    **MATH_GENERATORS,
    **CODE_GENERATORS,
}


def generate_task(task: str, *, seed: int, train_size: int, test_size: int, n_creatures: int = 30) -> dict:
    """Generate the train and test rows of one built-in task.

    Examples are drawn until `train_size + test_size` distinct prompts exist, so no prompt is in both
    splits (a prompt seen twice is dropped, not moved, and redrawn for the same slot). The first `test_size`
    are the test split; each example gets its split and its index within it (`slot`), which place the answers
    of multiple-choice tasks evenly over the positions and keep held-out items out of the training split.
    Returns {"train": rows, "test": rows} with rows following the contract in `quantreplay.data.rows`.
    Raises ValueError naming the task if it is unknown or its template space is too small for the requested
    sizes.
    """
    if task not in GENERATORS:
        raise ValueError(f"unknown builtin task {task!r}; known: {', '.join(GENERATORS)}")
    world = build_world(seed, n_creatures)
    rng = random.Random(f"task-{seed}-{task}")
    wanted = train_size + test_size
    seen: set[str] = set()
    examples: list[dict] = []
    # Give up after this many duplicates in a row: the template space is exhausted, not just unlucky.
    max_duplicates_in_a_row = 2000
    duplicates_in_a_row = 0
    while len(examples) < wanted:
        # The example's index within its split: multiple-choice generators put the answer at slot % choices.
        split = "test" if len(examples) < test_size else "train"
        slot = len(examples) if split == "test" else len(examples) - test_size
        ex = GENERATORS[task](world, rng, slot, split)
        if ex["prompt"] in seen:
            duplicates_in_a_row += 1
            if duplicates_in_a_row > max_duplicates_in_a_row:
                raise ValueError(
                    f"builtin task {task!r} has fewer than {wanted} distinct prompts; ask for fewer examples"
                )
            continue
        duplicates_in_a_row = 0
        seen.add(ex["prompt"])
        examples.append(ex)
    family = BUILTIN_TASKS[task]
    out: dict[str, list[dict]] = {"test": [], "train": []}
    for i, ex in enumerate(examples):
        split = "test" if i < test_size else "train"
        ex.pop("final", None)
        out[split].append({"id": f"{task}-{split}-{len(out[split]):05d}", "task": task, "family": family, **ex})
    return out
