"""The learning-rate schedule of every training loop in the project (toy pretraining and every LoRA stage): one
small pure function of the optimizer step, as nanoGPT's `get_lr`."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "constant")


def lr_at(step: int, *, lr: float, warmup_steps: int, total_steps: int, schedule: str, min_lr: float = 0.0) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup to `lr`, then `schedule` down to `min_lr`
    at `total_steps` (cosine or linear), or `lr` throughout (constant)."""
    # 1) linear warmup for warmup_steps steps; step 0 already takes a small, non-zero step, and the peak is reached
    #    at step warmup_steps, where the decay starts
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return lr
    # 2) past the decay horizon, stay at the minimum learning rate
    if step >= total_steps:
        return min_lr
    # 3) in between, decay from lr to min_lr: along half a cosine, or linearly
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_lr + coeff * (lr - min_lr)
