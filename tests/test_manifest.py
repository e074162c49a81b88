"""Manifests (quantreplay.manifest) and unreadable inputs (quantreplay.io), on real files: every problem is one
CorruptInput naming the file, printed as one line with the command that rebuilds it."""

import json
import os
import subprocess
import sys

import polars as pl
import pytest
import torch
from safetensors.torch import save_file

from conftest import ROOT
from quantreplay.errors import one_line_errors
from quantreplay.io import CorruptInput, check_readable, read_csv, read_json, read_parquet
from quantreplay.manifest import (
    check_artifact,
    check_inputs,
    error_line,
    manifest_path,
    rebuild_command,
    write_manifest,
)
from quantreplay.paths import producer

ADAPTER = "results/train/toy/fp16/seed0/nlu/adapter"


@pytest.fixture
def adapter(tmp_path):
    """A stage-1 adapter folder where the pipeline puts one, with its manifest: (workdir, folder)."""
    folder = tmp_path / ADAPTER
    folder.mkdir(parents=True)
    save_file({"lora_A": torch.arange(64, dtype=torch.float32).reshape(8, 8)}, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("nested files are listed too")
    (folder / ".snakemake_timestamp").write_text("")
    write_manifest(folder)
    return tmp_path, folder


def _problem(artifact, **kwargs) -> CorruptInput:
    with pytest.raises(CorruptInput) as caught:
        check_artifact(artifact, **kwargs)
    return caught.value


def test_a_manifest_lists_every_file_with_size_and_hash_and_a_whole_folder_passes(adapter):
    _, folder = adapter
    record = json.loads(manifest_path(folder).read_text())
    assert manifest_path(folder).name == "adapter.manifest.json" and manifest_path(folder).parent == folder.parent
    # Hidden files (Snakemake's timestamp of a finished folder) are no part of it.
    assert sorted(record["files"]) == ["adapter_config.json", "adapter_model.safetensors", "sub/notes.txt"]
    entry = record["files"]["adapter_config.json"]
    assert entry["bytes"] == len(json.dumps({"r": 8})) and len(entry["sha256"]) == 64 and record["folder"]
    check_artifact(folder)
    (folder / ".DS_Store").write_text("litter")
    check_artifact(folder)


def test_a_flipped_byte_names_the_file_and_both_hashes(adapter):
    _, folder = adapter
    weights = folder / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    error = _problem(folder)
    assert error.path == str(weights) and error.artifact == str(folder)
    assert "does not match its manifest (sha256 " in str(error) and "written)" in str(error)


def test_a_truncated_file_names_its_size(adapter):
    _, folder = adapter
    weights = folder / "adapter_model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, 100)
    error = _problem(folder)
    assert str(error) == f"{weights} does not match its manifest (100 bytes, {size} written)"


def test_a_missing_and_an_extra_file_fail(adapter):
    _, folder = adapter
    (folder / "stray.safetensors").write_bytes(b"not listed")
    assert "is not in its folder's manifest" in str(_problem(folder))
    (folder / "stray.safetensors").unlink()
    (folder / "sub" / "notes.txt").unlink()
    error = _problem(folder)
    assert error.path == str(folder / "sub" / "notes.txt") and "is missing (its manifest" in str(error)


def test_a_pipeline_artifact_needs_its_manifest_other_files_only_readable_headers(adapter, tmp_path):
    workdir, folder = adapter
    manifest_path(folder).unlink()
    assert "has no manifest" in str(_problem(folder))
    # A user's file beside the pipeline: no manifest needed, but it must read.
    user = tmp_path / "mine" / "rows.parquet"
    user.parent.mkdir()
    pl.DataFrame({"a": [1, 2]}).write_parquet(user)
    check_inputs([str(user)], None)
    os.truncate(user, 10)
    assert "is unreadable (" in str(_problem(user))
    manifest_path(folder).write_text("{not json")
    error = _problem(folder)
    assert error.path == str(manifest_path(folder)) and error.artifact == str(folder)


@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("rows.parquet", b"PAR1 and then nothing", "ComputeError"),
        ("weights.safetensors", b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}', "SafetensorError"),
        ("scores.json", b'{"tasks": ', "JSONDecodeError"),
    ],
)
def test_unreadable_inputs_give_one_line_naming_the_file(tmp_path, name, content, cause):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorruptInput) as caught:
        check_readable(path)
    line = error_line(caught.value)
    assert line.startswith(f"Corrupt input: {path} is unreadable ({cause}: ") and "\n" not in line
    assert line.endswith("the pipeline does not build it: fix or replace it")
    reader = {".parquet": read_parquet, ".json": read_json}.get(path.suffix)
    if reader is not None:
        with pytest.raises(CorruptInput, match="is unreadable"):
            reader(path)


