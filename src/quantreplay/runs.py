"""Run folders: whether one holds a finished run, and starting a new one as a copy of a finished run.

A run folder is what `snakemake --directory` works in: `results/`, `logs/`, `benchmarks/` and Snakemake's own
records (`.snakemake/metadata`). A run of another configuration that shares cells with a finished one (a protocol
variant, the mechanism study beside the default run) starts as a copy of it, modification times kept, so that
Snakemake's rerun triggers re-run only the jobs whose inputs, params or code differ (`seed_run`).

`python -m quantreplay.runs seed SOURCE TARGET` does that from the command line (the Makefile's run-mechanism).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

# What a run folder holds: its outputs, logs, benchmark files and Snakemake's records of how each output was made.
RUN_PARTS = ("results", "logs", "benchmarks", os.path.join(".snakemake", "metadata"))
FINDINGS = os.path.join("results", "tables", "findings.csv")


def finished(run_dir: str | os.PathLike) -> bool:
    """Whether a run folder holds a finished run: its findings table, and no output Snakemake marked incomplete."""
    incomplete = Path(run_dir) / ".snakemake" / "incomplete"
    return (Path(run_dir) / FINDINGS).is_file() and not (incomplete.is_dir() and any(incomplete.iterdir()))


def seed_run(source_dir: str | os.PathLike, target_dir: str | os.PathLike) -> bool:
    """Start `target_dir` as a copy of the finished run in `source_dir` (RUN_PARTS, modification times kept), so that
    only the jobs its configuration changes re-run. The aggregate step's tables are left out: they are remade in
    every run, and a run that stopped early must not show the source's findings as its own. Does nothing, and
    returns False, where the target already has results or the source is not a finished run."""
    from quantreplay.grid import PATHS, TABLES

    source, target = Path(source_dir), Path(target_dir)
    if (target / "results").exists() or not finished(source):
        return False
    for part in RUN_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, copy_function=shutil.copy2)
    for name in TABLES:
        (target / PATHS["table"].format(name=name)).unlink(missing_ok=True)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantreplay.runs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="start TARGET as a copy of the finished run in SOURCE (if it has none)")
    seed.add_argument("source", help="a finished run folder (e.g. '.', the checkout's own `make run`)")
    seed.add_argument("target", help="the new run folder")
    args = parser.parse_args(argv)
    if seed_run(args.source, args.target):
        print(f"{args.target}: started from the finished run in {args.source} (only what differs re-runs)")
    elif (Path(args.target) / "results").exists():
        print(f"{args.target}: has results of its own; kept")
    else:
        print(f"{args.target}: {args.source} holds no finished run; starting from scratch")


if __name__ == "__main__":
    main()
