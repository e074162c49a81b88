"""The program that runs inside a code-scoring sandbox: a host that forks a fresh child for each program.

This file is self-contained (standard library only, no quantreplay imports): the judge runs its source with
`python -I -S -c`, inside the sandbox, as one of two hosts per batch of programs.

- The candidate host's children each run one completion (the code prefix and the completion, nothing else:
  no tests, no expected values, no marker) and then answer calls of its functions, one at a time.
- The tests host's children each run one problem's tests, with every name the tests take from the completion
  bound to a proxy that calls the candidate through the judge. Only plain data crosses (see `pack`), so a
  result is compared by the tests' own `==`, never by an object the candidate made.

The judge (outside both sandboxes) relays every call and takes the pass/fail decision. Frames on every pipe are
a 4-byte big-endian length and a JSON document; a host prefixes what it forwards from its child with b"c" and
its own messages with b"h", so a child can never speak for its host.
"""

from __future__ import annotations

import base64
import builtins
import collections
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys

MAX_FRAME = 1 << 26
HEADER = struct.Struct(">I")
CHILD, HOST = b"c", b"h"
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
# Set by main: the host's scratch folder, and whether it is a sandbox's own (so /dev/shm may be emptied too).
TMP = "/tmp"
ISOLATED = True


class NotPlain(TypeError):
    """A value that may not cross between candidate and tests."""


# ---------------------------------------------------------------------------------------------------------
# Plain data: None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict, as JSON with a tag
# for every type JSON lacks. An instance of a subclass crosses as its base type's value, read with the base
# type's own methods (a Counter as a dict), so no method of a candidate's class ever runs on the tests' side.
# Anything else the candidate returns crosses as a reference (["r", n]): the tests can pass it back, call it,
# and get or set its attributes, each through the judge; it equals only itself and has no truth value.
# ---------------------------------------------------------------------------------------------------------

SEQUENCES = ((list, "l"), (tuple, "t"), (frozenset, "z"), (set, "s"))
MAKERS = {"l": list, "t": tuple, "z": frozenset, "s": set}


def pack(value, refer=None):
    """`value` as JSON; `refer(value) -> int` names what is not plain data (without it, NotPlain)."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return ["i", int.__int__(value)]
    if isinstance(value, float):
        return ["f", float.hex(value)]
    if isinstance(value, complex):
        return ["c", float.hex(complex.real.__get__(value)), float.hex(complex.imag.__get__(value))]
    if isinstance(value, bytes):
        return ["b", base64.b64encode(bytes.__bytes__(value)).decode("ascii")]
    for kind, tag in SEQUENCES:
        if isinstance(value, kind):
            return [tag, [pack(item, refer) for item in kind.__iter__(value)]]
    if isinstance(value, dict):
        return ["d", [[pack(k, refer), pack(v, refer)] for k, v in dict.items(value)]]
    if refer is None:
        raise NotPlain(f"a {type(value).__name__} is not plain data")
    return ["r", refer(value)]


def unpack(packed, resolve=None):
    """The value `pack` made; `resolve(n)` turns a reference back into an object (without it, ValueError)."""
    if packed is None or type(packed) in (bool, str):
        return packed
    if type(packed) is not list or not packed or type(packed[0]) is not str:
        raise ValueError(f"not a packed value: {packed!r:.80}")
    tag, rest = packed[0], packed[1:]
    if tag == "i" and len(rest) == 1 and type(rest[0]) is int:
        return rest[0]
    if tag == "f" and len(rest) == 1:
        return float.fromhex(rest[0])
    if tag == "c" and len(rest) == 2:
        return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
    if tag == "b" and len(rest) == 1:
        return base64.b64decode(rest[0], validate=True)
    if tag in MAKERS and len(rest) == 1 and type(rest[0]) is list:
        return MAKERS[tag](unpack(item, resolve) for item in rest[0])
    if tag == "d" and len(rest) == 1 and type(rest[0]) is list:
        if not all(type(pair) is list and len(pair) == 2 for pair in rest[0]):
            raise ValueError(f"not a packed dict: {packed!r:.80}")
        return {unpack(k, resolve): unpack(v, resolve) for k, v in rest[0]}
    if tag == "r" and len(rest) == 1 and type(rest[0]) is int and resolve is not None:
        return resolve(rest[0])
    raise ValueError(f"not a packed value: {packed!r:.80}")


# ---------------------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------------------


def write_frame(fd: int, payload: bytes, channel: bytes = b"") -> None:
    view = memoryview(channel + HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def send(fd: int, message: dict, channel: bytes = b"") -> None:
    write_frame(fd, json.dumps(message).encode(), channel)


class FrameReader:
    """Frames from a read loop: `feed` it what os.read returned, then `take` the complete frames in order.

    With `channels`, each frame starts with one channel byte and is taken as (channel, payload). A frame longer
    than MAX_FRAME raises ValueError, so a peer cannot make the reader hold more than that.
    """

    def __init__(self, channels: bool = False):
        self.buffer = bytearray()
        self.channels = int(channels)
        self.pending = collections.deque()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        head = HEADER.size + self.channels
        while len(self.buffer) >= head:
            (length,) = HEADER.unpack_from(self.buffer, self.channels)
            if length > MAX_FRAME:
                raise ValueError(f"a frame of {length} bytes, over {MAX_FRAME}")
            if len(self.buffer) < head + length:
                break
            payload = bytes(self.buffer[head : head + length])
            self.pending.append((bytes(self.buffer[:1]), payload) if self.channels else payload)
            del self.buffer[: head + length]

    def take(self):
        return self.pending.popleft() if self.pending else None


def receive(fd: int, reader: FrameReader):
    """The next message from a blocking fd, or None at end of file."""
    while not reader.pending:
        data = os.read(fd, 1 << 16)
        if not data:
            return None
        reader.feed(data)
    return json.loads(reader.take())


# ---------------------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------------------


def describe(exc: BaseException, filename: str) -> str:
    """'AssertionError at line 3: message' for the innermost frame of `filename` the exception went through."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" at line {line}" if line is not None else ""
    message = str(exc)
    return f"{type(exc).__name__}{where}" + (f": {message[:200]}" if message else "")


