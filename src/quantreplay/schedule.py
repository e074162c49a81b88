"""The learning-rate schedule of every training loop in the project: a pure function of the step."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "constant")


def lr_at(step: int, *, lr: float, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Learning rate of optimizer step `step` (0-based)."""
    # 1) linear warmup from lr / warmup_steps to lr
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    # 2) after warmup, progress goes from 0 to 1 over the remaining steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    # 3) decay to zero: linearly, or along half a cosine
    if schedule == "linear":
        return lr * (1 - progress)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))
