"""Benchmark: how fast the judge scores programs, on one core, with its sandboxes' start-up included.

Judges N trivial programs (a correct two-line function and two asserts), then the builtin pyfunc references of the
default config's test split, each in one pair of sandboxes as an evaluation does, pinned to one core.

    .venv/bin/python bench/judge.py            # 200 trivial programs
    .venv/bin/python bench/judge.py --programs 1000 --cpu 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from quantreplay.data.builtin import generate_task
from quantreplay.judge import Program, judge_programs
from quantreplay.quantize import cpu_capability
from quantreplay.sandbox import Limits, boundary


def timed(programs: list[Program], where) -> tuple[float, int]:
    started = time.perf_counter()
    verdicts = judge_programs(programs, Limits(), where)
    return time.perf_counter() - started, sum(v.passed for v in verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin the judge and its sandboxes to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    where = boundary()
    cpu = platform.processor() or platform.machine()
    print(f"CPU capability {cpu_capability()}, {cpu}, one core; {where.description}")
    trivial = [Program("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n")]
    seconds, passed = timed(trivial * args.programs, where)
    each = seconds / args.programs * 1e3
    print(f"{args.programs} trivial programs: {seconds:.2f} s ({passed} passed, {each:.1f} ms each)")
    rows = generate_task("pyfunc", seed=0, train_size=1, test_size=200)["test"]
    references = [Program.of(r["target"], r["code_prefix"], r["tests"], r["entry_point"]) for r in rows]
    ref_seconds, ref_passed = timed(references, where)
    print(f"{len(rows)} pyfunc references: {ref_seconds:.2f} s ({ref_passed} passed)")
    print(json.dumps({"cpu_capability": cpu_capability(), "trivial_s": seconds, "pyfunc_test_s": ref_seconds}))


if __name__ == "__main__":
    main()
