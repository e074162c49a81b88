"""Verdicts on the paper's claims and the power of a comparison, on hand-made scores whose answers are known."""

import math

import polars as pl
import pytest

from quantreplay.findings import (
    CONTRADICTED,
    FINDINGS_COLUMNS,
    SUPPORTED,
    UNRESOLVED,
    detail_pairs,
    directional,
    findings_sections,
    findings_table,
    needed_buffer,
    pair_text,
)
from quantreplay.intervals import (
    AnalysisSettings,
    cell_groups,
    detectable_difference,
    interval_tables,
    seeds_to_detect,
    with_power,
)

STAGES = ["nlu", "math"]
FAMILIES = {"boolq": "nlu", "piqa": "nlu", "arithmetic": "math"}
SETTINGS = AnalysisSettings(bootstrap_resamples=200, reference_precision="fp16")
N = 40


def test_a_directional_claim_is_supported_contradicted_or_not_resolved():
    assert directional({"a": (0.1, 0.02, 0.2), "b": (0.3, 0.1, 0.5)}) == (SUPPORTED, "a")
    # One pair clearly the other way contradicts, whatever the others say.
    assert directional({"a": (0.1, 0.02, 0.2), "b": (-0.2, -0.3, -0.1)}) == (CONTRADICTED, "b")
    # An interval that touches or spans 0 decides nothing; identical arms (0, 0, 0) neither.
    assert directional({"a": (0.1, 0.02, 0.2), "b": (0.05, -0.01, 0.1)}) == (UNRESOLVED, "b")
    assert directional({"a": (0.0, 0.0, 0.0)}) == (UNRESOLVED, "a")


def test_a_rows_pairs_read_back_from_its_detail():
    """The ablation reads every pair of a claim from findings.csv's detail: what pair_text wrote, to its 0.1 point,
    and not the arms' own levels beside them."""
    level = "fp16 65.5 % [59.8, 70.3] -> 69.8 % [65.3, 74.5]"
    detail = "; ".join([level, pair_text("int8 - fp16", 0.10512, 0.03, 0.177), pair_text("nf4", -0.039, -0.0825, 0)])
    assert detail.endswith("int8 - fp16 +10.5 [+3.0, +17.7]; nf4 -3.9 [-8.2, +0.0]")
    pairs = detail_pairs(detail)
    assert list(pairs) == ["int8 - fp16", "nf4"]
    assert pairs["int8 - fp16"] == pytest.approx((0.105, 0.03, 0.177))
    assert pairs["nf4"] == pytest.approx((-0.039, -0.082, 0.0))
    assert detail_pairs("") == {} and detail_pairs(None) == {}


def test_the_buffer_a_precision_needs_has_a_range():
    # Differences from the 20 % buffer's retention at 0, 0.1 %, 1 %, 20 %.
    ladder = [(0.0, (-0.3, -0.4, -0.2)), (0.001, (-0.015, -0.05, 0.01)), (0.01, (-0.01, -0.019, 0.0)),
              (0.2, (0.0, 0.0, 0.0))]  # fmt: skip
    # Within 2 points from 0.1 % on; its interval reaches below -2, 1 %'s does not: surely by 1 %.
    assert needed_buffer(ladder) == (0.001, 0.001, 0.01)
    assert needed_buffer([(0.0, (-0.3, -0.4, -0.2)), (0.2, (0.0, 0.0, 0.0))]) == (0.2, 0.2, 0.2)


