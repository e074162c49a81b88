"""End to end: a corrupt artifact of a finished micro grid stops the step that reads it with one line that names the
file and the command that rebuilds it, and no traceback."""

import os
import shutil

import pytest

from conftest import run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture
def grid_copy(micro_grid, tmp_path):
    """A copy of the finished micro grid that a test may break."""
    workdir, config = micro_grid
    copy = tmp_path / "grid"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy, config


def _failure(config, workdir, *args) -> str:
    proc = run_snakemake(config, workdir, *args)
    assert proc.returncode != 0, (proc.stdout + proc.stderr)[-6000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-6000:]
    return proc.stderr


def test_a_truncated_adapter_stops_its_evaluation_with_one_line(grid_copy):
    workdir, config = grid_copy
    adapter = "results/train/toy/fp16/seed0/nlu/adapter"
    weights = workdir / adapter / "adapter_model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size // 2)
    stderr = _failure(config, workdir, "--forcerun", "evaluate", "--", "results/eval/toy/fp16/seed0/nlu/scores.json")
    line = (
        f"Corrupt input: {adapter}/adapter_model.safetensors does not match its manifest ({size // 2} bytes, {size} "
        f"written); rebuild it with: snakemake --cores all --forcerun train_first_stage -- {adapter}"
    )
    assert line in stderr.splitlines(), stderr[-4000:]
    assert (workdir / "logs/eval/toy/fp16/seed0/nlu.log").read_text() == line + "\n"


def test_a_truncated_training_split_stops_the_replay_mix_naming_it(grid_copy):
    workdir, config = grid_copy
    # The last of the mix's nine inputs (eight NLU splits to replay, one math split to learn).
    split = "results/data/winogrande/train.parquet"
    size = (workdir / split).stat().st_size
    os.truncate(workdir / split, 200)
    stderr = _failure(config, workdir, "--forcerun", "replay_mix", "--", "results/replay/seed0/buf0.1/math.parquet")
    assert [line for line in stderr.splitlines() if line.startswith("Corrupt input: ")] == [
        f"Corrupt input: {split} does not match its manifest (200 bytes, {size} written); rebuild it with: "
        f"snakemake --cores all --forcerun prepare_data -- {split}"
    ]
