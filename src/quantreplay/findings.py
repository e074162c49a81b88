"""A verdict on each of the paper's headline claims, from this run's own numbers, and the run's power.

The paper (arXiv 2512.18934, Llama-3.1-8B-Instruct) makes five headline claims; each becomes one row of
findings.csv: the claim in the paper's words and numbers, the same quantity measured here (on the model this run
trained), its interval over test examples and seeds (the paired bootstrap of quantreplay.intervals), and a verdict.

Every claim but C5 is about signed paired differences (one arm minus another, on the same examples and seeds),
each of which the claim says is positive. The verdict rule, the same for C1-C4:

- supported: every difference's interval lies entirely above 0;
- contradicted: some difference's interval lies entirely below 0;
- not resolved at this power: otherwise.

Requiring every pair to clear 0 at the interval's level is an intersection-union test, valid at that level without
a correction for the number of pairs. The row's estimate and interval are the deciding pair's: the one with the
lowest interval (for a contradiction, the lowest upper end). C5 compares the smallest buffer each precision needs;
its rule is in `_c5`. A claim the grid cannot test (no fp16, no 0.1 % buffer, one stage) is a row whose verdict says
what is missing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl

from quantreplay.bases import read_base
from quantreplay.controls import is_control_arm
from quantreplay.intervals import AnalysisSettings, detectable_difference, paired_difference
from quantreplay.io import read_json

SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "not resolved at this power"
VERDICTS = (SUPPORTED, CONTRADICTED, UNRESOLVED)
QUANTIZED = ("int8", "nf4")
# The paper's buffers that claims name: 0.1 % (C3) and 20 %, the largest (C5).
SMALL_BUFFER, FULL_BUFFER = 0.001, 0.2
# C5: a buffer "keeps the same retention" when within 2 points of the 20 % buffer's.
WITHIN = 0.02
FINDINGS_COLUMNS = ("claim", "paper", "measured", "model", "seeds", "estimate", "ci_low", "ci_high", "unit",
                    "detectable", "verdict", "rule", "detail")  # fmt: skip

PAPER = {
    "C1": "FP16 is best on the first task: 74.44 % NLU accuracy after stage 1 (NLU)",
    "C2": "INT8 and INT4 (NF4) beat FP16 on the last task's forward accuracy, by 8-15 points "
    "(code: INT4 ~40 % vs FP16 ~20 %)",
    "C3": "a 0.1 % replay buffer lifts NLU retention after Math from ~45 % to ~65 %, at every precision",
    "C4": "INT8 has the best balance of learning new tasks and retaining old ones",
    "C5": "quantized bases need less replay than FP16 for the same retention",
}
RULE_C14 = (
    "supported: every paired difference's interval lies entirely above 0; contradicted: some difference's "
    "interval lies entirely below 0; otherwise not resolved at this power"
)
RULE_C5 = (
    "needed buffer = smallest buffer whose first-family retention after the last stage is within 2 points of the "
    "20 % buffer's (paired difference; range: interval's high end >= -2 .. low end >= -2); supported: every "
    "quantized range below fp16's; contradicted: some quantized range above fp16's; else not resolved"
)

# The build records beside base.json that count a base's parameters (bases.toy's pretrain.json, bases.gguf's
# convert.json). Kept here, not in quantreplay.bases, whose code every training and evaluation job hashes.
PARAMETER_RECORDS = ("pretrain.json", "convert.json")


def describe_base(model: str, model_dir: str | os.PathLike) -> str:
    """The model a run measured, in words: its config name, the Hub id or path of a hub base, and its parameter
    count where the folder's build record holds it (e.g. 'toy (1.6M parameters)')."""
    info = read_base(model_dir)
    parts = [info["source"]] if info["kind"] == "hub" else []
    for name in PARAMETER_RECORDS:
        record = Path(model_dir) / name
        if record.is_file() and isinstance(count := read_json(record).get("parameters"), int):
            scale, unit = next((s, u) for s, u in ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1, "")) if count >= s)
            parts.append(f"{count / scale:.3g}{unit} parameters")
            break
    return f"{model} ({', '.join(parts)})" if parts else model


# A pair's every metric: metric -> (estimate, ci_low, ci_high).
Pair = dict[str, tuple[float, float, float]]


def _fraction(buffer: str) -> float | None:
    return None if buffer.startswith("n") else float(buffer)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _interval(low: float, high: float, fmt: Callable[[float], str] = _pts) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _buffer_label(fraction: float) -> str:
    return f"{100 * fraction:g} %"


