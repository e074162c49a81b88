"""The protocol ablation (quantreplay.protocol): its variants come from one table of factors that is exactly
config/paper_protocol.yaml, each variant's folder starts from the clean run so only what a factor changes re-runs,
and the ablation table has one row per variant and claim (on a micro grid, end to end)."""

import os
import signal
import subprocess
import time

import polars as pl
import pytest
import yaml
from snakemake.utils import update_config

from conftest import ROOT, job_counts, micro_config
from quantreplay import protocol
from quantreplay.findings import FINDINGS_COLUMNS


@pytest.fixture(scope="module")
def authors() -> dict:
    return yaml.safe_load((ROOT / "config" / "paper_protocol.yaml").read_text())


def _paths(config: dict, prefix: tuple = ()) -> set[tuple]:
    """Every leaf key's path; per_precision, a mapping of precisions, is one value."""
    paths = set()
    for key, value in config.items():
        nested = isinstance(value, dict) and key != "per_precision"
        paths |= _paths(value, (*prefix, key)) if nested else {(*prefix, key)}
    return paths


def test_the_factors_are_every_key_of_the_authors_overlay_each_once(authors):
    paths = [path for factor in protocol.FACTORS.values() for path in factor]
    assert len(paths) == len(set(paths))
    assert set(paths) == _paths(authors)
    # Every factor switched: exactly config/paper_protocol.yaml.
    assert protocol.factor_overlay(authors, list(protocol.FACTORS)) == authors


def test_every_factor_switches_a_value_of_the_default_tier(authors):
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for factor, paths in protocol.FACTORS.items():
        overlay = protocol.factor_overlay(authors, [factor])
        merged = yaml.safe_load(yaml.safe_dump(default))
        update_config(merged, overlay)
        assert any(protocol._get(merged, p) != protocol._get(default, p) for p in paths), factor


def test_the_variants_clean_and_authors_first_then_each_factor_alone(authors):
    variants = protocol.variants(authors)
    assert list(variants) == ["clean", "authors", *protocol.FACTORS]
    assert variants["clean"] == {} and variants["authors"] == authors
    assert variants["drop_last"] == {"evaluation": {"drop_last": True}}
    assert set(variants["decoding"]["evaluation"]) == {"decoding", "temperature", "top_k", "top_p"}
    # An empty config file is refused: clean runs on the tier and the grid alone.
    assert protocol.configfiles("runs/protocol/clean", {}, "config/config.yaml", "config/protocol_grid.yaml") == [
        "config/config.yaml",
        "config/protocol_grid.yaml",
    ]
    assert protocol.configfiles("r/mc_mode", variants["mc_mode"], "t.yaml", None) == [
        "t.yaml",
        "r/mc_mode/protocol.yaml",
    ]


def test_an_unknown_factor_or_a_missing_key_is_one_line_naming_it(authors):
    with pytest.raises(ValueError, match="unknown protocol factor 'nope'"):
        protocol.factor_overlay(authors, ["nope"])
    with pytest.raises(ValueError, match=r"no key replay\.draw \(factor replay_draw\)"):
        protocol.factor_overlay({"training": {}}, ["replay_draw"])


