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


def pretrain_lr_at(step: int, *, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Learning rate of toy pretraining at optimizer step `step` (0-based): linear warmup, then cosine decay to
    `min_lr`.

    Follows nanoGPT's `get_lr`, with the decay horizon at `total_steps`.
    """
    # 1) linear warmup for warmup_steps steps (step 0 already takes a small, non-zero step)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    # 2) past the decay horizon, stay at the minimum learning rate
    if step >= total_steps:
        return min_lr
    # 3) in between, cosine decay from max_lr down to min_lr
    decay_ratio = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (max_lr - min_lr)
