"""Aggregation: accuracy.csv, summary.csv, intervals, comparisons and the paper table from real score, predictions
and metrics files."""

import json
from dataclasses import replace

import polars as pl
import pytest

from quantreplay.aggregate import ACCURACY_COLUMNS, aggregate, per_cell
from quantreplay.findings import FINDINGS_COLUMNS, VERDICTS
from quantreplay.intervals import AnalysisSettings
from quantreplay.metrics import write_cell_metrics

STAGES = ["nlu", "math"]
TASKS = {"boolq": "nlu", "piqa": "nlu", "arithmetic": "math"}
SETTINGS = AnalysisSettings(bootstrap_resamples=200)


def _cell(tmp_path, precision: str, buffer: str, after: list[tuple[float, float, float]], n: int = 40):
    """A cell's score and predictions files whose accuracies are exactly `after` (boolq, piqa, arithmetic) per
    checkpoint, with its metrics file."""
    cell = {"model": "toy", "precision": precision, "buffer": buffer, "seed": "0"}
    files = []
    for k, accuracies in enumerate(after):
        folder = tmp_path / precision / buffer / str(k)
        folder.mkdir(parents=True)
        rows, tasks = [], {}
        for (task, family), accuracy in zip(TASKS.items(), accuracies, strict=True):
            correct = [i < round(accuracy * n) for i in range(n)]
            rows += [{"task": task, "id": f"{task}-{i:02d}", "correct": c} for i, c in enumerate(correct)]
            tasks[task] = {"family": family, "metric": "acc", "value": sum(correct) / n, "n": n}
        pl.DataFrame(rows).write_parquet(folder / "predictions.parquet")
        (folder / "scores.json").write_text(json.dumps({"tasks": tasks}))
        files.append(str(folder / "scores.json"))
    metrics = tmp_path / f"m-{precision}-{buffer}.json"
    write_cell_metrics(score_files=files, stages=STAGES, output=str(metrics), cell=cell)
    return cell, files, str(metrics)


def _aggregate(tmp_path, built, reference="fp16"):
    out = {k: str(tmp_path / "tables" / f) for k, f in (("accuracy", "accuracy.csv"), ("summary", "summary.csv"),
           ("intervals", "intervals.csv"), ("comparison", "comparison.csv"), ("table", "table.md"),
           ("table_html", "table.html"), ("cost", "cost.csv"), ("jobs", "jobs.csv"), ("findings", "findings.csv"),
           ("findings_md", "findings.md"), ("findings_html", "findings.html"), ("mechanism", "mechanism.csv"),
           ("mechanism_md", "mechanism.md"), ("mechanism_html", "mechanism.html"))}  # fmt: skip
    # A base folder as build_base leaves it: the findings name the model and its size.
    base = tmp_path / "base" / "toy"
    base.mkdir(parents=True, exist_ok=True)
    (base / "base.json").write_text(json.dumps({"kind": "toy", "source": None}))
    (base / "pretrain.json").write_text(json.dumps({"parameters": 1_600_000}))
    # One job's Snakemake benchmark file: the cost tables come from files of this format.
    benchmark = tmp_path / "job.tsv"
    benchmark.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                         "2.5\t0:00:02\t300\t900\t250\t260\t0\t0\t80\t2.0\n")  # fmt: skip
    jobs = [{"rule": "evaluate", "wildcards": {"precision": "nf4"}, "stage": "nlu", "id": "e", "needs": []}]
    scores = [f for b in built for f in b[1]]
    predictions = [f.replace("scores.json", "predictions.parquet") for f in scores]
    summary = aggregate(cells=[b[0] for b in built], score_files=scores, prediction_files=predictions,
                        metric_files=[b[2] for b in built], jobs=jobs, benchmark_files=[str(benchmark)],
                        base_dirs=[str(base)], stages=STAGES,
                        settings=replace(SETTINGS, reference_precision=reference), out=out)  # fmt: skip
    return summary, out


