"""Run folders: a new run starts as a copy of a finished one (protocol variants, the mechanism study)."""

import os
import subprocess
import sys

from quantreplay import runs


def test_a_run_is_seeded_only_from_a_finished_run_and_only_once(tmp_path):
    clean, variant = tmp_path / "clean", tmp_path / "drop_last"
    assert not runs.seed_run(clean, variant)
    (clean / "results" / "tables").mkdir(parents=True)
    (clean / runs.FINDINGS).write_text("claim\n")
    (clean / ".snakemake" / "metadata").mkdir(parents=True)
    (clean / ".snakemake" / "metadata" / "record").write_text("{}")
    (clean / ".snakemake" / "incomplete").mkdir()
    (clean / ".snakemake" / "incomplete" / "job").write_text("")
    # An output Snakemake marked incomplete: not a run to copy.
    assert not runs.seed_run(clean, variant)
    (clean / ".snakemake" / "incomplete" / "job").unlink()
    (clean / "results" / "tables" / "quant_error.csv").write_text("x\n")
    os.utime(clean / ".snakemake" / "metadata" / "record", (1_000_000, 1_000_000))
    assert runs.seed_run(clean, variant)
    assert os.stat(variant / ".snakemake" / "metadata" / "record").st_mtime == 1_000_000
    assert not (variant / ".snakemake" / "incomplete").exists()
    # The aggregate step's tables are remade in the variant (the telemetry's are kept): until then it has no
    # findings of its own, and shows none of the clean run's.
    assert (variant / "results" / "tables" / "quant_error.csv").is_file()
    assert not (variant / runs.FINDINGS).exists() and not runs.finished(variant)
    # Results of its own are never overwritten.
    (variant / runs.FINDINGS).write_text("mine\n")
    assert not runs.seed_run(clean, variant)
    assert (variant / runs.FINDINGS).read_text() == "mine\n"


def test_the_command_line_seeds_a_run_once_and_says_what_it_did(tmp_path):
    source, target = tmp_path / "default", tmp_path / "runs" / "mechanism"

    def seed():
        proc = subprocess.run([sys.executable, "-m", "quantreplay.runs", "seed", str(source), str(target)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return proc.stdout

    assert "holds no finished run; starting from scratch" in seed()
    assert not target.exists()
    (source / "results" / "train").mkdir(parents=True)
    (source / "results" / "train" / "adapter.bin").write_bytes(b"weights")
    (source / "results" / "tables").mkdir()
    (source / runs.FINDINGS).write_text("claim\n")
    assert "started from the finished run" in seed()
    assert (target / "results" / "train" / "adapter.bin").read_bytes() == b"weights"
    assert not (target / runs.FINDINGS).exists()
    (target / "results" / "train" / "adapter.bin").write_bytes(b"its own")
    assert "has results of its own; kept" in seed()
    assert (target / "results" / "train" / "adapter.bin").read_bytes() == b"its own"
