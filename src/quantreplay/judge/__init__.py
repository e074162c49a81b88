"""Scoring code outside the candidate: the completion and the tests run in two sandboxes that share nothing.

For each program (a completion, with its code prefix, and a problem's tests):

1. the candidate host forks a child that runs the completion and reports which of the names the tests use it
   defines; that process never holds the tests, the expected values or any marker;
2. the tests host, a second sandbox, forks a child that runs the tests with each of those names bound to a proxy:
   calling it sends the arguments, as plain data, through this process to the candidate, and returns the
   candidate's result, decoded here and there as plain data (None, bool, int, float, complex, str, bytes, list,
   tuple, set, frozenset, dict; nothing else, no pickle), so `==` in the tests is Python's own;
3. this process relays every message and decides: a program passes exactly when the tests ran to the end,
   within the wall-clock limit, while the candidate's process was alive and spoke only in answer to calls.

Both hosts live for a batch (quantreplay.sandbox starts them); each program gets fresh processes with their own
limits and temporary folders, and everything a program started is killed before the next one begins.
This module and host.py use the standard library only, so the judge also runs under a plain system Python.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quantreplay.judge.host import CHILD, HOST, FrameReader, send
from quantreplay.sandbox import Boundary, Limits, SandboxUnavailable

# Seconds a host may take to start, and to clean up after a program, before it is killed and started anew.
START_SECONDS = 30.0
CLEAN_SECONDS = 5.0
# What the tests may ask of the candidate's objects.
REQUESTS = ("call", "getattr", "setattr")


@dataclass(frozen=True)
class Program:
    """One completion to judge: `source` is the code prefix and the completion; `tests` raise if it is wrong;
    `entry_point` is the function the tests call (it may shadow a built-in, as MBPP's `sum` does)."""

    source: str
    tests: str
    entry_point: str | None = None

    @classmethod
    def of(cls, completion: str, code_prefix: str | None, tests: str, entry_point: str | None = None) -> Program:
        """A code row's program: its prefix (a signature prompt, or nothing) followed by the completion."""
        return cls(f"{code_prefix or ''}{completion}\n", tests, entry_point)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def imported_names(program: Program) -> list[str]:
    """The names the tests take from the completion: those they read and do not define, except built-ins (a
    completion that redefines `abs` must not change the tests' `abs`), plus the entry point."""
    try:
        tree = ast.parse(program.tests)
    except SyntaxError:
        return [program.entry_point] if program.entry_point else []
    loaded = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    names = loaded - set(dir(builtins))
    return sorted(names | {program.entry_point} if program.entry_point else names)


class _Host:
    """One sandboxed host process, as this process sees it: start, send, read frames, stop."""

    def __init__(self, role: str, boundary: Boundary):
        self.role, self.boundary = role, boundary
        self.proc: subprocess.Popen | None = None
        self.scratch: str | None = None

    def start(self) -> None:
        tmp = "/tmp"
        if not self.boundary.isolated:
            self.scratch = tmp = tempfile.mkdtemp(prefix=f"quantreplay-{self.role}-")
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.boundary.command(self.role, tmp),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            env={},
            bufsize=0,
            start_new_session=True,
        )
        self.reader = FrameReader(channels=True)
        hello = self.next(time.monotonic() + START_SECONDS)
        if hello is None or hello[:2] != (HOST, "hello"):
            self.errors.seek(0)
            why = self.errors.read(2000).decode(errors="replace").strip().splitlines()
            self.stop()
            raise SandboxUnavailable(
                f"the {self.role} sandbox ({self.boundary.description}) did not start: "
                + (why[-1] if why else "no output")
            )

    def ensure(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, message: dict) -> bool:
        try:
            send(self.proc.stdin.fileno(), message)
            return True
        except (OSError, RecursionError):
            return False

    def pump(self) -> bool:
        """Read what is available into the frame reader; False at end of file or on a malformed frame."""
        data = os.read(self.fileno(), 1 << 16)
        if not data:
            return False
        try:
            self.reader.feed(data)
        except ValueError:
            return False
        return True

    def next(self, deadline: float):
        """The next (channel, op, message), or None at the deadline or if the host died."""
        while not self.reader.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self], [], [], left)[0] or not self.pump():
                return None
        channel, payload = self.reader.take()
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError):
            return (channel, "malformed", {})
        return (channel, message.get("op") if isinstance(message, dict) else "malformed", message)

    def end(self) -> bool:
        """Ask the host to end the current program; False if it cannot hear it (it is stopped then)."""
        if self.proc is None:
            return False
        if not self.send({"op": "end"}):
            self.stop()
            return False
        return True

    def await_clean(self) -> None:
        """Wait until the host has killed what the program started and emptied its folders; a host that does not
        say so in time is stopped, and started again for the next program."""
        deadline = time.monotonic() + CLEAN_SECONDS
        while (event := self.next(deadline)) is not None:
            if event[:2] == (HOST, "clean"):
                return
        self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                stream.close()
            self.errors.close()
            self.proc = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


