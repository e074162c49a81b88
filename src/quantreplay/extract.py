"""What a generated answer says: the pure functions that turn model output into a prediction, per family.

Each family's stop strings and its extraction rule live here together: nlu (which choice a generated answer
names), math (the final number of a worked answer), code (where a completion ends), the pass@k estimator, and the
authors' code score, ROUGE-1 F against the reference solution.
No model, no file: unit-tested in tests/test_extract.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# Where generation stops for each family: the start of another example, or of code after the function.
STOP_STRINGS = {
    "nlu": ["\n"],
    "math": ["\nQuestion:", "\n\n\n"],
    "code": ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert "],
}
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The answer a math output gives: the number after the last `####`, else the last number; commas dropped."""
    if "####" in text:
        found = NUMBER.findall(text.rsplit("####", 1)[1])
        if found:
            return _canonical_number(found[0])
    found = NUMBER.findall(text)
    return _canonical_number(found[-1]) if found else None


def _canonical_number(raw: str) -> str:
    raw = raw.replace(",", "").rstrip(".")
    if "." in raw:
        value = float(raw)
        return str(int(value)) if value == int(value) else str(value)
    return str(int(raw))


def pick_choice(generated: str, choices: Sequence[str]) -> int | None:
    """The choice a generated answer names: the longest choice it starts with, else the earliest one it
    mentions, else None (scored wrong)."""
    text = generated.strip().lower()
    options = [c.strip().lower() for c in choices]
    starting = [i for i, c in enumerate(options) if c and text.startswith(c)]
    if starting:
        return max(starting, key=lambda i: len(options[i]))
    found = [(text.find(c), i) for i, c in enumerate(options) if c and c in text]
    return min(found)[1] if found else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def rouge1_f(prediction: str, reference: str) -> float:
    """ROUGE-1 F-measure of `prediction` against `reference` (Google's rouge-score package: lower-cased words of
    letters and digits, no stemming): the authors' code score. It counts shared words, not whether code runs:
    `return a - b` scores 1.0 against `return a + b`."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1"]).score(reference, prediction)["rouge1"].fmeasure


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop string."""
    cut = min((text.find(s) for s in stops if s in text), default=len(text))
    return text[:cut]
