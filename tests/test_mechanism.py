"""The mechanism table's outcomes and the reading written from them (quantreplay.mechanism), on hand-made
differences that force each outcome."""

from quantreplay.mechanism import FAILS, REPRODUCES, UNRESOLVED, outcome, reading

METRIC = "retention_nlu_after_code"


def _row(precision, *, minus_reference=None, outcome_=None):
    row = {"precision": precision, "metric": METRIC, "outcome": outcome_}
    if minus_reference is not None:
        row.update(minus_reference=minus_reference[0], minus_reference_low=minus_reference[1],
                   minus_reference_high=minus_reference[2])  # fmt: skip
    return row


def test_an_arm_reproduces_fails_or_is_unresolved():
    real = (0.10, 0.05, 0.15)  # nf4 forgets less than fp16
    assert outcome(real, own=(0.0, -0.03, 0.03), arm=(0.09, 0.04, 0.14)) == REPRODUCES
    assert outcome(real, own=(-0.08, -0.12, -0.04), arm=(0.02, -0.02, 0.06)) == FAILS
    # Within noise of nf4, but not resolved from fp16 either: nothing said.
    assert outcome(real, own=(-0.03, -0.07, 0.01), arm=(0.07, -0.01, 0.12)) == UNRESOLVED
    # No real effect: an arm cannot reproduce it.
    assert outcome((0.0, -0.02, 0.02), own=(0.0, -0.02, 0.02), arm=(0.0, -0.02, 0.02)) == UNRESOLVED


def test_the_reading_names_the_particular_weights_when_fakequant_reproduces_and_noise_fails():
    rows = [_row("nf4", minus_reference=(0.10, 0.05, 0.15)), _row("fakequant-nf4", outcome_=REPRODUCES),
            _row("noise-nf4", outcome_=FAILS), _row("stepnoise-nf4", outcome_=FAILS)]  # fmt: skip
    (line,) = reading(rows, "fp16")
    assert "particular weights" in line and "regularization reading is not supported" in line


def test_the_reading_supports_regularization_when_stepnoise_reproduces():
    rows = [_row("nf4", minus_reference=(0.10, 0.05, 0.15)), _row("stepnoise-nf4", outcome_=REPRODUCES)]
    (line,) = reading(rows, "fp16")
    assert "regularization reading is supported" in line


def test_no_effect_means_nothing_to_explain():
    rows = [_row("nf4", minus_reference=(0.01, -0.02, 0.04)), _row("noise-nf4", outcome_=UNRESOLVED)]
    (line,) = reading(rows, "fp16")
    assert "within noise" in line and "no nf4 effect" in line


def test_without_arms_the_reading_says_so():
    (line,) = reading([_row("nf4", minus_reference=(0.10, 0.05, 0.15))], "fp16")
    assert "no control arm in this grid" in line