class Judge:
    """A candidate host and a tests host for a batch of programs; a context manager."""

    def __init__(self, limits: Limits, boundary: Boundary):
        self.limits, self.boundary = limits, boundary
        self.candidate = _Host("candidate", boundary)
        self.tests = _Host("tests", boundary)

    def __enter__(self) -> Judge:
        self.candidate.start()
        self.tests.start()
        return self

    def __exit__(self, *exc) -> None:
        self.candidate.stop()
        self.tests.stop()

    def judge(self, program: Program) -> Verdict:
        self.candidate.ensure()
        self.tests.ensure()
        deadline = time.monotonic() + self.limits.wall_seconds
        try:
            return self._relay(program, deadline)
        finally:
            # Both hosts clean up at once.
            ending = [host for host in (self.candidate, self.tests) if host.end()]
            for host in ending:
                host.await_clean()

    def _relay(self, program: Program, deadline: float) -> Verdict:
        names = imported_names(program)
        rlimits = self.limits.rlimits()
        if not self.candidate.send({"op": "load", "source": program.source, "names": names, "limits": rlimits}):
            return Verdict(False, "the candidate sandbox stopped")
        exports: dict | None = None
        calling = False
        while True:
            left = deadline - time.monotonic()
            ready = select.select([self.candidate, self.tests], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                return Verdict(False, f"timed out after {self.limits.wall_seconds:g} s")
            for host in ready:
                if not host.pump():
                    return Verdict(False, f"the {host.role} sandbox stopped")
            while (event := self.candidate.next(0)) is not None:
                channel, op, message = event
                if channel == HOST and op == "exited":
                    return Verdict(False, f"the completion's process exited (status {message.get('status')})")
                if channel == HOST:
                    return Verdict(False, f"the completion broke the protocol: {message.get('reason', op)}")
                if op == "error" and exports is None:
                    return Verdict(False, f"the completion raised {message.get('reason', '')}".strip())
                if op == "ready" and exports is None and isinstance(message.get("exports"), dict):
                    exports = message["exports"]
                    load = {"op": "load", "source": program.tests, "exports": exports, "limits": rlimits}
                    if not self.tests.send(load):
                        return Verdict(False, "the tests sandbox stopped")
                elif op in ("return", "raise") and calling:
                    calling = False
                    if not self.tests.send(message):
                        return Verdict(False, "the tests sandbox stopped")
                else:
                    return Verdict(False, f"the completion broke the protocol: unexpected {op!r}")
            while (event := self.tests.next(0)) is not None:
                channel, op, message = event
                if channel == CHILD and op == "verdict":
                    return Verdict(message.get("passed") is True, str(message.get("reason", ""))[:300])
                if channel == CHILD and op in REQUESTS and not calling:
                    calling = True
                    if not self.candidate.send(message):
                        return Verdict(False, "the candidate sandbox stopped")
                elif channel == HOST and op == "exited":
                    status = message.get("status")
                    return Verdict(False, f"the tests' process exited without a verdict (status {status})")
                else:
                    return Verdict(False, f"the tests broke the protocol: unexpected {op!r}")


def judge_programs(programs: Iterable[Program], limits: Limits, boundary: Boundary) -> list[Verdict]:
    """Judge programs in order in one pair of sandboxes."""
    with Judge(limits, boundary) as judge:
        return [judge.judge(program) for program in programs]


def count_passes(
    completions: Sequence[Sequence[str]],
    prefixes: Sequence[str | None],
    tests: Sequence[str],
    entry_points: Sequence[str | None],
    limits: Limits,
    boundary: Boundary,
) -> list[int]:
    """How many of each problem's completions pass its tests."""
    problems = list(zip(completions, prefixes, tests, entry_points, strict=True))
    programs = [Program.of(c, prefix, test, entry) for outputs, prefix, test, entry in problems for c in outputs]
    verdicts = iter(judge_programs(programs, limits, boundary))
    return [sum(next(verdicts).passed for _ in outputs) for outputs, *_ in problems]