def directional(pairs: Mapping[str, tuple[float, float, float]]) -> tuple[str, str]:
    """The verdict on 'every one of these differences is positive' (label -> (estimate, ci_low, ci_high)) and the
    label of the deciding pair (module docstring)."""
    if all(lo > 0 for _, lo, _ in pairs.values()):
        return SUPPORTED, min(pairs, key=lambda k: pairs[k][1])
    if any(hi < 0 for _, _, hi in pairs.values()):
        return CONTRADICTED, min(pairs, key=lambda k: pairs[k][2])
    return UNRESOLVED, min(pairs, key=lambda k: pairs[k][1])


def pair_text(label: str, estimate: float, low: float, high: float) -> str:
    """One paired difference in a C1-C4 row's detail: "int8 - fp16 +10.5 [+3.0, +17.7]" (points)."""
    return f"{label} {_pts(estimate)} {_interval(low, high)}"


# pair_text's format, read back.
_DETAIL_PAIR = re.compile(r"(?P<label>.+?) (?P<e>[+-]\d+(?:\.\d+)?) \[(?P<lo>[+-]\d+(?:\.\d+)?), "
                          r"(?P<hi>[+-]\d+(?:\.\d+)?)\]")  # fmt: skip


def detail_pairs(detail: str | None) -> dict[str, tuple[float, float, float]]:
    """The paired differences in a C1-C4 row's `detail` (label -> (estimate, ci_low, ci_high), fractions, to the
    detail's 0.1 point), skipping its other parts (each arm's own level)."""
    pairs = {}
    for part in (detail or "").split("; "):
        if match := _DETAIL_PAIR.fullmatch(part):
            pairs[match["label"]] = tuple(float(match[k]) / 100 for k in ("e", "lo", "hi"))
    return pairs


class Run:
    """The grid of one model, and paired differences between its cells, each bootstrapped once."""

    def __init__(self, model: str, groups: Mapping[tuple, Mapping[str, Sequence[str]]], intervals: pl.DataFrame,
                 families: Mapping[str, str], stages: Sequence[str], settings: AnalysisSettings) -> None:  # fmt: skip
        self.model, self.families, self.stages, self.settings = model, families, list(stages), settings
        self.intervals = intervals
        self.groups = {(p, b): seeds for (m, p, b), seeds in groups.items() if m == model}
        # The claims are about the paper's precisions; the control arms answer why (the mechanism table).
        self.precisions = list(dict.fromkeys(p for p, _ in self.groups if not is_control_arm(p)))
        buffers = list(dict.fromkeys(b for _, b in self.groups))
        self.fractions = sorted((f, b) for b in buffers if (f := _fraction(b)) is not None)
        self.seeds = len(next(iter(self.groups.values())))
        self._pairs: dict[tuple, Pair] = {}

    def buffer(self, fraction: float) -> str | None:
        """The grid's label of a fractional buffer, or None."""
        return next((b for f, b in self.fractions if math.isclose(f, fraction)), None)

    def no_replay(self) -> str:
        """Buffer 0 where the grid has it, else its smallest fractional buffer (else its first)."""
        return self.fractions[0][1] if self.fractions else next(iter(self.groups))[1]

    def pair(self, a: tuple[str, str], b: tuple[str, str]) -> Pair:
        """Every metric of cell group `a` (precision, buffer) minus that of `b`, paired by example and seed."""
        if (b, a) in self._pairs:
            # The same resamples, negated: b - a's percentile interval is a - b's, mirrored.
            return {m: (0.0 - e, 0.0 - hi, 0.0 - lo) for m, (e, lo, hi) in self._pairs[b, a].items()}
        if (a, b) not in self._pairs:
            first, second = self.groups[a], self.groups[b]
            files = {seed: [first[seed], second[seed]] for seed in first}
            frame = paired_difference(files, self.families, self.stages, self.settings)
            self._pairs[a, b] = {r[0]: (r[1], r[2], r[3]) for r in frame.iter_rows()}
        return self._pairs[a, b]

    def level(self, precision: str, buffer: str, metric: str, *, name: bool = True) -> str:
        """One cell group's own value of `metric` with its interval, pooled over seeds, in percent."""
        row = self.intervals.filter(pl.col("model") == self.model, pl.col("precision") == precision,
                                    pl.col("buffer") == buffer, pl.col("seed") == "all",
                                    pl.col("metric") == metric).row(0, named=True)  # fmt: skip
        value = f"{_pct(row['estimate'])} % {_interval(row['ci_low'], row['ci_high'], _pct)}"
        return f"{precision} {value}" if name else value

    def row(self, claim: str, measured: str, **fields) -> dict:
        return {"claim": claim, "paper": PAPER[claim], "measured": measured, "model": self.model,
                "seeds": self.seeds, **fields}  # fmt: skip

    def untestable(self, claim: str, measured: str, missing: str) -> dict:
        return self.row(claim, measured, verdict=f"not testable: the grid has {missing}", rule="", detail="")

    def directional_row(self, claim: str, measured: str, metric: str, pairs: Mapping[str, tuple], rule: str,
                        extra: str = "") -> dict:  # fmt: skip
        """A C1-C4 row: `pairs` maps a label ('fp16 - int8') to (arm a, arm b) cell groups."""
        values = {label: self.pair(a, b)[metric] for label, (a, b) in pairs.items()}
        verdict, decisive = directional(values)
        estimate, low, high = values[decisive]
        detail = "; ".join(pair_text(label, *value) for label, value in values.items())
        return self.row(claim, measured, estimate=estimate, ci_low=low, ci_high=high, unit=f"points ({decisive})",
                        detectable=float(detectable_difference(low, high, self.settings.confidence)),
                        verdict=verdict, rule=rule, detail=(extra + "; " if extra else "") + detail)  # fmt: skip