def test_readers_name_a_missing_file(tmp_path):
    for reader, name in ((read_parquet, "a.parquet"), (read_json, "a.json"), (read_csv, "a.csv")):
        with pytest.raises(CorruptInput) as caught:
            reader(tmp_path / name)
        assert str(caught.value) == f"{tmp_path / name} is missing"


def test_the_rebuild_command_names_the_rule_and_the_artifact():
    found = producer(f"/work/run/{ADAPTER}/adapter_model.safetensors")
    assert found == ("train_first_stage", f"/work/run/{ADAPTER}", "adapter")
    assert rebuild_command(f"{ADAPTER}/adapter_model.safetensors") == (
        f"snakemake --cores all --forcerun train_first_stage -- {ADAPTER}"
    )
    cases = {
        "results/train/toy/nf4/seed1/buf0.001/code/adapter": "train_stage",
        "results/data/boolq/train.parquet": "prepare_data",
        "results/base/toy": "build_base",
        "results/replay/seed0/bufn5/math.parquet": "replay_mix",
        # Files without a manifest that a later step reads: their readers name the rule too.
        "results/eval/toy/fp16/seed0/buf0/math/scores.json": "evaluate",
        "results/eval/toy/fp16/base/predictions.parquet": "evaluate",
        "results/train/toy/fp16/seed0/nlu/train.json": "train_first_stage",
        "results/metrics/toy/fp16/seed0/buf0.json": "cell_metrics",
        "results/tables/summary.csv": "aggregate",
    }
    for path, rule in cases.items():
        assert producer(path)[:2] == (rule, path)
    assert producer("data/mine.jsonl") is None and rebuild_command("data/mine.jsonl") is None


def test_one_line_errors_exits_with_the_line(adapter):
    _, folder = adapter
    os.truncate(folder / "adapter_model.safetensors", 10)
    with pytest.raises(SystemExit) as caught, one_line_errors():
        check_inputs([str(folder)])
    line = caught.value.code
    assert line.startswith(f"Corrupt input: {folder}/adapter_model.safetensors does not match its manifest")
    assert line.endswith(f"rebuild it with: snakemake --cores all --forcerun train_first_stage -- {folder}")


def test_checking_a_run_lists_every_corrupt_artifact(adapter):
    workdir, folder = adapter
    data = workdir / "results" / "data" / "boolq" / "train.parquet"
    data.parent.mkdir(parents=True)
    pl.DataFrame({"id": ["a"]}).write_parquet(data)
    write_manifest(data)
    os.truncate(folder / "adapter_model.safetensors", 10)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "quantreplay.manifest", "results"], cwd=workdir, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"Corrupt input: {ADAPTER}/adapter_model.safetensors does not match its manifest (10 bytes, "
        f"{json.loads(manifest_path(folder).read_text())['files']['adapter_model.safetensors']['bytes']} written); "
        f"rebuild it with: snakemake --cores all --forcerun train_first_stage -- {ADAPTER}"
    ]
    assert "2 artifacts checked, 1 corrupt" in proc.stderr