def test_tables(tmp_path):
    built = [
        _cell(tmp_path, "fp16", "0", [(0.5, 0.5, 0.0), (0.9, 0.7, 0.0), (0.6, 0.4, 0.3)]),
        _cell(tmp_path, "fp16", "0.1", [(0.5, 0.5, 0.0), (0.9, 0.7, 0.0), (0.8, 0.7, 0.25)]),
        _cell(tmp_path, "nf4", "0", [(0.5, 0.5, 0.0), (0.8, 0.7, 0.0), (0.5, 0.4, 0.45)]),
        _cell(tmp_path, "nf4", "0.1", [(0.5, 0.5, 0.0), (0.8, 0.7, 0.0), (0.8, 0.7, 0.25)]),
    ]
    summary, out = _aggregate(tmp_path, built)
    accuracy = pl.read_csv(out["accuracy"], schema_overrides={"buffer": pl.String, "seed": pl.String})
    assert tuple(accuracy.columns) == ACCURACY_COLUMNS and accuracy.height == 4 * 3 * 3
    base = accuracy.filter((pl.col("after_stage") == 0) & (pl.col("task") == "boolq"))
    assert base["value"].to_list() == [0.5] * 4
    row = summary.filter(pl.col("precision") == "fp16", pl.col("buffer") == "0").row(0, named=True)
    assert row["forward_nlu"] == pytest.approx(0.8) and row["forward_math"] == pytest.approx(0.3)
    assert row["retention_nlu_after_math"] == pytest.approx(0.5)
    assert row["relative_retention_nlu_after_math"] == pytest.approx(0.5 / 0.8)
    assert row["bwt"] == pytest.approx(-0.3) and row["forgetting_nlu"] == pytest.approx(0.3)
    # NLU from the base's 50 % to 80 %, math from 0 % to 30 %.
    assert row["gain_nlu"] == pytest.approx(0.3) and row["gain_math"] == pytest.approx(0.3)
    cost = pl.read_csv(out["cost"]).row(0, named=True)
    assert cost == {"rule": "evaluate", "precision": "nf4", "stage": "nlu", "jobs": 1, "wall_seconds": 2.5,
                    "cpu_seconds": 2.0, "max_rss_mb": 300.0}  # fmt: skip

    # Every summary metric has its interval, per seed and pooled, and the estimates are summary.csv's values.
    strings = {"buffer": pl.String, "seed": pl.String}
    intervals = pl.read_csv(out["intervals"], schema_overrides=strings)
    metrics = [c for c in summary.columns if c not in ("model", "precision", "buffer", "seed")]
    assert intervals.height == 4 * len(metrics) * 2 and set(intervals["seed"]) == {"0", "all"}
    for cell in summary.iter_rows(named=True):
        rows = intervals.filter(pl.col("precision") == cell["precision"], pl.col("buffer") == cell["buffer"],
                                pl.col("seed") == "all")  # fmt: skip
        for r in rows.iter_rows(named=True):
            assert r["estimate"] == pytest.approx(cell[r["metric"]], nan_ok=True)
            assert r["ci_low"] <= r["estimate"] <= r["ci_high"] and r["n_seeds"] == 1
    comparison = pl.read_csv(out["comparison"], schema_overrides=strings)
    assert set(comparison["precision"]) == {"nf4"} and set(comparison["reference"]) == {"fp16"}
    gap = comparison.filter(pl.col("buffer") == "0", pl.col("seed") == "all", pl.col("metric") == "forward_math")
    # nf4 learned math to 45 %, fp16 to 30 %: +15 points on the same 40 problems.
    assert gap["difference"][0] == pytest.approx(0.15) and gap["ci_low"][0] > 0
    same = comparison.filter(pl.col("buffer") == "0.1", pl.col("metric") == "retention_nlu_after_math")
    assert (same["difference"] == 0).all() and (same["ci_low"] == 0).all() and (same["ci_high"] == 0).all()

    table = (tmp_path / "tables" / "table.md").read_text().splitlines()
    assert table[0] == "Accuracy in percent [95 % bootstrap interval], mean over seeds."
    assert table[2] == "| model | precision | buffer | forward nlu | forward math | retention nlu after math | seeds |"
    assert table[4].startswith("| toy | fp16 | 0 | 80.0 [") and table[4].endswith("| 1 |")
    assert "| toy | nf4 | 0 | -5.0 [" in "\n".join(table) and "Difference from fp16" in "\n".join(table)
    learning = table.index("| model | precision | buffer | gain nlu | gain math | forgetting nlu | seeds |")
    assert table[learning - 2].startswith("Learning and forgetting in percentage points")
    assert table[learning + 2].startswith("| toy | fp16 | 0 | +30.0 [") and "| +30.0 [" in table[learning + 2]
    html = (tmp_path / "tables" / "table.html").read_text()
    assert html.count("<table>") == 3 and "80.0 [" in html

    # Every comparison says what it could detect; one seed cannot say how many seeds would detect 3 points.
    assert comparison["detectable"].is_not_null().all() and comparison["seeds_for_3_points"].is_null().all()
    # The findings: five claims about the model measured here; this grid holds no int8, no 0.1 % and no 20 % buffer.
    findings = pl.read_csv(out["findings"])
    assert findings["claim"].to_list() == ["C1", "C2", "C3", "C4", "C5"]
    assert set(findings["model"]) == {"toy (1.6M parameters)"}
    # fp16 learned nlu to 80 %, nf4 to 75 %, on the same 80 examples: fp16 is best, as the paper says.
    assert findings["verdict"][0] == "supported" and findings["estimate"][0] == pytest.approx(0.05)
    assert findings["verdict"][2:].to_list() == ["not testable: the grid has no 0.1 % buffer",
                                                 "not testable: the grid has no int8",
                                                 "not testable: the grid has no 20 % buffer"]  # fmt: skip
    md = (tmp_path / "tables" / "findings.md").read_text()
    assert md.startswith("# Verdicts on the paper's headline claims\n") and "Power of each paired comparison" in md


