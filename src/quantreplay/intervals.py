"""Bootstrap intervals for every summary metric, and paired comparisons of precisions.

The resampling unit is the test example. Each task's examples are resampled on their own (a task keeps its
size, so a family's mean keeps its tasks' weights), and one resample of a task's examples serves every
checkpoint of a cell (the base and every stage), every seed, and both precisions of a comparison: all of them
scored the same examples, and pairing them keeps the test set's difficulty out of differences between stages
and precisions. With several seeds the seeds are resampled too (a two-level bootstrap) and the estimate is the
mean over seeds of each seed's metric; with one seed the interval covers test-set sampling only. Going from one
seed to two often widens the interval (training noise becomes visible for the first time); from there the seeds'
share shrinks like 1/sqrt(seeds). The pooled rows also give the interval with the seeds held fixed (test-set
sampling alone, of the mean over these seeds), which narrows as seeds that disagree on examples are averaged.
Intervals are percentile intervals from `scipy.stats.bootstrap`.

Scores arrive as one array per task of shape (seeds, arms, checkpoints, examples): arms is 1 for a cell's own
metrics and 2 for a comparison (the metric of arm 0 minus that of arm 1); checkpoints are after stages 0..T.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import polars as pl

from quantreplay.io import read_parquet
from quantreplay.metrics import cl_metrics, metric_columns
from quantreplay.settings import Settings, fraction, non_negative, setting

# Bytes of resampled scores held at once; scipy's `batch` keeps the bootstrap under it.
_BATCH_BYTES = 200 * 2**20


@dataclass(frozen=True)
class AnalysisSettings(Settings):
    """How intervals are drawn (config `analysis`): their confidence level, the bootstrap's resamples and seed,
    and the precision the others are compared with (null: the widest float precision of the grid, resolved by
    `quantreplay.grid.comparison_reference`)."""

    confidence: float = setting(0.95, fraction, "in (0, 1)")
    # Fewer resamples leave the tails of a 95 % percentile interval to a handful of draws.
    bootstrap_resamples: int = setting(2000, lambda v: v >= 100, "at least 100 for a 95 % interval")
    bootstrap_seed: int = setting(0, non_negative, "non-negative")
    reference_precision: str | None = setting(None)


@functools.lru_cache(maxsize=256)
def read_example_scores(path: str, column: str = "correct") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task -> (ids, per-example score in `column`) of one predictions.parquet (or heldout_loss.parquet), sorted by
    id (cached: the base and stage-1 files serve many cells)."""
    frame = read_parquet(path, columns=["task", "id", column]).sort("task", "id")
    out = {}
    for (task,), rows in frame.group_by("task", maintain_order=True):
        out[task] = (rows["id"].to_numpy(), rows[column].cast(pl.Float64).to_numpy())
    return out


def example_matrix(files: Sequence[Sequence[Sequence[str]]], column: str = "correct") -> dict[str, np.ndarray]:
    """Per task, the scores in `column` of `files[seed][arm][checkpoint]` (predictions.parquet paths) as one array
    of shape (seeds, arms, checkpoints, examples), examples aligned by id.

    Raises ValueError naming the file when a checkpoint scored other tasks or other examples than the first.
    """
    first_path = files[0][0][0]
    first = read_example_scores(first_path, column)
    shape = (len(files), len(files[0]), len(files[0][0]))
    out = {task: np.empty((*shape, len(ids))) for task, (ids, _) in first.items()}
    for s, arms in enumerate(files):
        for a, checkpoints in enumerate(arms):
            if len(checkpoints) != shape[2]:
                raise ValueError(f"seed {s}, arm {a}: {len(checkpoints)} checkpoints, expected {shape[2]}")
            for k, path in enumerate(checkpoints):
                scores = read_example_scores(path, column)
                if scores.keys() != first.keys():
                    raise ValueError(f"{path}: scored tasks {sorted(scores)}, but {first_path} scored {sorted(first)}")
                for task, (ids, values) in scores.items():
                    if not np.array_equal(ids, first[task][0]):
                        raise ValueError(f"{path}: task {task!r} scored other examples than {first_path}")
                    out[task][s, a, k] = values
    return out