def _c1(run: Run) -> dict:
    first = run.stages[0]
    measured = f"forward accuracy of stage 1 ({first}), fp16 minus every other precision"
    if "fp16" not in run.precisions:
        return run.untestable("C1", measured, "no fp16")
    others = [p for p in run.precisions if p != "fp16"]
    if not others:
        return run.untestable("C1", measured, "no precision besides fp16")
    buffer = run.no_replay()
    pairs = {f"fp16 - {p}": (("fp16", buffer), (p, buffer)) for p in others}
    extra = "; ".join(run.level(p, buffer, f"forward_{first}") for p in run.precisions)
    return run.directional_row("C1", measured, f"forward_{first}", pairs, RULE_C14, extra=extra)


def _c2(run: Run) -> dict:
    last = run.stages[-1]
    buffer = run.no_replay()
    quantized = [p for p in QUANTIZED if p in run.precisions]
    measured = (f"forward accuracy of the last stage ({last}) at buffer {buffer}, "
                f"{' and '.join(quantized or QUANTIZED)} minus fp16")  # fmt: skip
    if len(run.stages) < 2:
        return run.untestable("C2", measured, "one stage only")
    if "fp16" not in run.precisions or not quantized:
        return run.untestable("C2", measured, "no fp16" if quantized else "no int8 or nf4")
    pairs = {f"{p} - fp16": ((p, buffer), ("fp16", buffer)) for p in quantized}
    return run.directional_row("C2", measured, f"forward_{last}", pairs, RULE_C14)


def _c3(run: Run) -> dict:
    first, second = run.stages[0], run.stages[1] if len(run.stages) > 1 else "stage 2"
    metric = f"retention_{first}_after_{second}"
    measured = f"{first} accuracy after {second}, buffer 0.1 % minus buffer 0, per precision"
    if len(run.stages) < 2:
        return run.untestable("C3", measured, "one stage only")
    small, none = run.buffer(SMALL_BUFFER), run.buffer(0.0)
    if small is None or none is None:
        return run.untestable("C3", measured, "no 0.1 % buffer" if none is not None else "no buffer 0")
    pairs = {p: ((p, small), (p, none)) for p in run.precisions}
    extra = "; ".join(f"{run.level(p, none, metric)} -> {run.level(p, small, metric, name=False)}"
                      for p in run.precisions)  # fmt: skip
    return run.directional_row("C3", measured, metric, pairs, RULE_C14, extra=extra)


def _c4(run: Run) -> dict:
    buffer = run.no_replay()
    measured = (f"average accuracy after the last stage (mean over families of R[T][j]) at buffer {buffer}, int8 "
                "minus every other precision")  # fmt: skip
    if len(run.stages) < 2:
        return run.untestable("C4", measured, "one stage only (no retention to balance)")
    others = [p for p in run.precisions if p != "int8"]
    if "int8" not in run.precisions or not others:
        return run.untestable("C4", measured, "no int8" if others else "no precision besides int8")
    pairs = {f"int8 - {p}": (("int8", buffer), (p, buffer)) for p in others}
    return run.directional_row("C4", measured, "average_accuracy", pairs, RULE_C14)


