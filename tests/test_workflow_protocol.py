"""The authors' protocol as switchable factors: changing one re-runs exactly the jobs it touches.

A grid of its own, finished once per module: the micro config (fp16 and nf4, two buffers, NLU then Math) without
its code task, so that it runs where no code sandbox can be built. Each test changes one factor on a copy of its
config and reads which jobs a dry run schedules.
"""

import copy
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, SNAKEMAKE, expected_job_counts, job_counts, micro_config, run_snakemake, scheduled_jobs
from quantreplay.config import check_config, load_schema

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("protocol")
    config = micro_config()
    del config["tasks"]["pyfunc"]
    proc = run_snakemake(config, workdir)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir, config


def _jobs(config, workdir) -> list[tuple[str, dict]]:
    proc = run_snakemake(config, workdir, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return scheduled_jobs(proc.stdout)


def _dry(config, workdir) -> dict[str, int]:
    proc = run_snakemake(config, workdir, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return job_counts(proc.stdout)


def _changed(config: dict, section: str, **values) -> dict:
    changed = copy.deepcopy(config)
    changed.setdefault(section, {}).update(values)
    return changed


# Two precisions x two buffers x one seed: four cells; each has a stage-1 and a stage-2 checkpoint, and each
# precision an untrained base.
CELLS = 4


def _downstream(cells: int) -> dict[str, int]:
    """The jobs that follow `cells` changed cells: their metrics and R-matrix figures, and the grid's tables."""
    return {"cell_metrics": cells, "plot_r_matrix": cells, "aggregate": 1, "plots": 1, "all": 1}


def _retrained(cells: int) -> dict[str, int]:
    return {**_downstream(cells), "telemetry": 1}


def test_the_finished_grid_schedules_nothing(grid):
    workdir, config = grid
    assert _dry(config, workdir) == {}


def test_replay_draw_reruns_the_non_empty_mixes_and_what_trains_on_them(grid):
    workdir, config = grid
    changed = _changed(config, "replay", draw="head")
    # The empty buffer's mix is the same under any draw: only the 0.1 buffer's mix, its stage 2 in each precision,
    # their evaluations and cells.
    assert _dry(changed, workdir) == {"replay_mix": 1, "train_stage": 2, "evaluate": 2, **_retrained(2)}
    assert {w["buffer"] for _, w in _jobs(changed, workdir) if "buffer" in w} == {"0.1"}


def test_the_loss_reruns_every_training_stage_and_nothing_before(grid):
    workdir, config = grid
    changed = copy.deepcopy(config)
    changed["training"]["loss_reduction"] = "sequence_sum"
    # Both stages of both precisions, every trained checkpoint; not the data, the mixes, the base or its scores.
    assert _dry(changed, workdir) == {
        "train_first_stage": 2,
        "train_stage": 4,
        "evaluate": 6,
        **_retrained(CELLS),
    }
    assert not any(r == "evaluate" and w["checkpoint"] == "base" for r, w in _jobs(changed, workdir))


def test_clipping_set_for_one_stage_reruns_that_stage_only(grid):
    workdir, config = grid
    changed = copy.deepcopy(config)
    changed["training"]["stages"] = {"math": {"grad_clip_scope": "per_tensor"}}
    assert _dry(changed, workdir) == {"train_stage": 4, "evaluate": 4, **_retrained(CELLS)}
    assert {w["stage"] for r, w in _jobs(changed, workdir) if r == "train_stage"} == {"math"}


def test_drop_last_rescores_every_checkpoint_and_retrains_nothing(grid):
    workdir, config = grid
    changed = _changed(config, "evaluation", drop_last=True)
    # The base, stage 1 and the two stage 2s of each precision.
    assert _dry(changed, workdir) == {"evaluate": 8, **_downstream(CELLS)}


def test_sampled_decoding_rescores_every_checkpoint_and_retrains_nothing(grid):
    workdir, config = grid
    changed = _changed(config, "evaluation", decoding="sample", temperature=0.6, top_k=50, top_p=0.9)
    assert _dry(changed, workdir) == {"evaluate": 8, **_downstream(CELLS)}


def test_rouge1_code_scoring_rescores_every_checkpoint_and_needs_no_sandbox(grid, tmp_path):
    workdir, config = grid
    changed = _changed(config, "evaluation", code_metric="rouge1")
    # Every checkpoint is scored on every task in one job: the code score re-runs every evaluation.
    assert _dry(changed, workdir) == {"evaluate": 8, **_downstream(CELLS)}
    # With the code task: ROUGE-1 runs no completion, so the workflow starts where no sandbox can be built.
    with_code = _changed(micro_config(), "evaluation", code_metric="rouge1", code_sandbox="bubblewrap")
    proc = run_snakemake(with_code, tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout)["evaluate"] == 8


def test_label_word_multiple_choice_rescores_every_checkpoint_and_retrains_nothing(grid):
    workdir, config = grid
    changed = _changed(config, "evaluation", mc_mode="label_word")
    assert _dry(changed, workdir) == {"evaluate": 8, **_downstream(CELLS)}


def test_merging_at_one_precision_reruns_that_precisions_later_stages_only(grid):
    workdir, config = grid
    # The authors' asymmetric protocol: fp16 merges, nf4 continues.
    changed = _changed(config, "continuation", per_precision={"fp16": "merge"})
    assert _dry(changed, workdir) == {"train_stage": 2, "evaluate": 2, **_retrained(2)}
    jobs = _jobs(changed, workdir)
    assert {(w["precision"], w["stage"]) for r, w in jobs if r == "train_stage"} == {("fp16", "math")}
    # The same for every precision: every later stage.
    everywhere = _changed(config, "continuation", mode="merge")
    assert _dry(everywhere, workdir) == {"train_stage": 4, "evaluate": 4, **_retrained(CELLS)}


def _overlaid(tier: str) -> dict:
    """The tier's config with config/paper_protocol.yaml merged into it key by key, as Snakemake merges them."""
    from snakemake.utils import update_config

    config = yaml.safe_load((ROOT / "config" / tier).read_text())
    update_config(config, yaml.safe_load((ROOT / "config" / "paper_protocol.yaml").read_text()))
    return config


@pytest.mark.parametrize("tier", ["config.yaml", "smollm2.yaml", "paper.yaml"])
def test_the_authors_protocol_is_one_overlay_on_any_tier(tier, tmp_path):
    config = _overlaid(tier)
    check_config(config, load_schema(ROOT / "config" / "schema" / "config.schema.yaml"))
    # Every factor at the authors' value; the tier's other keys as they were.
    assert config["continuation"] == {"mode": "continue", "per_precision": {"fp16": "merge"}}
    assert config["replay"]["draw"] == "head"
    assert (config["training"]["loss_reduction"], config["training"]["grad_clip_scope"]) == ("sequence_sum",
                                                                                           "per_tensor")  # fmt: skip
    evaluation = config["evaluation"]
    assert (evaluation["decoding"], evaluation["temperature"], evaluation["top_k"], evaluation["top_p"]) == (
        "sample", 0.6, 50, 0.9
    )  # fmt: skip
    assert (evaluation["mc_mode"], evaluation["code_metric"], evaluation["drop_last"]) == (
        "label_word",
        "rouge1",
        True,
    )
    tier_alone = yaml.safe_load((ROOT / "config" / tier).read_text())
    assert config["training"]["lr"] == tier_alone["training"]["lr"] and set(config["tasks"]) == set(
        tier_alone["tasks"]
    )
    # One command: the tier's file, then the overlay. Laid out like a checkout, so a tier's file replaces the
    # default config rather than merging into it (tests/test_paper_config.py).
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    proc = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--cores", "2", "-n",
         "--configfile", str(ROOT / "config" / tier), str(ROOT / "config" / "paper_protocol.yaml")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The factors change what jobs compute, not which jobs there are.
    assert job_counts(proc.stdout) == expected_job_counts(config)
