"""Continual-learning metrics from the accuracy matrix R.

R[k][j] is the score on family (or task) j after stage k; k = 0 is the untrained base, stages are 1..T, and
family j is the one stage j trains. A family's score is the mean over its tasks. Definitions (README):

- forward accuracy of stage k: R[k][k]; its gain over the base: R[k][k] - R[0][k] (a real model starts above chance)
- retention of j after stage k > j: R[k][j] (absolute, as in the paper) and R[k][j] / R[j][j] (relative)
- BWT = mean over j < T of (R[T][j] - R[j][j])
- forgetting_j = max over k < T of R[k][j] - R[T][j]   (j < T)
- average accuracy = mean over j of R[T][j]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def family_matrix(scores: Sequence[Mapping[str, float]], families: Mapping[str, str],
                  stages: Sequence[str]) -> list[list[float]]:  # fmt: skip
    """R over families: row k = after stage k (0 = base), column j = stages[j - 1]'s family.

    `scores[k]` maps task -> score after stage k; `families` maps task -> family. Tasks of families that no
    stage trains are left out. Raises ValueError naming a stage family with no scored task.
    """
    matrix = []
    for k, by_task in enumerate(scores):
        row = []
        for family in stages:
            values = [v for t, v in by_task.items() if families[t] == family]
            if not values:
                raise ValueError(f"after stage {k}: no scored task of family {family!r}")
            row.append(sum(values) / len(values))
        matrix.append(row)
    return matrix


def cl_metrics(matrix) -> dict:
    """Forward accuracy and its gain over the base, retention, BWT, forgetting and average accuracy of an R matrix.

    `matrix` has T + 1 rows (after stages 0..T) and T columns (families of stages 1..T); column j - 1 holds
    family j. Returned stage and family indices are 1-based, as in the definitions. Values are floats; an array
    of shape (T + 1, T, *batch) (the bootstrap's resamples) gives arrays of shape `batch` instead.
    """
    if not isinstance(matrix, np.ndarray):
        rows = [len(r) for r in matrix]
        if len(rows) < 2 or any(n != len(rows) - 1 for n in rows):
            raise ValueError(f"R must have T + 1 rows of T columns, got {len(rows)} rows of {rows}")
    m = np.asarray(matrix, dtype=float)
    t = m.shape[0] - 1
    if m.ndim < 2 or t < 1 or m.shape[1] != t:
        raise ValueError(f"R must have T + 1 rows of T columns, got shape {m.shape}")

    def r(k: int, j: int) -> np.ndarray:
        return m[k, j - 1]

    def out(x: np.ndarray):
        return float(x) if np.ndim(x) == 0 else x

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        # A family that was never learned (R[j][j] = 0) has no relative retention.
        return np.divide(num, den, out=np.full(np.shape(num), math.nan), where=den > 0)

    earlier = range(1, t)
    return {
        "forward": {k: out(r(k, k)) for k in range(1, t + 1)},
        "gain": {k: out(r(k, k) - m[0, k - 1]) for k in range(1, t + 1)},
        "retention": {f"{k}/{j}": out(r(k, j)) for k in range(2, t + 1) for j in range(1, k)},
        "retention_relative": {f"{k}/{j}": out(ratio(r(k, j), r(j, j))) for k in range(2, t + 1) for j in range(1, k)},
        # One stage has no earlier family: no BWT (NaN in the shape of the batch, so resamples stack).
        "bwt": out(
            sum(r(t, j) - r(j, j) for j in earlier) / len(earlier) if t > 1 else np.full(m.shape[2:], math.nan)
        ),
        "forgetting": {j: out(m[:t, j - 1].max(axis=0) - r(t, j)) for j in earlier},
        "average_accuracy": out(sum(r(t, j) for j in range(1, t + 1)) / t),
    }


def metric_columns(metrics: Mapping, stages: Sequence[str]) -> dict:
    """The metrics of `cl_metrics` (or of a cell's metrics JSON, whose keys are strings) under the column names
    of summary.csv: forward_<family>, gain_<family>, retention_<j>_after_<k>, relative_retention_<j>_after_<k>,
    bwt, forgetting_<family>, average_accuracy."""
    columns = {}
    for k, family in enumerate(stages, start=1):
        columns[f"forward_{family}"] = _by_str(metrics["forward"])[str(k)]
    for k, family in enumerate(stages, start=1):
        columns[f"gain_{family}"] = _by_str(metrics["gain"])[str(k)]
    for key, value in _by_str(metrics["retention"]).items():
        k, j = (int(x) for x in key.split("/"))
        columns[f"retention_{stages[j - 1]}_after_{stages[k - 1]}"] = value
        columns[f"relative_retention_{stages[j - 1]}_after_{stages[k - 1]}"] = metrics["retention_relative"][key]
    columns["bwt"] = metrics["bwt"]
    for j, value in _by_str(metrics["forgetting"]).items():
        columns[f"forgetting_{stages[int(j) - 1]}"] = value
    columns["average_accuracy"] = metrics["average_accuracy"]
    return columns


def _by_str(mapping: Mapping) -> dict:
    return {str(k): v for k, v in mapping.items()}


def write_cell_metrics(*, score_files: Sequence[str], stages: Sequence[str], output: str, cell: dict) -> dict:
    """The metrics of one cell from its scores.json files, in stage order (base first), written to `output`.

    Holds the family R matrix, the per-task R (task -> list over stages 0..T) and `cl_metrics` of the family
    matrix; the README says how to read each.
    """
    from quantreplay.io import read_json, write_json

    reports = [read_json(p) for p in score_files]
    if len(reports) != len(stages) + 1:
        raise ValueError(f"{len(stages)} stages need {len(stages) + 1} score files, got {len(reports)}")
    scores = [{t: s["value"] for t, s in r["tasks"].items()} for r in reports]
    families = {t: s["family"] for t, s in reports[0]["tasks"].items()}
    matrix = family_matrix(scores, families, stages)
    result = {
        "cell": cell,
        "stages": list(stages),
        "R": matrix,
        "R_tasks": {t: [s[t] for s in scores] for t in scores[0]},
        "families": families,
        **cl_metrics(matrix),
    }
    write_json(output, result, indent=1, default=str)
    return result


def forgetting_table(metric_files: Sequence[str]) -> list[dict]:
    """One row per cell file: the first stage's family score right after it, after the last stage, the drop."""
    from quantreplay.io import read_json

    rows = []
    for path in metric_files:
        m = read_json(path)
        first, last = m["R"][1][0], m["R"][-1][0]
        rows.append(
            {
                **m["cell"],
                "family": m["stages"][0],
                "after_first": first,
                "after_last": last,
                "drop_points": 100 * (first - last),
                "bwt": m["bwt"],
                "average_accuracy": m["average_accuracy"],
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m quantreplay.metrics results/metrics/toy/fp16/seed0/buf*.json`: how much of the first
    stage's family each cell kept."""
    import sys

    files = list(argv if argv is not None else sys.argv[1:])
    if not files:
        sys.exit("usage: python -m quantreplay.metrics results/metrics/<model>/<precision>/seed<s>/buf<b>.json ...")
    header = ("precision", "seed", "buffer", "family", "after 1", "after T", "drop", "BWT")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 4, 7, 6, 8, 8, 6, 7), strict=True)))
    for r in forgetting_table(files):
        print(
            f"{r['precision']:>9} {r['seed']:>4} {r['buffer']:>7} {r['family']:>6} {r['after_first']:8.3f} "
            f"{r['after_last']:8.3f} {r['drop_points']:6.1f} {r['bwt']:7.3f}"
        )


if __name__ == "__main__":
    main()
