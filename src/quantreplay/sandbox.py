"""The boundary around untrusted code: a bubblewrap sandbox, the same with or without root.

Completions come from a model and may loop, fork, allocate, write, delete, connect, read secrets, inspect
themselves, or signal and read other processes. The judge (quantreplay.judge) runs them in a host process
(quantreplay/judge/host.py) started inside Debian's bubblewrap (`bwrap`) with:

- new user, PID, network, IPC, UTS and cgroup namespaces: no network (not even loopback), no other process in
  sight or in reach of a signal, SysV/POSIX IPC objects that die with the sandbox, and no further user
  namespaces inside (`--disable-userns`); every capability dropped; uid and gid 65534 (nobody) inside;
- its own /proc and a minimal /dev; a read-only root holding only /usr (and the /bin, /lib, /lib64 links or
  folders) and the interpreter's own prefix; size-capped private tmpfs folders on /tmp and /dev/shm, emptied
  after each program; no /etc, /home, /root, /run, /var, and no results or data folders;
- an empty environment, a new session (no terminal to inject into), and death with its parent;
- when started as root: bwrap itself runs as the unprivileged user nobody (util-linux `setpriv`), so that
  outside its namespaces the sandbox holds no more rights than nobody.

Each program runs in a fresh process forked inside that sandbox with its own rlimits (CPU seconds, address
space, file size, open files, processes, no core files) and temporary folder.

What it does not promise: protection from kernel exploits (it is namespaces and rlimits, not a VM), a bound on
the wall-clock time a program takes before the judge's deadline kills it, or isolation of one program from
the next within a batch beyond a fresh process and empty temporary folders (the judge never gives a program
anything the next one could use to pass: see quantreplay.judge).

Where no such sandbox can be built (no bwrap, user namespaces disabled), `boundary()` raises
SandboxUnavailable with one line saying why and how to allow it. `boundary("unsafe-none")` runs the host as a
plain child process with the same rlimits and no boundary at all; it exists for machines where the user has
decided that the code may run unboxed, and says so in every score it produces.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from quantreplay.errors import OneLineError

# The config's choices for evaluation.code_sandbox.
SANDBOXES = ("bubblewrap", "unsafe-none")
NOBODY = 65534
# Run what follows as nobody:nogroup, with no supplementary groups (util-linux).
AS_NOBODY = ("/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--")
# Private tmpfs sizes inside the sandbox.
TMP_BYTES = 64 << 20
HOST_SOURCE = Path(__file__).with_name("judge") / "host.py"


class SandboxUnavailable(OneLineError, RuntimeError):
    """No sandbox of the asked kind can be built on this machine; the message is one line that says how to
    allow it."""

    prefix = "Sandbox error"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed program; every field must be positive."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    # 1 GiB of address space: enough for the interpreter and small data, not for a memory hog.
    memory_bytes: int = 1 << 30
    # 1 MiB per written file.
    output_bytes: int = 1 << 20
    open_files: int = 64
    # Processes of the sandbox's user: a fork bomb stops here.
    processes: int = 32

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_bytes", "output_bytes", "open_files", "processes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")

    def rlimits(self) -> dict[str, int]:
        """The limits as setrlimit names (the host sets each as both soft and hard limit in the child)."""
        return {
            "RLIMIT_CPU": int(self.cpu_seconds),
            "RLIMIT_AS": int(self.memory_bytes),
            "RLIMIT_FSIZE": int(self.output_bytes),
            "RLIMIT_NOFILE": int(self.open_files),
            "RLIMIT_NPROC": int(self.processes),
            "RLIMIT_CORE": 0,
        }


@dataclass(frozen=True)
class Boundary:
    """How a host process is started: `command(role, tmp)` is its argv; `isolated` says whether it is boxed."""

    kind: str
    prefix: tuple[str, ...]
    interpreter: str
    description: str

    @property
    def isolated(self) -> bool:
        return self.kind == "bubblewrap"

    def command(self, role: str, tmp: str = "/tmp") -> list[str]:
        source = HOST_SOURCE.read_text()
        return [*self.prefix, self.interpreter, "-I", "-S", "-B", "-c", source, role, tmp]


def _world_executable(path: str) -> bool:
    """Whether a user with no special rights can run `path` (every folder above it searchable by others)."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i])).st_mode & 0o001:
            return False
    return bool(os.stat(real).st_mode & 0o005 == 0o005)


