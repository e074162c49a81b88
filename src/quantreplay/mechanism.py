"""What the control arms say about why a quantized base forgets differently (mechanism.csv, .md, .html).

For the reference precision (fp16), int8, nf4 and every control arm of the grid (quantreplay.controls), at the
run's no-replay buffer: the first family's retention after the last stage and the last stage's forward accuracy,
each with its interval, its paired difference from the reference, and for an arm its paired difference from the
real precision whose error it borrows (all from the paired bootstrap of quantreplay.intervals, via
quantreplay.findings.Run). An arm *reproduces* its real precision on a metric when its difference from the real
precision's is within noise and its difference from the reference lies on the same side of 0 as the real one's; it
*fails to* when its difference from the real precision's is resolved.

The text below the table reads these outcomes as the issue that introduced the arms proposes: fakequant reproduces
but the noise arms do not, the effect comes from the particular changed weights; noise reproduces, the size of the
error is enough; permuted reproduces but noise does not, the error's values matter but not where they sit;
stepnoise reproduces, training-time noise (the regularization the paper names) is enough; fakequant does not
reproduce, the real arm's arithmetic matters beyond its weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from quantreplay.controls import CONTROL_ARMS
from quantreplay.findings import QUANTIZED, Run

MECHANISM_COLUMNS = ("model", "precision", "arm_keeps", "buffer", "metric", "estimate", "ci_low", "ci_high",
                     "minus_reference", "minus_reference_low", "minus_reference_high", "minus_scheme",
                     "minus_scheme_low", "minus_scheme_high", "outcome")  # fmt: skip
ABOVE, BELOW, NOISE = "above 0", "below 0", "within noise"
REPRODUCES, FAILS, UNRESOLVED = "reproduces", "does not reproduce", "not resolved"


def side(low: float, high: float) -> str:
    """Where an interval lies with respect to 0."""
    return ABOVE if low > 0 else BELOW if high < 0 else NOISE


def mechanism_metrics(stages: Sequence[str]) -> list[str]:
    """The first family's retention after the last stage, and the last stage's forward accuracy."""
    first, last = stages[0], stages[-1]
    return [f"retention_{first}_after_{last}", f"forward_{last}"]


def _level(run: Run, precision: str, buffer: str, metric: str) -> tuple[float, float, float]:
    row = run.intervals.filter(pl.col("model") == run.model, pl.col("precision") == precision,
                               pl.col("buffer") == buffer, pl.col("seed") == "all",
                               pl.col("metric") == metric).row(0, named=True)  # fmt: skip
    return row["estimate"], row["ci_low"], row["ci_high"]


def mechanism_rows(run: Run, reference: str) -> list[dict]:
    """The mechanism table of one model's run (columns MECHANISM_COLUMNS but model)."""
    buffer = run.no_replay()
    present = {p for p, b in run.groups if b == buffer}
    shown = [p for p in (reference, *QUANTIZED, *CONTROL_ARMS) if p in present]
    rows = []
    for precision in shown:
        arm = CONTROL_ARMS.get(precision)
        for metric in mechanism_metrics(run.stages):
            row = {"precision": precision, "arm_keeps": arm.keeps if arm else None, "buffer": buffer, "metric": metric}
            row.update(zip(("estimate", "ci_low", "ci_high"), _level(run, precision, buffer, metric), strict=True))
            if precision != reference:
                diff = run.pair((precision, buffer), (reference, buffer))[metric]
                row.update(zip(("minus_reference", "minus_reference_low", "minus_reference_high"), diff, strict=True))
            if arm and arm.scheme in present:
                real = run.pair((arm.scheme, buffer), (reference, buffer))[metric]
                own = run.pair((precision, buffer), (arm.scheme, buffer))[metric]
                row.update(zip(("minus_scheme", "minus_scheme_low", "minus_scheme_high"), own, strict=True))
                row["outcome"] = outcome(real, own, diff)
            rows.append(row)
    return rows


def outcome(real: tuple, own: tuple, arm: tuple) -> str:
    """Whether an arm reproduces its real precision (module docstring): `real` and `arm` are differences from the
    reference, `own` the arm minus the real precision, each (estimate, low, high)."""
    if side(*own[1:]) != NOISE:
        return FAILS
    if side(*real[1:]) != NOISE and side(*arm[1:]) == side(*real[1:]):
        return REPRODUCES
    return UNRESOLVED


