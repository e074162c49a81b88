"""Score code completions from anywhere: `python -m quantreplay.judge TESTS.parquet SAMPLES.jsonl`.

TESTS.parquet holds problems with the columns `id`, `tests`, and optionally `code_prefix` (prepended to each
completion) and `entry_point` (the function the tests call): a code task's test split as prepare_data writes
it (results/data/<task>/test.parquet). SAMPLES.jsonl holds lines `{"id": ..., "completion": ...}`, several per
id if you like. Each sample is judged as the pipeline judges its own completions (quantreplay.judge), and one
line `{"id": ..., "passed": true|false, "reason": "..."}` per sample, in order, goes to stdout (or --output).
Exit 0 when every sample was judged; 2 with one line on stderr for bad input or where no sandbox can be built.
"""

from __future__ import annotations

import argparse
import json
import sys

from quantreplay.judge import Judge, Program
from quantreplay.sandbox import SANDBOXES, Limits, SandboxUnavailable, boundary


def read_problems(path: str) -> dict[str, dict]:
    import polars as pl

    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    missing = [c for c in ("id", "tests") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (a code task's test split has id and tests)")
    return {str(row["id"]): row for row in frame.iter_rows(named=True)}


def read_samples(path: str, problems: dict) -> list[tuple[str, str]]:
    samples = []
    try:
        lines = open(path, encoding="utf-8").read().splitlines() if path != "-" else sys.stdin.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            key, completion = str(sample["id"]), sample["completion"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path}:{number}: not a JSON object with id and completion") from None
        if key not in problems:
            raise ValueError(f"{path}:{number}: id {key!r} is not in the tests file")
        if not isinstance(completion, str):
            raise ValueError(f"{path}:{number}: completion is not a string")
        samples.append((key, completion))
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantreplay.judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", help="parquet file with id, tests[, code_prefix, entry_point]")
    parser.add_argument("samples", help="JSON lines with id and completion ('-' for stdin)")
    parser.add_argument("--output", "-o", help="write the results here instead of stdout")
    parser.add_argument("--sandbox", choices=SANDBOXES, default="bubblewrap")
    parser.add_argument("--wall-seconds", type=float, default=Limits.wall_seconds)
    parser.add_argument("--cpu-seconds", type=int, default=Limits.cpu_seconds)
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_bytes >> 20)
    args = parser.parse_args(argv)
    try:
        limits = Limits(
            wall_seconds=args.wall_seconds, cpu_seconds=args.cpu_seconds, memory_bytes=args.memory_mb << 20
        )
        problems = read_problems(args.tests)
        samples = read_samples(args.samples, problems)
        where = boundary(args.sandbox)
    except (ValueError, SandboxUnavailable) as exc:
        print(f"judge: {exc}", file=sys.stderr)
        return 2
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        with Judge(limits, where) as judge:
            for key, completion in samples:
                problem = problems[key]
                verdict = judge.judge(
                    Program.of(completion, problem.get("code_prefix"), problem["tests"], problem.get("entry_point"))
                )
                out.write(json.dumps({"id": key, "passed": verdict.passed, "reason": verdict.reason}) + "\n")
                out.flush()
    except SandboxUnavailable as exc:
        print(f"judge: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