def _interpreters() -> list[str]:
    """Pythons the sandbox can run (standard library only): this one's base interpreter, then the system's."""
    found = []
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        real = os.path.realpath(candidate)
        if os.path.exists(real) and real not in found:
            found.append(real)
    return found


def _prefix_of(interpreter: str) -> str:
    """The installation folder that holds the interpreter's standard library (`<prefix>/bin/python3.X`)."""
    return str(Path(interpreter).parent.parent)


def bwrap_arguments(interpreter: str) -> list[str]:
    """bwrap's options for a host running `interpreter` (see the module docstring for what each part is for)."""
    args = [
        "bwrap",
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--disable-userns",
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = _prefix_of(interpreter)
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm"]
    return [*args, "--chdir", "/tmp", "--"]


def _candidates() -> list[Boundary]:
    """The bubblewrap boundaries to try, safest first."""
    bwrap = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.path.exists("/usr/bin/bwrap") else None)
    if bwrap is None:
        return []
    as_nobody, as_caller = [], []
    root = os.geteuid() == 0
    for interpreter in _interpreters():
        args = bwrap_arguments(interpreter)
        args[0] = bwrap
        if root and os.path.exists("/usr/bin/setpriv") and _world_executable(interpreter):
            as_nobody.append(Boundary("bubblewrap", (*AS_NOBODY, *args), interpreter, "bubblewrap, started as nobody"))
        started_as = "root" if root else "the calling user"
        as_caller.append(Boundary("bubblewrap", tuple(args), interpreter, f"bubblewrap, started as {started_as}"))
    return as_nobody + as_caller


def _probe(candidate: Boundary) -> str | None:
    """None when a host can start in this boundary, else the first line of why not."""
    command = [*candidate.prefix, candidate.interpreter, "-I", "-S", "-c", "print('ok')"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env={}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc).splitlines()[0]
    if done.returncode == 0 and done.stdout.strip() == "ok":
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else f"exit status {done.returncode}"


HOW_TO_ALLOW = (
    "install Debian's bubblewrap (`make system-deps` as root, or `apt-get install bubblewrap`) and allow "
    "unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000`; "
    "in a container, run it with a seccomp profile that permits them), or set evaluation.code_sandbox: "
    "unsafe-none to run completions with no boundary at all"
)


@functools.cache
def boundary(kind: str = "bubblewrap") -> Boundary:
    """The boundary code scoring runs in; raises SandboxUnavailable (one line) where bubblewrap cannot work."""
    if kind == "unsafe-none":
        interpreter = _interpreters()[0]
        return Boundary("none", (), interpreter, "NO SANDBOX (evaluation.code_sandbox: unsafe-none)")
    if kind != "bubblewrap":
        raise ValueError(f"unknown sandbox {kind!r}: one of {', '.join(SANDBOXES)}")
    if sys.platform != "linux":
        raise SandboxUnavailable(f"code scoring needs a bubblewrap sandbox, which needs Linux; {HOW_TO_ALLOW}")
    candidates = _candidates()
    if not candidates:
        raise SandboxUnavailable(f"code scoring needs a bubblewrap sandbox; bwrap is not installed: {HOW_TO_ALLOW}")
    reasons = []
    for candidate in candidates:
        reason = _probe(candidate)
        if reason is None:
            return candidate
        reasons.append(reason)
    why = reasons[-1]
    raise SandboxUnavailable(f"code scoring needs a bubblewrap sandbox, and bwrap failed here ({why}): {HOW_TO_ALLOW}")