def run_candidate(source: str, names: list, inbox: int, outbox: int) -> None:
    """Run the completion, export those of `names` it defines, then answer requests until the pipe closes."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, "<completion>", "exec"), namespace)
    except BaseException as exc:
        send(outbox, {"op": "error", "reason": describe(exc, "<completion>")})
        return
    objects: list = []

    def refer(value) -> int:
        objects.append(value)
        return len(objects) - 1

    def resolve(ref: int):
        return objects[ref]

    send(outbox, {"op": "ready", "exports": {n: pack(namespace[n], refer) for n in names if n in namespace}})
    reader = FrameReader()
    while (message := receive(inbox, reader)) is not None:
        try:
            target = resolve(message["target"])
            if message["op"] == "call":
                result = target(*unpack(message["args"], resolve), **unpack(message["kwargs"], resolve))
            elif message["op"] == "getattr":
                result = getattr(target, message["name"])
            else:
                result = setattr(target, message["name"], unpack(message["value"], resolve))
            reply = {"op": "return", "value": pack(result, refer)}
        except BaseException as exc:
            reply = {"op": "raise", "type": type(exc).__name__, "message": str(exc)[:200]}
        send(outbox, reply)


class CandidateGone(BaseException):
    """The candidate stopped answering; a BaseException so that a test's `except Exception` cannot hide it."""


class CandidateError(Exception):
    """The candidate raised an exception that is not one of Python's built-in ones."""


# The tests child's pipes to the candidate (through its host and the judge), set by run_tests.
CHANNEL: tuple = ()


def _ask(message: dict):
    inbox, outbox, reader = CHANNEL
    send(outbox, message)
    reply = receive(inbox, reader)
    if reply is None or reply.get("op") not in ("return", "raise"):
        raise CandidateGone(message["op"])
    if reply["op"] == "return":
        return unpack(reply["value"], Remote)
    error = getattr(builtins, str(reply.get("type")), None)
    if not (isinstance(error, type) and issubclass(error, Exception)):
        error = CandidateError
    raise error(str(reply.get("message", "")))


def _ref(value) -> int:
    if type(value) is Remote:
        return object.__getattribute__(value, "ref")
    raise NotPlain(f"a {type(value).__name__} is not plain data")


class Remote:
    """An object that lives in the candidate's process, seen from the tests: a reference and nothing more."""

    __slots__ = ("ref",)

    def __init__(self, ref: int):
        object.__setattr__(self, "ref", ref)

    def __call__(self, *args, **kwargs):
        return _ask({"op": "call", "target": self.ref, "args": pack(list(args), _ref), "kwargs": pack(kwargs, _ref)})

    def __getattr__(self, name: str):
        return _ask({"op": "getattr", "target": self.ref, "name": name})

    def __setattr__(self, name: str, value) -> None:
        _ask({"op": "setattr", "target": self.ref, "name": name, "value": pack(value, _ref)})

    def __eq__(self, other) -> bool:
        return type(other) is Remote and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(("candidate object", self.ref))

    def __bool__(self) -> bool:
        raise TypeError("an object of the candidate's has no plain truth value")

    def __repr__(self) -> str:
        return f"<candidate object {self.ref}>"


