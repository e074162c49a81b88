"""Bootstrap intervals and paired comparisons on per-example scores with known properties."""

import numpy as np
import polars as pl
import pytest

from quantreplay.intervals import (
    AnalysisSettings,
    bootstrap_metrics,
    example_matrix,
    read_example_scores,
)
from quantreplay.metrics import cl_metrics, metric_columns

FAMILIES = {"boolq": "nlu", "piqa": "nlu", "arithmetic": "math"}
STAGES = ["nlu", "math"]
SETTINGS = AnalysisSettings(bootstrap_resamples=1000)


def _draw(rng, probabilities: list[dict[str, float]], n: int) -> dict[str, np.ndarray]:
    """Per task, (checkpoints, n) Bernoulli scores with the given probability per checkpoint."""
    return {t: np.stack([rng.random(n) < p[t] for p in probabilities]).astype(float) for t in FAMILIES}


# Checkpoints: base, after nlu, after math.
PROBABILITIES = [
    {"boolq": 0.5, "piqa": 0.5, "arithmetic": 0.05},
    {"boolq": 0.9, "piqa": 0.8, "arithmetic": 0.05},
    {"boolq": 0.6, "piqa": 0.6, "arithmetic": 0.4},
]


def _cell(rng, n=200) -> dict[str, np.ndarray]:
    """One seed, one arm: shape (1, 1, checkpoints, n) per task."""
    return {t: a[None, None] for t, a in _draw(rng, PROBABILITIES, n).items()}


def _width(frame: pl.DataFrame, metric: str) -> float:
    row = frame.filter(pl.col("metric") == metric).row(0, named=True)
    return row["ci_high"] - row["ci_low"]


def test_estimate_is_the_metric_of_the_means_and_the_interval_matches_the_binomial():
    scores = _cell(np.random.default_rng(0), n=400)
    frame = bootstrap_metrics(scores, FAMILIES, STAGES, SETTINGS)
    means = {t: a[0, 0].mean(axis=-1) for t, a in scores.items()}
    family = np.stack([(means["boolq"] + means["piqa"]) / 2, means["arithmetic"]], axis=1)
    expected = metric_columns(cl_metrics(family.tolist()), STAGES)
    assert frame["metric"].to_list() == list(expected)
    for metric, value in expected.items():
        row = frame.filter(pl.col("metric") == metric).row(0, named=True)
        assert row["estimate"] == pytest.approx(value)
        assert row["ci_low"] <= value <= row["ci_high"]
    # forward_math is one task's accuracy: the 95 % interval is about +-1.96 standard errors.
    p = means["arithmetic"][2]
    assert _width(frame, "forward_math") == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 400), rel=0.2)


def test_same_generator_seed_same_intervals_and_another_seed_differs():
    scores = _cell(np.random.default_rng(1))
    a = bootstrap_metrics(scores, FAMILIES, STAGES, SETTINGS)
    b = bootstrap_metrics(scores, FAMILIES, STAGES, SETTINGS)
    c = bootstrap_metrics(scores, FAMILIES, STAGES, AnalysisSettings(bootstrap_resamples=1000, bootstrap_seed=1))
    assert a.equals(b) and not a.equals(c)


def test_pairing_by_example_makes_a_small_difference_visible():
    """One precision solves 10 % more of the math problems the other fails: the paired difference's interval
    excludes zero and is far narrower than either metric's own interval."""
    rng = np.random.default_rng(2)
    reference = _cell(rng, n=300)
    other = {t: a.copy() for t, a in reference.items()}
    flip = rng.random(300) < 0.10
    other["arithmetic"][0, 0, 2, flip] = 1.0  # the other precision solves a few more math problems
    paired = {t: np.concatenate([other[t], reference[t]], axis=1) for t in FAMILIES}
    difference = bootstrap_metrics(paired, FAMILIES, STAGES, SETTINGS)
    alone = bootstrap_metrics(reference, FAMILIES, STAGES, SETTINGS)
    row = difference.filter(pl.col("metric") == "forward_math").row(0, named=True)
    assert row["estimate"] > 0 and row["ci_low"] > 0
    assert _width(difference, "forward_math") < 0.5 * _width(alone, "forward_math")
    # Identical arms differ by exactly zero in every resample.
    same = bootstrap_metrics({t: np.concatenate([reference[t]] * 2, axis=1) for t in FAMILIES}, FAMILIES, STAGES,
                             SETTINGS)  # fmt: skip
    finite = same.filter(pl.col("estimate").is_not_nan())
    assert (finite["estimate"] == 0).all() and (finite["ci_low"] == 0).all() and (finite["ci_high"] == 0).all()