def test_without_a_reference_there_is_no_comparison(tmp_path):
    built = [_cell(tmp_path, "nf4", "0", [(0.5, 0.5, 0.0), (0.8, 0.7, 0.0), (0.5, 0.4, 0.45)])]
    _, out = _aggregate(tmp_path, built, reference=None)
    assert pl.read_csv(out["comparison"]).height == 0
    assert "Difference" not in (tmp_path / "tables" / "table.md").read_text()


def test_checkpoint_files_are_cut_back_into_cells():
    assert per_cell(["a0", "a1", "b0", "b1"], 2) == [["a0", "a1"], ["b0", "b1"]]
    with pytest.raises(ValueError, match="5 checkpoint files do not split evenly into 2 cells"):
        per_cell(["a"] * 5, 2)


@pytest.mark.slow
def test_the_micro_grid_ends_with_its_findings(micro_grid):
    """The real aggregate step of the micro grid (every precision, buffers 0 and 10 %, two stages) writes the
    verdicts: the claims it can test get one of the three verdicts, the others say what the grid lacks."""
    workdir, _ = micro_grid
    tables = workdir / "results" / "tables"
    findings = pl.read_csv(tables / "findings.csv")
    assert tuple(findings.columns) == FINDINGS_COLUMNS
    assert findings["claim"].to_list() == ["C1", "C2", "C3", "C4", "C5"]
    model = findings["model"][0]
    assert model.startswith("toy (") and model.endswith("k parameters)"), model
    verdicts = findings["verdict"].to_list()
    assert verdicts[2] == "not testable: the grid has no 0.1 % buffer"
    assert verdicts[4] == "not testable: the grid has no 20 % buffer"
    assert all(verdicts[i] in VERDICTS for i in (0, 1, 3)), verdicts
    assert findings.filter(pl.col("claim").is_in(["C1", "C2", "C4"]))["detectable"].is_not_null().all()
    md = (tables / "findings.md").read_text()
    assert md.startswith("# Verdicts on the paper's headline claims")
    assert "Power of each paired comparison with fp32" in md
    # Power: four precisions against fp32 at two buffers, in the findings and in every comparison row.
    assert sum(line.startswith(("| bf16 - fp32", "| fp16 - fp32", "| int8 - fp32", "| nf4 - fp32"))
               for line in md.splitlines()) == 4 * 2  # fmt: skip
    comparison = pl.read_csv(tables / "comparison.csv")
    assert {"detectable", "seeds_for_3_points"} <= set(comparison.columns)
    assert "findings.html" in {p.name for p in tables.iterdir()}