def needed_buffer(ladder: Sequence[tuple[float, tuple[float, float, float]]]) -> tuple[float, float, float]:
    """(estimate, low, high) of the smallest buffer whose retention is within 2 points of the full buffer's, from
    `ladder`: (buffer fraction, (difference from the full buffer, ci_low, ci_high)) in increasing buffer order, the
    full buffer last (difference 0). Estimate: the first whose difference is >= -2 points; high: the first whose
    interval lies above -2 points (surely within); low: the first whose interval reaches -2 points (not surely
    outside)."""

    def first(condition) -> float:
        return next(f for f, d in ladder if condition(d))

    tolerance = -WITHIN - 1e-12
    return first(lambda d: d[0] >= tolerance), first(lambda d: d[2] >= tolerance), first(lambda d: d[1] >= tolerance)


def _c5(run: Run) -> dict:
    """Each precision's needed buffer (`needed_buffer`, from retention(b) - retention(20 %) paired within the
    precision), with its range; supported when every quantized range lies entirely below fp16's, contradicted when
    some quantized range lies entirely above fp16's, otherwise not resolved."""
    first, last = run.stages[0], run.stages[-1]
    metric = f"retention_{first}_after_{last}"
    measured = (f"smallest buffer keeping {first} accuracy after {last} within 2 points of the 20 % buffer's, per "
                "precision")  # fmt: skip
    if len(run.stages) < 2:
        return run.untestable("C5", measured, "one stage only")
    full = run.buffer(FULL_BUFFER)
    quantized = [p for p in QUANTIZED if p in run.precisions]
    if full is None:
        return run.untestable("C5", measured, "no 20 % buffer")
    if "fp16" not in run.precisions or not quantized:
        return run.untestable("C5", measured, "no fp16" if quantized else "no int8 or nf4")
    ladder_buffers = [(f, b) for f, b in run.fractions if f <= FULL_BUFFER]
    needed = {}
    for p in ["fp16", *quantized]:
        ladder = [
            (f, run.pair((p, b), (p, full))[metric] if b != full else (0.0, 0.0, 0.0)) for f, b in ladder_buffers
        ]
        needed[p] = needed_buffer(ladder)
    low_fp16, high_fp16 = needed["fp16"][1], needed["fp16"][2]
    if all(needed[q][2] < low_fp16 for q in quantized):
        verdict, decisive = SUPPORTED, max(quantized, key=lambda q: needed[q][2])
    elif any(needed[q][1] > high_fp16 for q in quantized):
        verdict, decisive = CONTRADICTED, max(quantized, key=lambda q: needed[q][1])
    else:
        verdict, decisive = UNRESOLVED, max(quantized, key=lambda q: needed[q][2])
    estimate, low, high = needed[decisive]
    detail = "; ".join(f"{p} needs {_buffer_label(e)} [{_buffer_label(lo)}, {_buffer_label(hi)}]"
                       for p, (e, lo, hi) in needed.items())  # fmt: skip
    return run.row("C5", measured, estimate=estimate, ci_low=low, ci_high=high, unit=f"buffer ({decisive})",
                   detectable=None, verdict=verdict, rule=RULE_C5, detail=detail)  # fmt: skip


CLAIMS = (_c1, _c2, _c3, _c4, _c5)


def findings_table(*, groups: Mapping[tuple, Mapping[str, Sequence[str]]], intervals: pl.DataFrame,
                   families: Mapping[str, str], stages: Sequence[str], settings: AnalysisSettings,
                   models: Mapping[str, str]) -> pl.DataFrame:  # fmt: skip
    """One row per claim (C1-C5) and model: findings.csv (columns FINDINGS_COLUMNS).

    `groups` is `quantreplay.intervals.cell_groups` of the grid: (model, precision, buffer) -> seed -> the cell's
    predictions.parquet files, base first; `intervals` its intervals.csv (each cell's own levels, in `detail`).
    `models` maps each model to how the table names it (`describe_base`). estimate, ci_low and
    ci_high are fractions: differences of accuracies (C1-C4) or a buffer (C5); `detectable` is the deciding
    interval's smallest detectable difference (`quantreplay.intervals.detectable_difference`).
    """
    rows = []
    for model, described in models.items():
        run = Run(model, groups, intervals, families, stages, settings)
        rows += [{**claim(run), "model": described} for claim in CLAIMS]
    schema = (
        {c: pl.String for c in FINDINGS_COLUMNS}
        | {"seeds": pl.Int64}
        | {c: pl.Float64 for c in ("estimate", "ci_low", "ci_high", "detectable")}
    )
    return pl.DataFrame([{c: r.get(c) for c in FINDINGS_COLUMNS} for r in rows], schema=schema)


