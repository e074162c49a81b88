"""The one learning-rate schedule (quantreplay.schedule), of pretraining and of every LoRA stage."""

import math

import pytest

from quantreplay.schedule import lr_at


def test_warmup_reaches_the_peak_where_the_decay_starts():
    kw = {"lr": 1.0, "warmup_steps": 4, "total_steps": 14}
    assert [lr_at(s, schedule="cosine", **kw) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert lr_at(9, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_at(9, schedule="linear", **kw) == pytest.approx(0.5)
    assert lr_at(13, schedule="constant", **kw) == 1.0
    assert lr_at(14, schedule="linear", **kw) == 0.0


def test_pretraining_decays_to_its_minimum_and_stays_there():
    kw = {"lr": 1.0, "warmup_steps": 10, "total_steps": 100, "schedule": "cosine", "min_lr": 0.1}
    lrs = [lr_at(s, **kw) for s in range(120)]
    assert 0 < lrs[0] < lrs[5] < lrs[9] < 1.0 and lrs[10] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100], strict=False))
    assert lrs[99] == pytest.approx(0.1, abs=1e-3)
    assert lrs[100:] == [0.1] * 20


def test_without_warmup_the_first_step_is_the_peak():
    assert lr_at(0, lr=2.0, warmup_steps=0, total_steps=5, schedule="cosine") == 2.0
    assert lr_at(3, lr=1.0, warmup_steps=0, total_steps=5, schedule="cosine") == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 3 / 5))
    )
