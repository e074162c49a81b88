"""The learning-rate schedules (quantreplay.schedule)."""

import math

import pytest

from quantreplay.schedule import pretrain_lr_at


def test_pretrain_lr_warms_up_then_decays_to_min():
    kw = {"max_lr": 1.0, "warmup_steps": 10, "total_steps": 100, "min_lr": 0.1}
    lrs = [pretrain_lr_at(s, **kw) for s in range(120)]
    assert 0 < lrs[0] < lrs[5] < lrs[9] < 1.0
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100], strict=False))
    assert lrs[99] == pytest.approx(0.1, abs=1e-3)
    assert lrs[100:] == [0.1] * 20
    assert pretrain_lr_at(3, max_lr=1.0, warmup_steps=0, total_steps=5, min_lr=0.0) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 3 / 5))
    )
