"""Generators of the built-in suite's math and code tasks.

- arithmetic: two-step word problems whose worked answer is one equation per step, ending ``#### N``; every
  step is one of `math_facts()`, which the pretraining corpus states.
- pyfunc: small Python functions from a HumanEval-style signature and docstring, with hidden tests
  (`CODE_OPS` is also what the pretraining corpus states as plain code).

Each generator takes (world, rng, slot, split) (which place multiple-choice answers and hold items out of
training; these ignore them) and returns one example as a dict with prompt and target; pyfunc rows also
carry tests, entry_point and code_prefix.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from quantreplay.data.builtin.world import PEOPLE, World

EQUATION = re.compile(r"\d+(?: [-+*] \d+)+ = \d+")
# Every number a problem multiplies: both factors of its first step (the times tables up to 6 x 6).
FACTORS = range(2, 7)
# Every small number a problem adds to a product or takes away (1 to 9).
ADDENDS = range(1, 10)
ITEMS = ("apples", "shells", "coins", "stamps", "pencils", "marbles", "cards", "eggs")


def math_facts() -> tuple[str, ...]:
    """Every equation a worked answer of `_arithmetic` can contain, each once: the pretraining corpus states them.

    A product of two `FACTORS`; a product plus an `ADDENDS`; a product minus an addend no larger than it; a
    product plus an addend, minus the product. 374 distinct equations: few enough that a small base learns
    every one from the corpus, so fine-tuning has to teach the procedure (which numbers of the question go
    into which step), not arithmetic.
    """
    facts: list[str] = []
    products = sorted({a * b for a in FACTORS for b in FACTORS})
    facts += [f"{a} * {b} = {a * b}" for a in FACTORS for b in FACTORS]
    facts += [f"{p} + {c} = {p + c}" for p in products for c in ADDENDS]
    facts += [f"{p} - {c} = {p - c}" for p in products for c in ADDENDS if c <= p]
    facts += [f"{p + c} - {p} = {c}" for p in products for c in ADDENDS]
    # 10 - 4 = 6 is both a product minus an addend and a product plus an addend minus the product: once each.
    return tuple(dict.fromkeys(facts))


def _arithmetic(world: World, rng: random.Random, slot: int = 0, split: str = "train") -> dict:
    """A two-step word problem: a product, then a small number added or taken away.

    Every step is one of `math_facts()`, which the pretraining corpus states; the question names its numbers
    in the order the steps use them, and the worked answer is built from the same numbers it reports.
    """
    person, friend = rng.sample(PEOPLE, 2)
    item = rng.choice(ITEMS)
    a, b = rng.choice(FACTORS), rng.choice(FACTORS)
    p = a * b
    c = rng.choice(ADDENDS)
    kind = rng.randrange(5)
    if kind == 0:
        question = (
            f"{person} buys {a} bags with {b} {item} each and already has {c} {item}. "
            f"How many {item} does {person} have now?"
        )
        steps, final = [f"{a} * {b} = {p}", f"{p} + {c} = {p + c}"], p + c
    elif kind == 1:
        # Never more than there is: answers stay non-negative.
        c = min(c, p)
        question = (
            f"{person} collects {a} {item} every day for {b} days, then loses {c} of them. "
            f"How many {item} does {person} have?"
        )
        steps, final = [f"{a} * {b} = {p}", f"{p} - {c} = {p - c}"], p - c
    elif kind == 2:
        question = (
            f"{person} shares {item} equally among {a} friends so each friend gets {b}. "
            f"{person} keeps {c} more. How many {item} did {person} have?"
        )
        steps, final = [f"{a} * {b} = {p}", f"{p} + {c} = {p + c}"], p + c
    elif kind == 3:
        question = (
            f"{person} buys {a} {item} at {b} dollars each and pays with {p + c} dollars. "
            f"How much change does {person} get?"
        )
        steps, final = [f"{a} * {b} = {p}", f"{p + c} - {p} = {c}"], c
    else:
        question = (
            f"{friend} gives {person} {a} bags of {b} {item}, and {person} finds {c} more. "
            f"How many {item} does {person} have?"
        )
        steps, final = [f"{a} * {b} = {p}", f"{p} + {c} = {p + c}"], p + c
    # The worked answer is one equation per step, as GSM8K's worked answers are, in a third of their tokens.
    return {
        "prompt": f"Question: {question}\nAnswer:",
        "target": " " + "\n".join(steps) + f"\n#### {final}",
        "final": final,
    }


# Code tasks: (name pattern, docstring pattern, body pattern, kind of argument). {k} and {m} are small integer
# constants, {a} the argument's name, {kw} and {mw} the constants as words.
CODE_OPS: tuple[tuple[str, str, str, str], ...] = (
    ("add_{kw}", "Return a list with {k} added to every element of {a}.", "return [x + {k} for x in {a}]", "ints"),
    (
        "times_{kw}",
        "Return a list with every element of {a} multiplied by {k}.",
        "return [x * {k} for x in {a}]",
        "ints",
    ),
    (
        "above_{kw}",
        "Return the elements of {a} that are greater than {k}.",
        "return [x for x in {a} if x > {k}]",
        "ints",
    ),
    (
        "count_{kw}",
        "Return how many elements of {a} are equal to {k}.",
        "return sum(1 for x in {a} if x == {k})",
        "ints",
    ),
    ("first_{kw}", "Return the first {k} elements of {a}.", "return {a}[:{k}]", "ints"),
    ("drop_{kw}", "Return {a} without its first {k} elements.", "return {a}[{k}:]", "ints"),
    ("repeat_{kw}", "Return the string {a} repeated {k} times.", "return {a} * {k}", "str"),
    ("sum_plus_{kw}", "Return the sum of {a} plus {k}.", "return sum({a}) + {k}", "ints"),
    (
        "multiples_of_{kw}",
        "Return the elements of {a} that are divisible by {k}.",
        "return [x for x in {a} if x % {k} == 0]",
        "ints",
    ),
    ("stars_{kw}", "Return the string {a} with {k} stars added at the end.", "return {a} + '*' * {k}", "str"),
    ("min_{kw}", "Return the smaller of {a} and {k}.", "return min({a}, {k})", "int"),
    (
        "clip_{kw}",
        "Return {a} with every element larger than {k} replaced by {k}.",
        "return [min(x, {k}) for x in {a}]",
        "ints",
    ),
    (
        "between_{kw}_and_{mw}",
        "Return the elements of {a} from {k} to {m} inclusive.",
        "return [x for x in {a} if {k} <= x <= {m}]",
        "ints",
    ),
    (
        "times_{kw}_plus_{mw}",
        "Return a list with every element of {a} multiplied by {k}, then {m} added.",
        "return [x * {k} + {m} for x in {a}]",
        "ints",
    ),
    (
        "add_{kw}_above_{mw}",
        "Return the elements of {a} greater than {m}, each with {k} added.",
        "return [x + {k} for x in {a} if x > {m}]",
        "ints",
    ),
    (
        "count_above_{kw}_below_{mw}",
        "Return how many elements of {a} are greater than {k} and less than {m}.",
        "return sum(1 for x in {a} if {k} < x < {m})",
        "ints",
    ),
    (
        "repeat_{kw}_stars_{mw}",
        "Return the string {a} repeated {k} times, followed by {m} stars.",
        "return {a} * {k} + '*' * {m}",
        "str",
    ),
    (
        "sum_times_{kw}_minus_{mw}",
        "Return the sum of {a} multiplied by {k}, minus {m}.",
        "return sum({a}) * {k} - {m}",
        "ints",
    ),
    (
        "slice_{kw}_to_{mw}",
        "Return the elements of {a} from position {k} up to but not including position {m}.",
        "return {a}[{k}:{m}]",
        "ints",
    ),
    ("clamp_{kw}_{mw}", "Return {a} limited to the range from {k} to {m}.", "return max({k}, min({a}, {m}))", "int"),
)
# One argument name per kind: with three per kind the toy wrote the right body over a name drawn at chance
# (31.5 % pass@1, two thirds of the failures only the name), since it never learned to copy a name from the
# signature. Prompts vary by operation and constants instead (`code_constants`: 1,612 distinct).
ARGUMENT = {"ints": "nums", "str": "text", "int": "n"}
# Wide enough that no constant makes an operation's tests blind (`first 14` of a list needs longer lists).
INPUT_MAKERS: dict[str, Callable[[random.Random], object]] = {
    "ints": lambda r: [r.randint(-5, 30) for _ in range(r.randint(0, 16))],
    "str": lambda r: "".join(r.choice("abcxyz") for _ in range(r.randint(0, 4))),
    "int": lambda r: r.randint(-20, 40),
}
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")  # fmt: skip
# The constants' ranges: k in 2..14 (0 and 1 would make multiples and repeats degenerate) and m in k+1..k+14, so
# ranges are never empty.
K_RANGE = (2, 14)
M_ABOVE_K = (1, 14)


def number_word(n: int) -> str:
    """`n` (0..99) in words, as an identifier: 7 -> 'seven', 23 -> 'twenty_three'."""
    if n < 20:
        return _ONES[n]
    tens = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")[n // 10 - 2]
    return tens if n % 10 == 0 else f"{tens}_{_ONES[n % 10]}"


def code_constants(rng: random.Random, kind: str) -> dict:
    """One code operation's format fields: the constants k < m, their words, the argument name of `kind`."""
    k = rng.randint(*K_RANGE)
    m = k + rng.randint(*M_ABOVE_K)
    return {"k": k, "m": m, "kw": number_word(k), "mw": number_word(m), "a": ARGUMENT[kind]}


def _pyfunc(world: World, rng: random.Random, slot: int = 0, split: str = "train") -> dict:
    name_pat, doc_pat, body_pat, kind = rng.choice(CODE_OPS)
    fmt = code_constants(rng, kind)
    entry_point = name_pat.format(**fmt)
    prompt = f'def {entry_point}({fmt["a"]}):\n    """{doc_pat.format(**fmt)}"""\n'
    target = f"    {body_pat.format(**fmt)}\n"
    namespace: dict = {}
    exec(prompt + target, namespace)  # our own reference solution, to compute the expected outputs
    fn = namespace[entry_point]
    # Four cases catch a wrong constant or a wrong operation with high probability.
    cases = [INPUT_MAKERS[kind](rng) for _ in range(4)]
    tests = "\n".join(f"assert {entry_point}({c!r}) == {fn(c)!r}" for c in cases) + "\n"
    return {"prompt": prompt, "target": target, "tests": tests, "entry_point": entry_point, "code_prefix": prompt}


MATH_GENERATORS: dict[str, Callable[[World, random.Random, int, str], dict]] = {"arithmetic": _arithmetic}
CODE_GENERATORS: dict[str, Callable[[World, random.Random, int, str], dict]] = {"pyfunc": _pyfunc}