def _seeds(rng, n_seeds: int, n: int = 200, seed_sd: float = 0.5) -> dict[str, np.ndarray]:
    """Scores of `n_seeds` training runs, shape (seeds, 1, checkpoints, n) per task: each example has a difficulty
    shared by every run, each run and checkpoint a shift of its own (training noise), on the logit scale."""
    logits = [{t: np.log(p[t] / (1 - p[t])) for t in FAMILIES} for p in PROBABILITIES]
    difficulty = {t: rng.normal(0, 1.5, n) for t in FAMILIES}
    shift = rng.normal(0, seed_sd, (n_seeds, len(logits)))
    out = {}
    for t in FAMILIES:
        p = 1 / (1 + np.exp(-(np.array([[lg[t] for lg in logits]]) + shift)[..., None] + difficulty[t]))
        out[t] = (rng.random(p.shape) < p).astype(float)[:, None]
    return out


def test_more_seeds_narrow_the_interval():
    """The seeds' share of the interval shrinks like 1/sqrt(seeds): over repeated studies, eight runs give clearly
    narrower intervals than two (one pair of runs may happen to agree, so the widths are averaged)."""
    rng = np.random.default_rng(10)
    metrics = ("retention_nlu_after_math", "average_accuracy")
    widths = {2: np.zeros(len(metrics)), 8: np.zeros(len(metrics))}
    for _ in range(8):
        for n_seeds in widths:
            frame = bootstrap_metrics(_seeds(rng, n_seeds, n=100), FAMILIES, STAGES, SETTINGS)
            widths[n_seeds] += [_width(frame, m) for m in metrics]
    assert (widths[8] < 0.9 * widths[2]).all(), widths


def test_holding_seeds_fixed_the_mean_over_seeds_has_a_narrower_interval():
    """Runs that disagree example by example: the mean over four of them is measured more precisely on the same test
    set than one run is (test-set sampling alone, the seeds held fixed)."""
    rng = np.random.default_rng(3)
    seeds = [_cell(rng, n=200) for _ in range(4)]
    one = bootstrap_metrics(seeds[0], FAMILIES, STAGES, SETTINGS)
    four = bootstrap_metrics({t: np.concatenate([s[t] for s in seeds]) for t in FAMILIES}, FAMILIES, STAGES,
                             SETTINGS, resample_seeds=False)  # fmt: skip
    for metric in ("forward_nlu", "retention_nlu_after_math", "average_accuracy"):
        assert _width(four, metric) < 0.7 * _width(one, metric)


def test_seeds_that_disagree_widen_the_pooled_interval():
    """Two seeds that learned nlu to 95 % and to 55 %: resampling the seeds puts the training noise in the
    interval, which resampling examples alone would hide."""
    rng = np.random.default_rng(4)
    good = _cell(rng, n=400)
    worse = [PROBABILITIES[0], {**PROBABILITIES[1], "boolq": 0.55, "piqa": 0.55}, PROBABILITIES[2]]
    bad = {t: a[None, None] for t, a in _draw(rng, worse, 400).items()}
    pooled = bootstrap_metrics({t: np.concatenate([good[t], bad[t]]) for t in FAMILIES}, FAMILIES, STAGES, SETTINGS)
    row = pooled.filter(pl.col("metric") == "forward_nlu").row(0, named=True)
    assert row["ci_low"] < 0.65 and row["ci_high"] > 0.8
    assert _width(pooled, "forward_nlu") > 3 * _width(bootstrap_metrics(good, FAMILIES, STAGES, SETTINGS),
                                                      "forward_nlu")  # fmt: skip


def _write_predictions(path, ids_by_task: dict[str, list[str]], seed: int) -> str:
    rng = np.random.default_rng(seed)
    rows = [{"task": t, "id": i, "correct": bool(rng.random() < 0.5)} for t, ids in ids_by_task.items() for i in ids]
    pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(path)
    return str(path)


def test_examples_align_by_id_and_a_mismatch_names_the_file(tmp_path):
    ids = {"boolq": ["b2", "b1", "b3"], "arithmetic": ["a1", "a2"]}
    files = [_write_predictions(tmp_path / f"{k}.parquet", ids, seed=k) for k in range(3)]
    matrix = example_matrix([[files]])
    assert matrix["boolq"].shape == (1, 1, 3, 3) and matrix["arithmetic"].shape == (1, 1, 3, 2)
    for k, path in enumerate(files):
        by_id = dict(pl.read_parquet(path).filter(pl.col("task") == "boolq").select("id", "correct").iter_rows())
        assert matrix["boolq"][0, 0, k].tolist() == [float(by_id[i]) for i in ("b1", "b2", "b3")]
    other = _write_predictions(tmp_path / "other.parquet", {**ids, "boolq": ["b1", "b2", "b4"]}, seed=9)
    with pytest.raises(ValueError, match="other.parquet: task 'boolq' scored other examples"):
        example_matrix([[[files[0], other, files[2]]]])
    read_example_scores.cache_clear()


def test_a_task_with_one_example_is_refused():
    scores = {t: a[..., :1] for t, a in _cell(np.random.default_rng(5)).items()}
    with pytest.raises(ValueError, match="task 'boolq': 1 test example"):
        bootstrap_metrics(scores, FAMILIES, STAGES, SETTINGS)