# A section of findings.md and its HTML page: a caption, a table's header and rows, and lines of notes below it.
Section = tuple[str, list[str], list[list[str]], list[str]]


def _estimate(row: dict) -> str:
    if row["estimate"] is None:
        return ""
    unit, deciding = row["unit"].split(" (", 1)
    if unit == "buffer":
        low, high = (_buffer_label(row[c]) for c in ("ci_low", "ci_high"))
        return f"{_buffer_label(row['estimate'])} [{low}, {high}] ({deciding}"
    return f"{_pts(row['estimate'])} {_interval(row['ci_low'], row['ci_high'])} ({deciding}"


def _seeds_needed(value: float | None) -> str:
    if value is None:
        return "?"
    if math.isnan(value):
        return ""
    return "never (too few test examples)" if math.isinf(value) else f"{value:.0f} seeds"


def power_metrics(stages: Sequence[str]) -> list[str]:
    """The comparisons the claims rest on, whose power findings.md shows: the first stage's forward accuracy,
    the first family's retention after the last stage, the last stage's forward accuracy, the average accuracy."""
    first, last = stages[0], stages[-1]
    if len(stages) == 1:
        return [f"forward_{first}", "average_accuracy"]
    return [f"forward_{first}", f"retention_{first}_after_{last}", f"forward_{last}", "average_accuracy"]


def findings_sections(findings: pl.DataFrame, comparison: pl.DataFrame, stages: Sequence[str],
                      confidence: float) -> list[Section]:  # fmt: skip
    """findings.md as sections: the verdict table with its rules and each claim's detail, then the power of every
    paired precision comparison the claims rest on (comparison.csv's pooled rows, with `with_power`'s columns)."""
    level = f"{100 * confidence:g} %"
    models = ", ".join(dict.fromkeys(findings["model"]))
    n_seeds = max(findings["seeds"].drop_nulls(), default=1)
    seeds = f"{n_seeds} seed" + ("s" if n_seeds > 1 else "")
    over = "test examples and seeds" if n_seeds > 1 else "test examples (one seed: training noise not included)"
    caption = (f"The paper's headline claims checked on this run: measured on {models} with {seeds} (the paper: "
               f"Llama-3.1-8B-Instruct). Differences in percentage points, paired [{level} bootstrap interval over "
               f"{over}]; detectable: the smallest difference the deciding interval detects with 80 % "
               "power.")  # fmt: skip
    header = ["claim", "the paper", "measured here", f"estimate [{level} interval] (deciding pair)", "detectable",
              "verdict"]  # fmt: skip
    rows = [[r["claim"], r["paper"], r["measured"], _estimate(r),
             "" if r["detectable"] is None else f"{100 * r['detectable']:.1f}", r["verdict"]]
            for r in findings.iter_rows(named=True)]  # fmt: skip
    notes = [f"Verdict rule of C1-C4: {RULE_C14}.", f"Verdict rule of C5: {RULE_C5}."]
    notes += [f"{r['claim']}: {r['detail']}" for r in findings.iter_rows(named=True) if r["detail"]]
    sections = [(caption, header, rows, notes)]
    pooled = comparison.filter(pl.col("seed") == "all")
    if pooled.height:
        metrics = power_metrics(stages)
        reference = pooled["reference"][0]
        power_caption = (f"Power of each paired comparison with {reference}: the smallest difference it detects with "
                         f"80 % power at {100 - 100 * confidence:g} % two-sided, (z + 0.84) x SE with SE = interval "
                         "width / (2 z), in percentage points, and the seeds that would detect a 3-point difference "
                         "(the seeds' share of the variance scaled by seeds run / seeds; ?: one seed run, no seed "
                         "variance to scale).")  # fmt: skip
        keys = ["precision", "buffer"]
        power_rows = []
        for (precision, buffer), rows_ in pooled.filter(pl.col("metric").is_in(metrics)).group_by(
            keys, maintain_order=True
        ):
            by_metric = {r["metric"]: r for r in rows_.iter_rows(named=True)}
            power_rows.append([f"{precision} - {reference}", buffer] + [
                f"{100 * by_metric[m]['detectable']:.1f} / {_seeds_needed(by_metric[m]['seeds_for_3_points'])}"
                for m in metrics])  # fmt: skip
        power_header = ["comparison", "buffer", *(f"{m.replace('_', ' ')}: detectable / seeds for 3" for m in metrics)]
        sections.append((power_caption, power_header, power_rows, []))
    return sections
