"""Re-runs follow library edits: a rule's params carry the hash of the library code its script runs."""

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_snakemake, scheduled_jobs
from quantreplay.fingerprint import code_fingerprint, library_modules

SCRIPTS = ROOT / "scripts"
SRC = ROOT / "src"


def _copy_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


def test_each_script_runs_the_modules_it_imports_and_no_others():
    # Every step checks its inputs against their manifests; where the files lie (quantreplay.paths) is Snakemake's
    # to track, and the grid only lists a run's files and params (which Snakemake compares itself).
    checks = {"quantreplay", "quantreplay.errors", "quantreplay.io", "quantreplay.manifest"}
    assert set(library_modules(SCRIPTS / "plots.py", SRC)) == checks | {"quantreplay.plots"}
    assert set(library_modules(SCRIPTS / "cell_metrics.py", SRC)) == checks | {"quantreplay.metrics"}
    train = library_modules(SCRIPTS / "train_stage.py", SRC)
    assert {"quantreplay.train", "quantreplay.lm", "quantreplay.quantize", "quantreplay.schedule"} <= set(train)
    # Training reads a base folder; it does not run the code that builds one, nor scoring, nor the data loaders.
    assert not {"quantreplay.evaluate", "quantreplay.bases.toy", "quantreplay.plots"} & set(train)
    assert not any(m.startswith("quantreplay.data.") for m in train)
    evaluate = library_modules(SCRIPTS / "evaluate.py", SRC)
    assert {"quantreplay.evaluate", "quantreplay.extract", "quantreplay.sandbox"} <= set(evaluate)
    assert "quantreplay.train" not in evaluate
    # A module imported inside a function counts: prepare_data reaches every source's loader through the registry.
    data = library_modules(SCRIPTS / "prepare_data.py", SRC)
    assert {"quantreplay.data.builtin", "quantreplay.data.offline", "quantreplay.data.hub"} <= set(data)


def test_comments_and_docstrings_change_nothing_code_changes_the_hash(tmp_path):
    src = _copy_src(tmp_path)
    script = SCRIPTS / "train_stage.py"
    before = code_fingerprint(script, src)
    assert before == code_fingerprint(script, SRC)
    schedule = src / "quantreplay" / "schedule.py"
    text = schedule.read_text()
    schedule.write_text(
        '"""Another docstring."""\n# a comment\n' + text.split('"""', 2)[2].replace("\n\n", "\n\n\n", 1)
    )
    assert code_fingerprint(script, src) == before
    schedule.write_text(text.replace("return lr\n", "return lr * 1.0\n", 1))
    assert code_fingerprint(script, src) != before
    # The other rules do not run schedule.py: their hashes stay.
    assert code_fingerprint(SCRIPTS / "evaluate.py", src) == code_fingerprint(SCRIPTS / "evaluate.py", SRC)


# Which rules an edit of one library module schedules on a finished micro grid: the rules that run the module, and
# the rules downstream of them (their inputs will change), and nothing else.
DOWNSTREAM_OF_EVALUATE = {"evaluate", "cell_metrics", "aggregate", "plots", "plot_r_matrix", "all"}
EDITS = [
    ("plots.py", {"plots", "plot_r_matrix", "all"}),
    ("metrics.py", {"cell_metrics", "aggregate", "plots", "plot_r_matrix", "all"}),
    # quant_error tokenizes its probe text with the training code; the telemetry reads every adapter.
    ("train.py", {"train_first_stage", "train_stage", "quant_error", "telemetry"} | DOWNSTREAM_OF_EVALUATE),
    ("evaluate.py", DOWNSTREAM_OF_EVALUATE),
    ("data/formats.py", {"prepare_data", "build_base", "replay_mix", "train_first_stage", "train_stage",
                         "quant_error", "telemetry"} | DOWNSTREAM_OF_EVALUATE),
    # How jobs run (the warm start), not what they compute.
    ("warm.py", set()),
    # Where files lie: a new rule's path re-runs nothing that is done.
    ("paths.py", set()),
    # The grid lists files and params; only the table steps, which cut its file lists into cells, run its code.
    ("grid.py", {"quant_error", "telemetry", "aggregate", "plots", "all"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def grid_copy(micro_grid, tmp_path_factory):
    """The workflow's files copied beside the finished micro grid, so a test can edit the library."""
    workdir, config = micro_grid
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("Snakefile", "rules", "scripts", "config", "report", "profiles"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    return workdir, config, copy


def _dry_run(grid_copy) -> list[tuple[str, dict]]:
    workdir, config, copy = grid_copy
    proc = run_snakemake(config, workdir, "-n", snakefile=copy / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return scheduled_jobs(proc.stdout)


@pytest.mark.slow
def test_an_unchanged_copy_of_the_library_schedules_nothing(grid_copy):
    workdir, config, copy = grid_copy
    shutil.rmtree(copy / "src", ignore_errors=True)
    _copy_src(copy)
    assert _dry_run(grid_copy) == []


@pytest.mark.slow
@pytest.mark.parametrize(("module", "rules"), EDITS, ids=[e[0] for e in EDITS])
def test_editing_a_module_schedules_exactly_the_rules_that_run_it(grid_copy, module, rules):
    workdir, config, copy = grid_copy
    shutil.rmtree(copy / "src", ignore_errors=True)
    src = _copy_src(copy)
    path = src / "quantreplay" / module
    path.write_text(path.read_text() + "\n\nEDITED_FOR_A_TEST = True\n")
    jobs = _dry_run(grid_copy)
    assert {rule for rule, _ in jobs} == rules
    if module == "train.py":
        # Training changed, the untrained base's scores did not.
        assert not any(rule == "evaluate" and w.get("checkpoint") == "base" for rule, w in jobs)