def test_power_of_a_comparison_with_a_known_answer():
    # A 95 % interval 3.92 points wide has a standard error of 1 point: 80 % power at 5 % for 2.80 points.
    assert detectable_difference(0.0, 0.0392, 0.95) == pytest.approx(0.028016, abs=1e-5)
    # At 90 %: (1.645 + 0.842) / (2 x 1.645) of the width.
    assert detectable_difference(0.0, 0.1, 0.9) == pytest.approx(0.1 * 2.4865 / 3.2897, rel=1e-3)
    # Two seeds, SE 2 points (examples and seeds), 0.5 points with the seeds held fixed: the seeds' share
    # 4 - 0.25 = 3.75 (points^2) x 2 / m must fit under (3 / 2.8016)^2 - 0.25 = 0.8967: m = 8.36, so 9 seeds.
    kwargs = {"ci_low": 0.0, "ci_high": 0.0784, "examples_ci_low": 0.0, "examples_ci_high": 0.0196}
    assert seeds_to_detect(0.03, n_seeds=2, confidence=0.95, **kwargs) == 9
    for m, detects in ((9, True), (8, False)):
        se = math.sqrt(0.005**2 + (0.02**2 - 0.005**2) * 2 / m)
        assert (2.8016 * se <= 0.03) is detects
    # The test set alone too wide for 3 points: no number of seeds helps; one seed: no seed variance to scale.
    assert seeds_to_detect(0.03, n_seeds=2, confidence=0.95, **{**kwargs, "examples_ci_high": 0.05}) == math.inf
    assert seeds_to_detect(0.03, n_seeds=1, confidence=0.95, **kwargs) is None
    frame = pl.DataFrame({"ci_low": [0.0], "ci_high": [0.0784], "examples_ci_low": [0.0], "examples_ci_high": [0.0196],
                          "n_seeds": [2], "confidence": [0.95]})  # fmt: skip
    powered = with_power(frame)
    assert powered["detectable"][0] == pytest.approx(2.8016 * 0.02, rel=1e-4) and powered["seeds_for_3_points"][0] == 9


def _grid(tmp_path, forward_nlu: dict, forward_math: dict, retention: dict) -> tuple[list[dict], list[list[str]]]:
    """Cells of one seed whose predictions score exactly: base 50 % on nlu, 0 on math; after nlu `forward_nlu`
    (shared by every buffer, as stage 1 is); after math `retention[precision][buffer]` on nlu and
    `forward_math[precision]` on math."""

    def write(path, accuracies) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"task": task, "id": f"{task}-{i:02d}", "correct": i < round(a * N)}
                for task, a in zip(FAMILIES, accuracies, strict=True) for i in range(N)]  # fmt: skip
        pl.DataFrame(rows).write_parquet(path)
        return str(path)

    cells, files = [], []
    for precision, by_buffer in retention.items():
        base = write(tmp_path / precision / "base.parquet", (0.5, 0.5, 0.0))
        first = write(tmp_path / precision / "nlu.parquet", (forward_nlu[precision],) * 2 + (0.0,))
        for buffer, kept in by_buffer.items():
            last = write(tmp_path / precision / buffer / "math.parquet", (kept, kept, forward_math[precision]))
            cells.append({"model": "toy", "precision": precision, "buffer": buffer, "seed": "0"})
            files.append([base, first, last])
    return cells, files


def _findings(cells, files, stages=STAGES, reference="fp16") -> tuple[pl.DataFrame, pl.DataFrame]:
    if len(stages) == 1:
        files = [f[:2] for f in files]
    intervals, comparison = interval_tables(cells=cells, prediction_files=files, families=FAMILIES, stages=stages,
                                            reference=reference, settings=SETTINGS)  # fmt: skip
    findings = findings_table(groups=cell_groups(cells, files), intervals=intervals, families=FAMILIES,
                              stages=stages, settings=SETTINGS, models={"toy": "toy (1.6M parameters)"})  # fmt: skip
    return findings, with_power(comparison)


# fp16 learns nlu best (C1); int8 and nf4 learn math better (C2); 0.1 % lifts retention at every precision (C3);
# nf4 balances better than int8 (C4 contradicted); int8 and nf4 keep within 2 points of 20 % from 0.1 % on, fp16
# only at 20 % (C5).
FORWARD_NLU = {"fp16": 0.9, "int8": 0.6, "nf4": 0.7}
FORWARD_MATH = {"fp16": 0.2, "int8": 0.5, "nf4": 0.9}
RETENTION = {"fp16": {"0": 0.4, "0.001": 0.6, "0.2": 0.8}, "int8": {"0": 0.4, "0.001": 0.8, "0.2": 0.8},
             "nf4": {"0": 0.4, "0.001": 0.8, "0.2": 0.8}}  # fmt: skip


