"""Ctrl-C, then the same command again: the run continues (the workstation profile re-runs incomplete jobs) and
ends with the numbers an uninterrupted run gives."""

import json
import os
import signal
import subprocess
import time

import polars as pl
import pytest
import yaml

from conftest import ROOT, SNAKEMAKE, micro_config

pytestmark = pytest.mark.slow

# Stage 1 of one fp32 cell and its scores: the micro grid's data, base, training and evaluation, and nothing else.
TRAIN = "results/train/toy/fp32/seed0/nlu"
SCORES = "results/eval/toy/fp32/seed0/nlu"


def test_profile_reruns_incomplete_jobs():
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile["rerun-incomplete"] is True


def _command(workdir) -> list[str]:
    # As a user types it: the workstation profile is read from the Snakefile's folder.
    return [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile",
            str(workdir / "config.yaml"), "--cores", "2", f"{SCORES}/scores.json"]  # fmt: skip


def _adapter_config(workdir) -> dict:
    config = json.loads((workdir / TRAIN / "adapter" / "adapter_config.json").read_text())
    return {**config, "target_modules": sorted(config["target_modules"])}


def _scores(path) -> dict:
    # Timings differ from run to run; every score does not.
    tasks = json.loads(path.read_text())["tasks"]
    return {task: {k: v for k, v in score.items() if k != "seconds"} for task, score in tasks.items()}


def test_interrupted_run_continues_to_the_same_results(micro_grid, tmp_path):
    grid_dir, _ = micro_grid
    config = micro_config()
    config["precisions"] = ["fp32"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log = open(tmp_path / "first.log", "w")
    # Its own process group, as a terminal's foreground job: Ctrl-C sends SIGINT to Snakemake and every job.
    first = subprocess.Popen(_command(tmp_path), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    train_log = tmp_path / "logs" / "train" / "toy" / "fp32" / "seed0" / "nlu.log"
    deadline = time.monotonic() + 300
    # The training job has started once its log has a line.
    while not (train_log.exists() and train_log.stat().st_size) and first.poll() is None:
        assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=120) != 0
    assert not (tmp_path / SCORES / "scores.json").exists()

    again = subprocess.run(_command(tmp_path), capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "IncompleteFilesException" not in again.stderr
    # The resumed cell equals the micro grid's, run without interruption: the adapter's weights byte for byte (its
    # config up to the order of PEFT's set of target modules), every prediction and score.
    weights = "adapter/adapter_model.safetensors"
    assert (tmp_path / TRAIN / weights).read_bytes() == (grid_dir / TRAIN / weights).read_bytes()
    assert _adapter_config(tmp_path) == _adapter_config(grid_dir)
    ours, theirs = (pl.read_parquet(d / SCORES / "predictions.parquet") for d in (tmp_path, grid_dir))
    assert ours.equals(theirs)
    assert _scores(tmp_path / SCORES / "scores.json") == _scores(grid_dir / SCORES / "scores.json")
