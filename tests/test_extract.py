"""Answer extraction and estimators: what a generated answer says, without a model."""

import pytest

from quantreplay.extract import (
    STOP_STRINGS,
    extract_label_word,
    final_number,
    pass_at_k,
    pick_choice,
    pick_label_word,
    rouge1_f,
    truncate_at_stop,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (" 3 + 4 = 7 apples.\n#### 7", "7"),
        ("so 12 then 15", "15"),
        ("#### 1,234", "1234"),
        ("#### 8.0", "8"),
        ("#### -3", "-3"),
        ("no digits", None),
        ("#### 2.5 dollars", "2.5"),
    ],
)
def test_final_number(text, number):
    assert final_number(text) == number


def test_pick_choice():
    choices = [" no", " yes"]
    assert pick_choice(" yes", choices) == 1 and pick_choice("No.", choices) == 0
    assert pick_choice("I think yes", choices) == 1 and pick_choice("maybe", choices) is None
    assert pick_choice(" use the knife", [" use the knife", " use the knife block"]) == 0
    assert pick_choice("use the knife block now", [" use the knife", " use the knife block"]) == 1


def test_pass_at_k_matches_the_definition():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(7, 5) / C(10, 5) = 1 - 21 / 252
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(10, 6, 5) == 1.0


def test_truncate_at_stop():
    assert truncate_at_stop("    return x\ndef other():", ["\ndef "]) == "    return x"
    assert truncate_at_stop("abc", ["\n"]) == "abc"


def test_every_family_has_stop_strings_that_end_a_code_completion_at_the_next_definition():
    assert set(STOP_STRINGS) == {"nlu", "math", "code"}
    completion = "    return a + b\n\ndef helper():\n    pass"
    assert truncate_at_stop(completion, STOP_STRINGS["code"]) == "    return a + b\n"


def test_rouge1_on_known_pairs():
    # Shared words: the (once: min of 2 and 1), cat, on, mat = 4 of 6 on each side: P = R = F = 2/3.
    assert rouge1_f("the cat lay on a mat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # Precision 2/2, recall 2/4: F = 2PR / (P + R) = 2/3.
    assert rouge1_f("return x", "return x + y * 2") == pytest.approx(2 * 1 * 0.5 / 1.5)
    # Words only: code that computes the opposite scores full marks, and no shared word scores zero.
    assert rouge1_f("    return a - b\n", "    return a + b\n") == 1.0
    assert rouge1_f("pass", "return 2") == 0.0


# The authors' output formats (commonsense_170k's targets, "the correct answer is answer2"), per dataset.
@pytest.mark.parametrize(
    ("task", "choices", "generated", "word", "pick"),
    [
        ("boolq", [" no", " yes"], "the correct answer is true", "true", 1),
        ("boolq", [" no", " yes"], "false, because true is not", "false", 0),
        ("boolq", [" no", " yes"], "True", None, None),  # case as written, as their regex
        ("piqa", [" a", " b"], "the correct answer is solution2", "solution2", 1),
        ("piqa", [" a", " b"], "answer1", None, None),  # not a piqa label word
        ("siqa", [" a", " b", " c"], "the correct answer is answer3", "answer3", 2),
        ("siqa", [" a", " b", " c"], "answer5", "answer5", None),  # their word, but no such choice here
        ("arc_challenge", [" a", " b", " c", " d"], "answer4 then answer1", "answer4", 3),
        ("openbookqa", [" a", " b", " c", " d"], "the correct answer is answer1\n", "answer1", 0),
        ("hellaswag", [" a", " b", " c", " d"], "ending3", "ending3", 2),
        ("winogrande", [" 1", " 2"], "the correct answer is option2", "option2", 1),
        ("winogrande", [" 1", " 2"], " 2", None, None),
        ("my_task", [" a", " b"], "answer2", "answer2", 1),  # another name takes answer words
    ],
)
def test_label_word_extraction_on_the_authors_formats(task, choices, generated, word, pick):
    assert extract_label_word(generated, task) == word
    assert pick_label_word(generated, task, choices) == pick


def test_boolq_choice_without_a_label_word_is_named():
    with pytest.raises(ValueError, match="boolq choice ' maybe' has no label word"):
        pick_label_word("true", "boolq", [" maybe", " yes"])