def _findings(path, c2: tuple, c3: tuple | None) -> str:
    rows = [{"claim": c, "estimate": None, "ci_low": None, "ci_high": None, "unit": None, "verdict": "x", "seeds": 3,
             "detail": ""} for c in ("C1", "C2", "C3", "C4", "C5")]  # fmt: skip
    rows[1].update(estimate=c2[0], ci_low=c2[1], ci_high=c2[2], unit="points (nf4 - fp16)", verdict="supported")
    if c3 is not None:
        rows[2].update(estimate=c3[0], ci_low=c3[1], ci_high=c3[2], unit="points (fp16)", verdict="contradicted")
    frame = pl.DataFrame([{c: r.get(c) for c in FINDINGS_COLUMNS} for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


def test_the_ablation_table_has_a_row_per_variant_and_claim(tmp_path):
    findings = {
        "clean": _findings(tmp_path / "clean.csv", (0.05, 0.01, 0.09), (-0.02, -0.04, -0.01)),
        "drop_last": _findings(tmp_path / "drop_last.csv", (0.08, 0.02, 0.14), None),
    }
    table = protocol.ablation_table(findings)
    assert table.columns == list(protocol.ABLATION_COLUMNS)
    assert table.select("variant", "claim").rows() == [("clean", "C2"), ("clean", "C3"), ("drop_last", "C2"),
                                                        ("drop_last", "C3")]  # fmt: skip
    shifts = table["shift_from_clean"].to_list()
    assert shifts[0] == 0.0 and shifts[2] == pytest.approx(0.03) and shifts[3] is None
    markdown = protocol.ablation_markdown(table)
    assert "| drop_last | drop_last | +8.0 [+2.0, +14.0] (nf4 - fp16, +3.0 vs clean): supported | x |" in markdown


def _claims(path, c2: tuple, c3: tuple) -> str:
    """A findings.csv whose C2 and C3 are (estimate, ci_low, ci_high, deciding pair, verdict, detail)."""
    rows = [{"claim": c, "verdict": "x", "seeds": 3, "detail": ""} for c in ("C1", "C2", "C3", "C4", "C5")]
    for row, (estimate, low, high, pair, verdict, detail) in zip(rows[1:3], (c2, c3), strict=True):
        row.update(estimate=estimate, ci_low=low, ci_high=high, unit=f"points ({pair})", verdict=verdict,
                   detail=detail)  # fmt: skip
    frame = pl.DataFrame([{c: r.get(c) for c in FINDINGS_COLUMNS} for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


def test_the_reading_follows_every_pair_not_only_the_deciding_one(tmp_path):
    """The deciding pair of C2 is nf4's; a factor that erases int8's lead (its interval from above 0 to across it)
    is named for it, one that moves a pair far but on the same side is named as moving it, a claim whose
    difference is 0 with no width is one the variant cannot measure, and one that leaves everything is quiet."""
    c2 = (0.018, -0.107, 0.132, "nf4 - fp16", "not resolved at this power",
          "int8 - fp16 +10.5 [+3.0, +17.7]; nf4 - fp16 +1.8 [-10.7, +13.2]")  # fmt: skip
    c3 = (
        0.042,
        0.012,
        0.068,
        "fp16",
        "supported",
        "fp16 65.5 % [59.8, 70.3] -> 69.8 % [65.3, 74.5]; fp16 +4.2 [+1.2, +6.8]",
    )
    findings = {
        "clean": _claims(tmp_path / "clean.csv", c2, c3),
        "code_metric": _claims(
            tmp_path / "code.csv",
            (
                -0.039,
                -0.082,
                0.009,
                "nf4 - fp16",
                c2[4],
                "int8 - fp16 +1.6 [-1.7, +4.6]; nf4 - fp16 -3.9 [-8.2, +0.9]",
            ),
            c3,
        ),  # fmt: skip
        "mc_mode": _claims(
            tmp_path / "mc.csv", c2, (0.0, 0.0, 0.0, "fp16", "not resolved at this power", "fp16 +0.0 [+0.0, +0.0]")
        ),  # fmt: skip
        "loss_reduction": _claims(
            tmp_path / "loss.csv",
            (
                0.02,
                -0.1,
                0.13,
                "nf4 - fp16",
                c2[4],
                "int8 - fp16 +20.0 [+12.0, +28.0]; nf4 - fp16 +2.0 [-10.0, +13.0]",
            ),
            c3,
        ),  # fmt: skip
        "drop_last": _claims(tmp_path / "drop.csv", c2, c3),
    }
    lines = protocol.ablation_reading(protocol.ablation_table(findings))
    assert lines[0] == ("code_metric: C2: int8 - fp16 goes from above 0 to across 0 (+10.5 [+3.0, +17.7] -> +1.6 "
                        "[-1.7, +4.6]). C3: every pair within half the clean interval.")  # fmt: skip
    assert lines[1].startswith(
        "mc_mode: C2: every pair within half the clean interval. C3's deciding pair (fp16) is 0"
    )
    assert lines[2].startswith(
        "loss_reduction: C2: int8 - fp16 moves +9.5 points, more than half the clean interval (7.3"
    )
    assert lines[2].endswith("and stays above 0. C3: every pair within half the clean interval.")
    assert (
        lines[3]
        == "drop_last: C2: every pair within half the clean interval. C3: every pair within half the clean interval."
    )
    assert lines[4] == (
        "Variants that change a verdict or measure nothing: mc_mode; that move a pair's interval to the other side "
        "of 0: code_metric; that move a pair by more than half the clean interval: loss_reduction; that do none of "
        "these: drop_last."
    )


def test_a_variant_without_findings_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"clean/results/tables/findings\.csv: no findings table"):
        protocol.collect(tmp_path, ["clean"])


@pytest.mark.slow
def test_the_ablation_on_a_micro_grid(tmp_path, monkeypatch):
    """Clean and one factor (sampled decoding) on the micro grid without its code task, with a 0.1 % buffer so that
    C3 is measured: the seeded variant re-scores and trains nothing, and the table is 2 variants x 2 claims."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    config = micro_config()
    del config["tasks"]["pyfunc"]
    config["buffers"] = [0, 0.001]
    tier = tmp_path / "micro.yaml"
    tier.write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    every = protocol.variants(yaml.safe_load((ROOT / "config" / "paper_protocol.yaml").read_text()))
    common = {"tier": str(tier), "grid": None, "cores": 2, "snakefile": str(ROOT / "Snakefile"), "capture": True}
    proc = protocol.run_variant(runs, "clean", every["clean"], **common)
    assert proc.returncode == 0, proc.stderr[-6000:]
    # A second ablation's clean run starts from the first's finished run: only its tables are left to remake.
    again = protocol.run_variant(tmp_path / "again", "clean", {}, clean_from=runs / "clean", extra=["--dry-run"],
                                 **common)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    counts = job_counts(again.stdout)
    assert counts["aggregate"] == 1 and set(counts) <= {"aggregate", "plots", "all"}, counts
    dry = protocol.run_variant(runs, "decoding", every["decoding"], extra=["--dry-run"], **common)
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    # Two precisions: the base, stage 1 and two stage-2 checkpoints each, re-scored; nothing trained or rebuilt.
    assert counts["evaluate"] == 8 and not {"prepare_data", "build_base", "replay_mix", "train_first_stage",
                                            "train_stage"} & set(counts)  # fmt: skip
    proc = protocol.run_variant(runs, "decoding", every["decoding"], **common)
    assert proc.returncode == 0, proc.stderr[-6000:]
    table = protocol.collect(runs, ["clean", "decoding"])
    assert table.shape == (4, len(protocol.ABLATION_COLUMNS))
    assert table.select("variant", "claim").rows() == [(v, c) for v in ("clean", "decoding") for c in ("C2", "C3")]
    # Both claims measured (an estimate with its interval) in both runs.
    assert table["estimate"].null_count() == 0 and (table["ci_low"] <= table["ci_high"]).all()
    assert all((runs / f"protocol_ablation.{ext}").is_file() for ext in ("csv", "md", "html", "png", "svg"))
    # The report's page: the table, the reading and the figure, in one file.
    page = (runs / "protocol_ablation.html").read_text()
    assert "<td>decoding</td>" in page and "<li>decoding: C2" in page and "src='data:image/png;base64," in page


@pytest.mark.slow
def test_a_killed_runs_lock_is_named_and_unlock_removes_it(tmp_path, monkeypatch):
    """A variant's Snakemake killed mid-run (its whole process group, as a machine taken back) leaves its lock: the
    next run stops with a line that names the lock and the command that removes it, and after `unlock` the
    variant runs again."""
    monkeypatch.chdir(ROOT)
    tier = tmp_path / "micro.yaml"
    tier.write_text(yaml.safe_dump(micro_config()))
    runs = tmp_path / "runs"
    variant_dir = runs / "clean"
    variant_dir.mkdir(parents=True)
    command = protocol.snakemake_command(variant_dir, protocol.configfiles(variant_dir, {}, str(tier), None), cores=1,
                                         snakefile=str(ROOT / "Snakefile"))  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not protocol.locked(variant_dir) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert protocol.locked(variant_dir)
    common = ["--runs", str(runs), "--tier", str(tier), "--grid", "", "--clean-from", "", "--variants", "clean"]
    with pytest.raises(SystemExit, match=r"clean: snakemake failed \(exit 1\); its folder holds a Snakemake lock.*"
                                         r"quantreplay\.protocol unlock"):  # fmt: skip
        protocol.main(["run", *common])
    protocol.main(["unlock", *common])
    assert not protocol.locked(variant_dir)
    again = protocol.run_variant(runs, "clean", {}, tier=str(tier), grid=None, cores=1, extra=["--dry-run"],
                                 capture=True)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]


def test_the_command_lists_the_variants_and_rejects_an_unknown_one(capsys):
    authors = str(ROOT / "config" / "paper_protocol.yaml")
    protocol.main(["list", "--authors", authors])
    assert capsys.readouterr().out.split() == ["clean", "authors", *protocol.FACTORS]
    with pytest.raises(SystemExit):
        protocol.main(["list", "--authors", authors, "--variants", "clean", "nope"])
    assert "unknown variant(s) nope" in capsys.readouterr().err
