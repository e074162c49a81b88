"""Generators of the built-in suite's math and code tasks.

- arithmetic: multi-step word problems whose worked answer is one equation per step, ending ``#### N``.
- pyfunc: small Python functions from a HumanEval-style signature and docstring, with hidden tests
  (`CODE_OPS` is also what the pretraining corpus states as plain code).

Each generator takes (world, rng) and returns one example as a dict with prompt and target; pyfunc rows also
carry tests, entry_point and code_prefix.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from quantreplay.data.builtin.world import PEOPLE, World

EQUATION = re.compile(r"\d+(?: [-+*] \d+)+ = \d+")


def _arithmetic(world: World, rng: random.Random) -> dict:
    """A two- or three-step word problem; the worked answer is built from the same numbers it reports."""
    person, friend = rng.sample(PEOPLE, 2)
    item = rng.choice(("apples", "shells", "coins", "stamps", "pencils", "marbles", "cards", "eggs"))
    # Small numbers: products stay in the times tables and sums below 100, which the pretraining corpus
    # states, so a small model can learn the procedure rather than long arithmetic.
    start = rng.randint(2, 20)
    kind = rng.randrange(5)
    if kind == 0:
        bags, each, given = rng.randint(2, 5), rng.randint(2, 9), rng.randint(1, start)
        bought = bags * each
        total = start + bought
        final = total - given
        question = (
            f"{person} has {start} {item}. {person} buys {bags} bags with {each} {item} each, then gives "
            f"{given} {item} to {friend}. How many {item} does {person} have now?"
        )
        steps = [
            f"{person} buys {bags} * {each} = {bought} {item}.",
            f"Then {person} has {start} + {bought} = {total} {item}.",
            f"After giving {given} away, {person} has {total} - {given} = {final} {item}.",
        ]
    elif kind == 1:
        per_day, days = rng.randint(2, 9), rng.randint(2, 5)
        made = per_day * days
        # Never more than there is: answers stay non-negative.
        lost = rng.randint(1, min(9, start + made))
        final = start + made - lost
        question = (
            f"{person} has {start} {item} and collects {per_day} more every day for {days} days. "
            f"{person} loses {lost} of them. How many {item} does {person} have?"
        )
        steps = [
            f"{person} collects {per_day} * {days} = {made} {item}.",
            f"Then {person} has {start} + {made} = {start + made} {item}.",
            f"After losing {lost}, {person} has {start + made} - {lost} = {final} {item}.",
        ]
    elif kind == 2:
        groups = rng.randint(2, 5)
        each = rng.randint(2, 9)
        total = groups * each
        extra = rng.randint(1, 9)
        final = total + extra
        question = (
            f"{person} shares {item} equally among {groups} friends so each friend gets {each}. "
            f"{person} keeps {extra} more. How many {item} did {person} have?"
        )
        steps = [
            f"The friends get {groups} * {each} = {total} {item}.",
            f"With the {extra} kept, {person} had {total} + {extra} = {final} {item}.",
        ]
    elif kind == 3:
        price, count, paid_extra = rng.randint(2, 9), rng.randint(2, 5), rng.randint(1, 9)
        cost = price * count
        paid = cost + paid_extra
        final = paid - cost
        question = (
            f"{person} buys {count} {item} at {price} dollars each and pays with {paid} dollars. "
            f"How much change does {person} get?"
        )
        steps = [
            f"The {item} cost {count} * {price} = {cost} dollars.",
            f"The change is {paid} - {cost} = {final} dollars.",
        ]
    else:
        first, ratio = rng.randint(2, 9), rng.randint(2, 3)
        second = first * ratio
        final = first + second + start
        question = (
            f"{person} has {start} {item}. {friend} gives {person} {first} {item}, and later gives "
            f"{ratio} times as many as before. How many {item} does {person} have now?"
        )
        steps = [
            f"The second gift is {ratio} * {first} = {second} {item}.",
            f"In all {person} has {start} + {first} + {second} = {final} {item}.",
        ]
    # The worked answer keeps only each step's equation: the same procedure as GSM8K's worked answers in a
    # third of the tokens, which a few-million-parameter model can learn within a stage.
    equations = [EQUATION.search(step).group(0) for step in steps]
    return {
        "prompt": f"Question: {question}\nAnswer:",
        "target": " " + "\n".join(equations) + f"\n#### {final}",
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
        "digits",
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
ARG_NAMES = {
    "ints": ("xs", "nums", "values"),
    "digits": ("xs", "nums", "values"),
    "str": ("s", "text", "word"),
    "int": ("x", "n", "value"),
}
INPUT_MAKERS: dict[str, Callable[[random.Random], object]] = {
    "ints": lambda r: [r.randint(-5, 20) for _ in range(r.randint(0, 7))],
    "digits": lambda r: [r.randint(0, 9) for _ in range(r.randint(0, 9))],
    "str": lambda r: "".join(r.choice("abcxyz") for _ in range(r.randint(0, 4))),
    "int": lambda r: r.randint(-20, 30),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen")  # fmt: skip


def _pyfunc(world: World, rng: random.Random) -> dict:
    name_pat, doc_pat, body_pat, kind = rng.choice(CODE_OPS)
    # 2..9 keeps every op meaningful (multiples of 0 or repeating 0 times would be degenerate); m > k so that
    # ranges are never empty.
    k = rng.randint(2, 9)
    m = rng.randint(k + 1, k + 8)
    arg = rng.choice(ARG_NAMES[kind])
    fmt = {"k": k, "m": m, "kw": NUMBER_WORDS[k], "mw": NUMBER_WORDS[m], "a": arg}
    entry_point = name_pat.format(**fmt)
    prompt = f'def {entry_point}({arg}):\n    """{doc_pat.format(**fmt)}"""\n'
    target = f"    {body_pat.format(**fmt)}\n"
    namespace: dict = {}
    exec(prompt + target, namespace)  # our own reference solution, to compute the expected outputs
    fn = namespace[entry_point]
    # Four cases catch a wrong constant or a wrong operation with high probability.
    cases = [INPUT_MAKERS[kind](rng) for _ in range(4)]
    tests = "\n".join(f"assert {entry_point}({c!r}) == {fn(c)!r}" for c in cases) + "\n"
    return {"prompt": prompt, "target": target, "tests": tests, "entry_point": entry_point, "code_prefix": prompt}


MATH_GENERATORS: dict[str, Callable[[World, random.Random], dict]] = {"arithmetic": _arithmetic}
CODE_GENERATORS: dict[str, Callable[[World, random.Random], dict]] = {"pyfunc": _pyfunc}
