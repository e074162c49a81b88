"""Replay buffers: how much of each earlier stage's training data a later stage sees again.

A buffer is either a fraction b of each earlier task's training split (the paper's unit: max(1, round(b * n))
examples for b > 0, none for b = 0) or an absolute number of examples per task. Examples are drawn uniformly
without replacement with a seed, per task (so every earlier task is represented), and shuffled together with
the new stage's training data.

`replay.draw: head` replays as the authors' code does (`dataset[:int(n * frac)]`): the first floor(b * n) rows of
each earlier task's split in file order, none when that floors to 0, the same rows for every seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from quantreplay.settings import Settings, one_of, parse, setting

# Path prefix of buffers given as a count of examples per task (fractions print as plain numbers).
COUNT_PREFIX = "n"
# How a buffer's rows are chosen from a task's split: a seeded uniform sample, or the split's first rows.
DRAWS = ("uniform", "head")


@dataclass(frozen=True)
class ReplaySettings(Settings):
    """How replay draws (config `replay`): `uniform`, max(1, round(b * n)) rows sampled without replacement with
    the seed; or `head`, the authors' first int(b * n) rows of the split (a count buffer: its first `count`)."""

    draw: str = setting("uniform", one_of(*DRAWS), f"one of {', '.join(DRAWS)}")


@dataclass(frozen=True)
class Buffer:
    """A replay buffer size: `fraction` of each earlier task's training split, or `count` examples per task."""

    fraction: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise ValueError("Buffer needs exactly one of fraction and count")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise ValueError(f"Buffer fraction must be in [0, 1], got {self.fraction!r}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"Buffer count must be a positive integer, got {self.count!r}")

    @property
    def label(self) -> str:
        """The buffer as it appears in paths and tables: '0', '0.001', '0.2', '1', or 'n5' for 5 per task.

        Lossless: parse(label) gives the same buffer back.
        """
        if self.count is not None:
            return f"{COUNT_PREFIX}{self.count}"
        if self.fraction == int(self.fraction):
            return str(int(self.fraction))
        return repr(float(self.fraction))

    @classmethod
    def parse(cls, label: str) -> Buffer:
        """Inverse of `label`; raises ValueError naming a label that is neither a fraction nor 'n<count>'."""
        try:
            if label.startswith(COUNT_PREFIX):
                return cls(count=int(label[len(COUNT_PREFIX) :]))
            return cls(fraction=float(label))
        except ValueError as error:
            raise ValueError(f"bad buffer label {label!r}: {error}") from None

    def size(self, n: int) -> int:
        """How many of a task's `n` training examples go into the buffer."""
        if self.count is not None:
            return min(self.count, n)
        if self.fraction == 0:
            return 0
        return min(n, max(1, round(self.fraction * n)))

    def head_size(self, n: int) -> int:
        """How many of a task's `n` rows the authors' head draw replays: `int(n * fraction)` as their code writes
        it (floored, so 0.1 % of fewer than 1000 rows is none), or `count` rows."""
        if self.count is not None:
            return min(self.count, n)
        return int(n * self.fraction)

    def drawn(self, n: int, draw: str) -> int:
        """How many of a task's `n` training rows the `draw` (one of DRAWS) replays."""
        return self.head_size(n) if draw == "head" else self.size(n)


def sample_replay(frame: pl.DataFrame, *, buffer: Buffer, seed: int, draw: str = "uniform") -> pl.DataFrame:
    """The buffer's share of one task's training rows, drawn without replacement.

    The draw depends only on the seed, the task and the task's row ids, so a stage-2 and a stage-3 mix
    replay the same examples of a stage-1 task, and adding a buffer size changes no other buffer's draw.
    `draw="head"` takes the first `buffer.head_size` rows instead, whatever the seed.
    """
    if draw == "head":
        return frame.head(buffer.head_size(frame.height))
    k = buffer.size(frame.height)
    if k == 0:
        return frame.clear()
    task = frame["task"][0]
    rng = random.Random(f"replay-{seed}-{task}-{buffer.label}")
    picked = sorted(rng.sample(range(frame.height), k))
    return frame[picked]


def mix_stage(
    *,
    new: Sequence[pl.DataFrame],
    earlier: Sequence[pl.DataFrame],
    buffer: Buffer,
    seed: int,
    draw: str = "uniform",
) -> pl.DataFrame:
    """The training rows of a later stage: its own tasks' rows plus each earlier task's replay (`draw`), shuffled.

    Adds a boolean column `replay` (True for replayed rows). Callers pass training splits only, so no test
    example can enter a mix. Raises ValueError if an input frame holds more than one task.
    """
    parts = []
    for frame in [*new, *earlier]:
        if frame["task"].n_unique() != 1:
            raise ValueError("each input frame must hold exactly one task")
    for frame in new:
        parts.append(frame.with_columns(replay=pl.lit(False)))
    for frame in earlier:
        parts.append(sample_replay(frame, buffer=buffer, seed=seed, draw=draw).with_columns(replay=pl.lit(True)))
    mixed = pl.concat(parts, how="vertical")
    order = list(range(mixed.height))
    random.Random(f"mix-{seed}-{buffer.label}").shuffle(order)
    return mixed[order]


def write_mix(
    *,
    new: Sequence[str],
    earlier: Sequence[str],
    buffer: str,
    seed: int,
    output: str,
    settings: dict | None = None,
    log: Callable[[str], None] = print,
) -> pl.DataFrame:
    """Check and read the stage's and the earlier stages' training parquets, mix them, write `output` atomically,
    then its manifest. `settings`: the config's `replay` section (None: the defaults)."""
    from quantreplay.io import read_parquet, write_parquet
    from quantreplay.manifest import check_inputs, write_manifest

    buf = Buffer.parse(buffer)
    replay = parse(ReplaySettings, settings or {}, "replay")
    check_inputs(new, earlier)
    mixed = mix_stage(
        new=[read_parquet(p) for p in new],
        earlier=[read_parquet(p) for p in earlier],
        buffer=buf,
        seed=seed,
        draw=replay.draw,
    )
    write_parquet(mixed, output)
    write_manifest(output)
    counts = mixed.group_by("task", "replay").len().sort("task")
    for task, replay, n in counts.iter_rows():
        log(f"{task}: {n} {'replayed' if replay else 'new'}")
    return mixed