def test_each_claim_gets_the_verdict_its_numbers_force(tmp_path):
    findings, comparison = _findings(*_grid(tmp_path, FORWARD_NLU, FORWARD_MATH, RETENTION))
    assert tuple(findings.columns) == FINDINGS_COLUMNS
    assert findings["claim"].to_list() == ["C1", "C2", "C3", "C4", "C5"]
    assert findings["verdict"].to_list() == [SUPPORTED, SUPPORTED, SUPPORTED, CONTRADICTED, SUPPORTED]
    assert set(findings["model"]) == {"toy (1.6M parameters)"} and set(findings["seeds"]) == {1}
    row = {r["claim"]: r for r in findings.iter_rows(named=True)}
    # The deciding pair is the weakest: fp16 over nf4 (20 points) rather than over int8 (30).
    assert row["C1"]["estimate"] == pytest.approx(0.2) and row["C1"]["unit"] == "points (fp16 - nf4)"
    assert row["C1"]["ci_low"] > 0 and row["C1"]["detectable"] > 0
    assert "fp16 90.0 %" in row["C1"]["detail"] and "fp16 - int8 +30.0" in row["C1"]["detail"]
    assert row["C2"]["estimate"] == pytest.approx(0.3) and row["C2"]["unit"] == "points (int8 - fp16)"
    assert row["C3"]["estimate"] == pytest.approx(0.2) and "fp16 40.0 %" in row["C3"]["detail"]
    # int8's average accuracy (40 + 50) / 2 against nf4's (40 + 90) / 2: 20 points below.
    assert row["C4"]["estimate"] == pytest.approx(-0.2) and row["C4"]["ci_high"] < 0
    assert (row["C5"]["estimate"], row["C5"]["ci_low"], row["C5"]["ci_high"]) == (0.001, 0.001, 0.001)
    assert "fp16 needs 20 % [20 %, 20 %]" in row["C5"]["detail"]

    # int8 learns nlu as well as fp16: fp16 is no longer best beyond doubt.
    tied, _ = _findings(*_grid(tmp_path / "tied", {**FORWARD_NLU, "int8": 0.9}, FORWARD_MATH, RETENTION))
    assert tied["verdict"][0] == UNRESOLVED and tied["estimate"][0] == 0

    # The verdict table comes first, then each comparison's power.
    (caption, header, rows, notes), (power_caption, power_header, power_rows, _) = findings_sections(
        findings, comparison, STAGES, 0.95
    )
    assert "toy (1.6M parameters) with 1 seed" in caption and [r[-1] for r in rows] == findings["verdict"].to_list()
    assert notes[0].startswith("Verdict rule of C1-C4: supported: every paired difference's interval lies")
    assert power_header[:2] == ["comparison", "buffer"] and len(power_rows) == 2 * 3
    assert power_rows[0][:2] == ["int8 - fp16", "0"] and power_rows[0][2].endswith(" / ?")


def test_a_claim_the_grid_cannot_test_says_what_is_missing(tmp_path):
    cells, files = _grid(tmp_path, FORWARD_NLU, FORWARD_MATH, RETENTION)

    def keep(condition):
        kept = [(c, f) for c, f in zip(cells, files, strict=True) if condition(c)]
        return [c for c, _ in kept], [f for _, f in kept]

    no_small, _ = _findings(*keep(lambda c: c["buffer"] != "0.001"))
    assert no_small["verdict"][2] == "not testable: the grid has no 0.1 % buffer"
    # Without it every precision needs the 20 % buffer: C5 cannot tell them apart.
    assert no_small["verdict"][4] == UNRESOLVED and no_small["estimate"][2] is None
    no_fp16, _ = _findings(*keep(lambda c: c["precision"] != "fp16"), reference=None)
    assert no_fp16["verdict"].to_list()[:2] == ["not testable: the grid has no fp16"] * 2
    assert no_fp16["verdict"][4] == "not testable: the grid has no fp16"
    one_stage, _ = _findings(cells, files, stages=["nlu"])
    assert one_stage["verdict"][0] == SUPPORTED
    assert one_stage["verdict"].to_list()[1:] == ["not testable: the grid has one stage only"] * 2 + [
        "not testable: the grid has one stage only (no retention to balance)",
        "not testable: the grid has one stage only",
    ]