def run_tests(source: str, exports: dict, inbox: int, outbox: int) -> None:
    """Run the tests with the candidate's exports bound to their names; report the verdict."""
    global CHANNEL
    CHANNEL = (inbox, outbox, FrameReader())
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        namespace.update({name: unpack(packed, Remote) for name, packed in exports.items()})
        exec(compile(source, "<tests>", "exec"), namespace)
        verdict = {"op": "verdict", "passed": True, "reason": "passed"}
    except BaseException as exc:
        verdict = {"op": "verdict", "passed": False, "reason": describe(exc, "<tests>")}
    send(outbox, verdict)


# ---------------------------------------------------------------------------------------------------------
# Host
# ---------------------------------------------------------------------------------------------------------


def _start_child(role: str, message: dict, serial: int) -> tuple[int, int, int]:
    """Fork the program's child; the host keeps its pid and its two pipe ends (to the child, from it)."""
    child_in, host_out = os.pipe()
    host_in, child_out = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(host_out)
            os.close(host_in)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.setsid()
            workdir = f"{TMP}/run{serial}"
            os.mkdir(workdir, 0o700)
            os.chdir(workdir)
            os.environ.clear()
            os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin"})
            for name, value in message["limits"].items():
                resource.setrlimit(getattr(resource, name), (value, value))
            if role == "candidate":
                run_candidate(message["source"], message["names"], child_in, child_out)
            else:
                run_tests(message["source"], message["exports"], child_in, child_out)
        finally:
            os._exit(0)
    os.close(child_in)
    os.close(child_out)
    return pid, host_out, host_in


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    # After the parenthesised command: state, ppid, ...
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _clean_up() -> None:
    """Kill and reap everything the program started, then empty its temporary folders.

    In a sandbox the host shares its PID namespace only with the sandbox's init and the program's processes, so
    one kill(-1) takes them all at once (the kernel lets no fork complete meanwhile). Without one, the host is
    its children's subreaper: whatever the program forked, even a daemon that left its session, comes back to
    the host as a child when its parent dies, and is killed in the next round.
    """
    if ISOLATED:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap()
    while children := _children():
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            pass
        _reap()
    for folder in (TMP, "/dev/shm") if ISOLATED else (TMP,):
        for entry in os.listdir(folder) if os.path.isdir(folder) else ():
            path = os.path.join(folder, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _serve_program(role: str, message: dict, serial: int, judge: FrameReader) -> bool:
    """Run one program's child and relay between it and the judge until the judge says end; False at EOF."""
    pid, to_child, from_child = _start_child(role, message, serial)
    child = FrameReader()
    watched = [0, from_child]
    try:
        while True:
            ready, _, _ = select.select(watched, [], [])
            if from_child in ready:
                data = os.read(from_child, 1 << 16)
                try:
                    child.feed(data)
                except ValueError as exc:
                    send(1, {"op": "violation", "reason": str(exc)}, HOST)
                    os.kill(pid, signal.SIGKILL)
                    data = b""
                while (payload := child.take()) is not None:
                    write_frame(1, payload, CHILD)
                if not data:
                    watched.remove(from_child)
                    _, status = os.waitpid(pid, 0)
                    send(1, {"op": "exited", "status": os.waitstatus_to_exitcode(status)}, HOST)
            if 0 in ready:
                data = os.read(0, 1 << 16)
                if not data:
                    return False
                judge.feed(data)
                while (payload := judge.take()) is not None:
                    if json.loads(payload).get("op") == "end":
                        return True
                    if from_child in watched:
                        try:
                            write_frame(to_child, payload)
                        except BrokenPipeError:
                            pass
    finally:
        os.close(to_child)
        os.close(from_child)
        _clean_up()
        send(1, {"op": "clean"}, HOST)


def main(role: str, tmp: str) -> None:
    """Serve programs for the judge on stdin/stdout. `tmp` is the host's private scratch folder: "/tmp" in a
    sandbox (a tmpfs of its own, emptied after each program, with /dev/shm), else a folder made for this host."""
    global ISOLATED, TMP
    ISOLATED, TMP = tmp == "/tmp", tmp
    libc = ctypes.CDLL(None, use_errno=True)
    # Not dumpable: the children (forked, not exec'd, so they keep this) cannot ptrace each other or the host,
    # nor read another's /proc/<pid>/mem. Subreaper: see _clean_up.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    judge = FrameReader()
    send(1, {"op": "hello", "python": sys.version.split()[0]}, HOST)
    serial = 0
    while True:
        message = receive(0, judge)
        if message is not None and message.get("op") == "end":
            # An end with no program running (the completion failed before the tests were loaded): already clean.
            send(1, {"op": "clean"}, HOST)
            continue
        if message is None or message.get("op") != "load":
            return
        serial += 1
        if not _serve_program(role, message, serial, judge):
            return


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
