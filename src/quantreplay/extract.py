"""What a generated answer says: the pure functions that turn model output into a prediction, per family.

Each family's stop strings and its extraction rule live here together: nlu (which choice a generated answer
names, by its text or by the authors' label words), math (the final number of a worked answer), code (where a
completion ends), the pass@k estimator, and the authors' code score, ROUGE-1 F against the reference solution.
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


# The authors' label words (their notebook follows LLM-Adapters' commonsense evaluation): per dataset, the words an
# answer names a choice by, in choice order; the first match of any of them in the output is the answer, case as
# written. BoolQ's are true and false; a task of another name takes answer1-5.
LABEL_WORDS = {
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    "siqa": tuple(f"answer{i}" for i in range(1, 6)),
    "arc_challenge": tuple(f"answer{i}" for i in range(1, 6)),
    "arc_easy": tuple(f"answer{i}" for i in range(1, 6)),
    "openbookqa": tuple(f"answer{i}" for i in range(1, 6)),
    "hellaswag": tuple(f"ending{i}" for i in range(1, 5)),
    "winogrande": ("option1", "option2"),
}
DEFAULT_LABEL_WORDS = tuple(f"answer{i}" for i in range(1, 6))
# BoolQ's choices (" no", " yes" in lm-eval's rows) and the label word that names each.
BOOLQ_LABELS = {"yes": "true", "true": "true", "no": "false", "false": "false"}


def extract_label_word(generated: str, task: str) -> str | None:
    """The first of the task's label words (LABEL_WORDS) in `generated`, as the authors' `re.findall(...)[0]`;
    None if there is none."""
    words = LABEL_WORDS.get(task, DEFAULT_LABEL_WORDS)
    found = re.search("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), generated.strip())
    return found.group(0) if found else None


def choice_label_words(task: str, choices: Sequence[str]) -> list[str]:
    """The label word of each of a row's choices: true / false by the choice's text for boolq, else the task's
    word numbered by position (solution2 is the second choice). Raises ValueError for a boolq choice that is not
    yes, no, true or false."""
    if task == "boolq":
        unknown = [c for c in choices if c.strip().lower() not in BOOLQ_LABELS]
        if unknown:
            raise ValueError(f"boolq choice {unknown[0]!r} has no label word (true or false)")
        return [BOOLQ_LABELS[c.strip().lower()] for c in choices]
    stem = LABEL_WORDS.get(task, DEFAULT_LABEL_WORDS)[0].rstrip("0123456789")
    return [f"{stem}{i}" for i in range(1, len(choices) + 1)]


def pick_label_word(generated: str, task: str, choices: Sequence[str]) -> int | None:
    """The choice a generated answer names by the authors' label words (`extract_label_word`); None (scored
    wrong) if it names none, or a word that no choice of this row has (answer5 of three choices)."""
    word = extract_label_word(generated, task)
    labels = choice_label_words(task, choices)
    return labels.index(word) if word in labels else None


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