def _points(low: float, high: float, estimate: float) -> str:
    return f"{100 * estimate:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def reading(rows: Sequence[dict], reference: str) -> list[str]:
    """The text under the table: per scheme and metric, what the run's arms say (module docstring)."""
    lines = []
    by = {(r["precision"], r["metric"]): r for r in rows}
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    if not any(precision in CONTROL_ARMS for precision, _ in by):
        return ["no control arm in this grid, so nothing here says why int8 or nf4 differ from "
                f"{reference} (config/mechanism.yaml adds them)."]  # fmt: skip
    for scheme in QUANTIZED:
        arms = [a for a, spec in CONTROL_ARMS.items() if spec.scheme == scheme and (a, metrics[0]) in by]
        if not arms:
            continue
        if (scheme, metrics[0]) not in by:
            lines.append(f"{', '.join(arms)}: the grid has no {scheme} to compare them with.")
            continue
        for metric in metrics:
            real = by[scheme, metric]
            effect = side(real["minus_reference_low"], real["minus_reference_high"])
            diff = _points(real["minus_reference_low"], real["minus_reference_high"], real["minus_reference"])
            if effect == NOISE:
                lines.append(f"{metric}: {scheme} - {reference} = {diff} points, within noise at this power: no "
                             f"{scheme} effect for the arms to explain.")  # fmt: skip
                continue
            outcomes = {a: by[a, metric]["outcome"] for a in arms}
            told = "; ".join(f"{a} {o}" for a, o in outcomes.items())
            lines.append(f"{metric}: {scheme} - {reference} = {diff} points ({effect}); {told}. "
                         + _interpretation(scheme, outcomes))  # fmt: skip
    return lines


def _interpretation(scheme: str, outcomes: Mapping[str, str]) -> str:
    """The reading of one scheme's arm outcomes."""

    def did(kind: str) -> str | None:
        return outcomes.get(f"{kind}-{scheme}")

    noise_like = [k for k in ("noise", "stepnoise") if did(k) == REPRODUCES]
    said = []
    if did("fakequant") == REPRODUCES and did("noise") == FAILS:
        said.append("the effect comes from the particular weights quantization yields, not from an error of its size")
    if did("fakequant") == FAILS:
        said.append(f"{scheme}'s arithmetic (activation rounding, the outlier path, the compute dtype) matters "
                    "beyond its weights")  # fmt: skip
    if did("noise") == REPRODUCES:
        said.append("an unstructured error of the same size per block is enough: the size of the change, not its "
                    "values")  # fmt: skip
    if did("permuted") == REPRODUCES and did("noise") != REPRODUCES:
        said.append("the error's values matter but not where they sit")
    if did("stepnoise") == REPRODUCES:
        said.append("noise drawn anew at every step reproduces it: the regularization reading is supported")
    elif did("stepnoise") == FAILS and (did("fakequant") == REPRODUCES or "noise" in noise_like):
        said.append("a fixed change of the weights reproduces it but training-time noise does not: the "
                    "regularization reading is not supported")  # fmt: skip
    if not said:
        return "No reading is resolved at this power."
    return "Reading: " + "; ".join(said) + "."


def mechanism_table(run_by_model: Mapping[str, Run], reference: str | None) -> pl.DataFrame:
    """mechanism.csv: `mechanism_rows` of every model (empty without a reference precision)."""
    rows = []
    if reference is not None:
        rows = [
            {"model": model, **row} for model, run in run_by_model.items() for row in mechanism_rows(run, reference)
        ]
    schema = {c: pl.Float64 for c in MECHANISM_COLUMNS} | {
        c: pl.String for c in ("model", "precision", "arm_keeps", "buffer", "metric", "outcome")
    }
    return pl.DataFrame([{c: r.get(c) for c in MECHANISM_COLUMNS} for r in rows], schema=schema)


def mechanism_sections(table: pl.DataFrame, reference: str | None, confidence: float) -> list:
    """mechanism.md and .html as sections (quantreplay.aggregate.markdown): the table, then the reading."""
    level = f"{100 * confidence:g} %"
    if reference is None or table.is_empty():
        return [("No mechanism table: the grid has no reference precision to compare the arms with.", ["-"], [], [])]
    caption = (f"Control arms beside int8, nf4 and {reference} at buffer {table['buffer'][0]}: each precision's own "
               f"value and its paired differences from {reference} and (for an arm) from the real precision whose "
               f"error it borrows, in percentage points [{level} interval over test examples and seeds].")  # fmt: skip
    header = ["model", "precision", "what it keeps", "metric", "value (%)", f"minus {reference}",
              "minus its real precision", "outcome"]  # fmt: skip
    rows = []
    for r in table.iter_rows(named=True):
        value = f"{100 * r['estimate']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
        minus_ref = (
            ""
            if r["minus_reference"] is None
            else _points(r["minus_reference_low"], r["minus_reference_high"], r["minus_reference"])
        )
        minus_own = (
            ""
            if r["minus_scheme"] is None
            else _points(r["minus_scheme_low"], r["minus_scheme_high"], r["minus_scheme"])
        )
        rows.append([r["model"], r["precision"], r["arm_keeps"] or "", r["metric"], value, minus_ref, minus_own,
                     r["outcome"] or ""])  # fmt: skip
    notes = []
    for model in dict.fromkeys(table["model"]):
        part = [r for r in table.iter_rows(named=True) if r["model"] == model]
        notes += [f"{model}: {line}" for line in reading(part, reference)]
    return [(caption, header, rows, notes)]