def _metric_table(task_means: Sequence[np.ndarray], task_families: Sequence[str], stages: Sequence[str]) -> dict:
    """summary.csv's metrics from per-task means of shape (checkpoints, *rest); each value has shape `rest`."""
    families = []
    for family in stages:
        members = [m for m, f in zip(task_means, task_families, strict=True) if f == family]
        if not members:
            raise ValueError(f"no scored task of family {family!r}")
        families.append(np.mean(members, axis=0))
    return metric_columns(cl_metrics(np.stack(families, axis=1)), stages)


def bootstrap_metrics(scores: Mapping[str, np.ndarray], families: Mapping[str, str], stages: Sequence[str],
                      settings: AnalysisSettings, *, resample_seeds: bool = True) -> pl.DataFrame:  # fmt: skip
    """Every summary metric with its bootstrap interval: columns metric, estimate, ci_low, ci_high.

    `scores[task]` has shape (seeds, arms, checkpoints, examples) (see `example_matrix`); arms 1 gives a cell's
    metrics, arms 2 the difference arm 0 - arm 1. Tasks of families no stage trains are left out, as in R. With
    several seeds they are resampled too unless `resample_seeds` is False (then the interval is that of the mean
    over these very seeds, from test-set sampling alone).
    """
    tasks = [t for t in scores if families[t] in stages]
    for task in tasks:
        if scores[task].shape[-1] < 2:
            raise ValueError(f"task {task!r}: {scores[task].shape[-1]} test example, the bootstrap needs 2 or more")
    n_seeds, n_arms, n_checkpoints = scores[tasks[0]].shape[:3]
    if n_arms not in (1, 2):
        raise ValueError(f"{n_arms} arms: a cell has 1, a comparison 2")
    names = list(_metric_table([scores[t][0, 0].mean(-1) for t in tasks], [families[t] for t in tasks], stages))

    def statistic(*samples, axis=-1):
        task_samples = samples[: len(tasks)]
        # (seeds, arms, checkpoints, *batch) -> R as (checkpoints, families, seeds, arms, *batch)
        means = [np.moveaxis(s.mean(axis=axis), 2, 0) for s in task_samples]
        columns = _metric_table(means, [families[t] for t in tasks], stages)
        values = np.stack([np.asarray(columns[n]) for n in names])  # (metrics, seeds, arms, *batch)
        values = values[:, :, 0] - values[:, :, 1] if n_arms == 2 else values[:, :, 0]
        if len(samples) == len(tasks):
            return values.mean(axis=1)
        picked = samples[-1]
        if picked.ndim >= 4:
            # scipy broadcast the seeds' sample against the tasks' (seeds, arms, checkpoints): one copy is enough.
            picked = picked[0, 0, 0]
        if picked.ndim == 1:
            return values[:, picked].mean(axis=1)
        batch = np.arange(picked.shape[0])
        return values[:, picked.T, batch].mean(axis=1)

    # scipy takes a second to import: only the aggregate job pays it, not the Snakefile that imports this module.
    from scipy import stats

    data = [scores[t] for t in tasks] + ([np.arange(n_seeds)] if n_seeds > 1 and resample_seeds else [])
    per_resample = 8 * n_seeds * n_arms * n_checkpoints * sum(scores[t].shape[-1] for t in tasks)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # A metric that is constant under resampling (every checkpoint scored 0 on a family) has a zero-width
        # interval, which is the right answer; scipy warns about it all the same.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        estimate = statistic(*data)
        result = stats.bootstrap(
            data,
            statistic,
            n_resamples=settings.bootstrap_resamples,
            confidence_level=settings.confidence,
            method="percentile",
            vectorized=True,
            paired=False,
            axis=-1,
            batch=max(1, _BATCH_BYTES // per_resample),
            rng=np.random.default_rng(settings.bootstrap_seed),
        )
    return pl.DataFrame(
        {
            "metric": names,
            "estimate": estimate,
            "ci_low": result.confidence_interval.low,
            "ci_high": result.confidence_interval.high,
        }
    )


def _rows(frame: pl.DataFrame, examples_only: pl.DataFrame, keys: dict, n_seeds: int,
          settings: AnalysisSettings) -> pl.DataFrame:  # fmt: skip
    resampled = "examples and seeds" if n_seeds > 1 else "examples"
    return frame.select(
        *(pl.lit(v, dtype=pl.String).alias(k) for k, v in keys.items()),
        pl.lit(n_seeds).alias("n_seeds"),
        pl.all(),
        examples_only["ci_low"].alias("examples_ci_low"),
        examples_only["ci_high"].alias("examples_ci_high"),
        pl.lit(settings.confidence).alias("confidence"),
        pl.lit(resampled).alias("resampled"),
    )


def _per_seed_and_pooled(files_by_seed: Mapping[str, Sequence[Sequence[str]]], keys: dict,
                         families: Mapping[str, str], stages: Sequence[str], settings: AnalysisSettings,
                         column: str) -> list[pl.DataFrame]:  # fmt: skip
    """Rows for each seed on its own, then for all seeds together (seed 'all'; the same numbers when there is one
    seed). examples_ci_* hold the interval from test-set sampling alone (the seeds held fixed)."""
    out = []
    for seed, arms in files_by_seed.items():
        frame = bootstrap_metrics(example_matrix([arms], column), families, stages, settings)
        out.append(_rows(frame, frame, {**keys, "seed": seed}, 1, settings))
    if len(files_by_seed) == 1:
        out.append(out[-1].with_columns(pl.lit("all").alias("seed")))
    else:
        scores = example_matrix(list(files_by_seed.values()), column)
        frame = bootstrap_metrics(scores, families, stages, settings)
        fixed = bootstrap_metrics(scores, families, stages, settings, resample_seeds=False)
        out.append(_rows(frame, fixed, {**keys, "seed": "all"}, len(files_by_seed), settings))
    return out


def cell_groups(cells: Sequence[dict], prediction_files: Sequence[Sequence[str]]) -> dict[tuple, dict[str, list[str]]]:
    """(model, precision, buffer) -> seed -> that cell's checkpoints (`prediction_files[i]` of `cells[i]`)."""
    groups: dict[tuple, dict[str, list[str]]] = {}
    for cell, files in zip(cells, prediction_files, strict=True):
        groups.setdefault((cell["model"], cell["precision"], cell["buffer"]), {})[cell["seed"]] = list(files)
    return groups


def interval_tables(*, cells: Sequence[dict], prediction_files: Sequence[Sequence[str]],
                    families: Mapping[str, str], stages: Sequence[str], reference: str | None,
                    settings: AnalysisSettings,
                    column: str = "correct") -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """The intervals of every cell's metrics, and the paired comparisons of every precision with `reference`, on
    the per-example scores in `column` of each file.

    `cells[i]` (model, precision, buffer, seed) owns `prediction_files[i]` (its checkpoints in stage order,
    base first). Intervals: one row per (model, precision, buffer, seed, metric), seed 'all' pooling the seeds.
    Comparisons: estimate = metric of `precision` minus that of `reference` at the same model, buffer and seed.
    """
    groups = cell_groups(cells, prediction_files)
    cell_rows = []
    for (model, precision, buffer), by_seed in groups.items():
        keys = {"model": model, "precision": precision, "buffer": buffer}
        cell_rows += _per_seed_and_pooled({s: [f] for s, f in by_seed.items()}, keys, families, stages, settings,
                                          column)  # fmt: skip
    comparisons = []
    for (model, precision, buffer), by_seed in groups.items():
        if reference is None or precision == reference:
            continue
        base = groups[(model, reference, buffer)]
        if by_seed.keys() != base.keys():
            raise ValueError(f"{model} {precision} buffer {buffer}: seeds {sorted(by_seed)}, "
                             f"but {reference} has {sorted(base)}")  # fmt: skip
        keys = {"model": model, "precision": precision, "reference": reference, "buffer": buffer}
        pairs = {s: [files, base[s]] for s, files in by_seed.items()}
        comparisons += _per_seed_and_pooled(pairs, keys, families, stages, settings, column)
    intervals = pl.concat(cell_rows)
    # No comparison: the same columns, no rows (intervals' columns with `reference` after `precision`).
    comparison = (
        pl.concat(comparisons)
        if comparisons
        else intervals.clear().insert_column(2, pl.Series("reference", [], pl.String))
    )
    return intervals, comparison.rename({"estimate": "difference"})


def paired_difference(files: Mapping[str, Sequence[Sequence[str]]], families: Mapping[str, str],
                      stages: Sequence[str], settings: AnalysisSettings) -> pl.DataFrame:  # fmt: skip
    """Every summary metric of arm 0 minus arm 1 with its interval, pooled over seeds (seeds resampled when there
    are several): columns metric, estimate, ci_low, ci_high.

    `files[seed]` holds two arms' checkpoints (predictions.parquet, base first): two precisions at one buffer, or
    one precision at two buffers; either way both scored the same examples, so the pair shares every resample.
    """
    return bootstrap_metrics(example_matrix([list(arms) for arms in files.values()]), families, stages, settings)


# Power of the detection rule below: 80 %, the usual design target (Cohen).
POWER = 0.8


def _z(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (1.96 at 95 %)."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def detectable_difference(ci_low, ci_high, confidence: float):
    """The smallest true difference that a two-sided test at level 1 - `confidence` detects with 80 % power, given a
    difference's interval: (z + z_0.8) x SE, the standard error read from the interval's width as
    (ci_high - ci_low) / (2 z). At 95 %: 2.80 x SE = 0.71 x the interval's width."""
    z = _z(confidence)
    return (z + NormalDist().inv_cdf(POWER)) * (np.asarray(ci_high) - np.asarray(ci_low)) / (2 * z)


def seeds_to_detect(difference: float, *, ci_low: float, ci_high: float, examples_ci_low: float,
                    examples_ci_high: float, n_seeds: int, confidence: float) -> float | None:  # fmt: skip
    """How many seeds would make `difference` detectable (its `detectable_difference` at most `difference`).

    The squared standard error of a pooled comparison splits into the test set's share, SE_ex^2 (from the interval
    with the seeds held fixed), and the seeds' share, SE^2 - SE_ex^2, which scales like 1 / seeds: with m seeds,
    SE(m)^2 = SE_ex^2 + (SE^2 - SE_ex^2) n / m for the n seeds run. The test set's share is held as measured (the
    same test set; it can only narrow). Returns the smallest m >= 2, math.inf when the test set's share alone is too
    wide (no number of seeds suffices: more test examples are needed), None for one seed (no seed variance seen),
    NaN for a metric without an interval.
    """
    if n_seeds < 2:
        return None
    if not all(math.isfinite(v) for v in (ci_low, ci_high, examples_ci_low, examples_ci_high)):
        # A metric without a value (relative retention of a family never learned) has no power either.
        return math.nan
    z = _z(confidence)
    factor = (z + NormalDist().inv_cdf(POWER)) / (2 * z)
    total = (factor * (ci_high - ci_low)) ** 2
    examples = (factor * (examples_ci_high - examples_ci_low)) ** 2
    room = difference**2 - examples
    if room <= 0:
        return math.inf
    return float(max(2, math.ceil(max(total - examples, 0.0) * n_seeds / room)))


def with_power(comparison: pl.DataFrame, difference: float = 0.03) -> pl.DataFrame:
    """comparison.csv with two columns more: `detectable` (`detectable_difference` of each row's interval) and
    `seeds_for_3_points` (`seeds_to_detect` of `difference`, 3 points; empty for one seed, inf for never)."""
    if comparison.height == 0:
        return comparison.with_columns(pl.lit(None, pl.Float64).alias("detectable"),
                                       pl.lit(None, pl.Float64).alias("seeds_for_3_points"))  # fmt: skip
    detectable = detectable_difference(comparison["ci_low"].to_numpy(), comparison["ci_high"].to_numpy(),
                                       float(comparison["confidence"][0]))  # fmt: skip
    seeds = [seeds_to_detect(difference, ci_low=r["ci_low"], ci_high=r["ci_high"],
                             examples_ci_low=r["examples_ci_low"], examples_ci_high=r["examples_ci_high"],
                             n_seeds=r["n_seeds"], confidence=r["confidence"])
             for r in comparison.iter_rows(named=True)]  # fmt: skip
    return comparison.with_columns(pl.Series("detectable", detectable, pl.Float64),
                                   pl.Series("seeds_for_3_points", seeds, pl.Float64))  # fmt: skip
