"""Warm start: a model job runs in a fork of a process that has already imported torch, transformers, peft and
bitsandbytes, so it starts in about a second instead of the 6-8 s those imports take on every job.

The job's own process (the Snakemake script) stays thin: `run_job` sends what the job is (a function named as
`module:function` and its keyword arguments), the job's working directory, environment, sys.path, CPU affinity and
its stdin/stdout/stderr (file descriptors, over a Unix socket) to a per-user warm server, and waits. The server
forks a supervisor per job, which forks the job; the job imports this checkout's quantreplay afresh (only
third-party modules come from the server), runs, and its exit status comes back as the script's. If the script is
killed (Snakemake cancelling a run), its socket closes and the supervisor kills the job's process group.

The first job of a run starts the server (under a lock, so parallel jobs start one); it exits after
`IDLE_SECONDS` without jobs. Each interpreter, checkout, set of library versions and environment those libraries
read on import (ATEN_CPU_CAPABILITY, OMP_*, ...) has its own server, so an upgraded package, another checkout or
a CPU-capability override never runs in a stale one. A job runs in its own process instead, as it
would without this module, where a fork cannot serve it: under SLURM (the job's cgroup and accounting must hold
the work), on a machine with an NVIDIA GPU (CUDA does not survive a fork), off Linux, or with
QUANTREPLAY_WARM_START=0.

Snakemake's benchmark file measures the script's process tree, which does not hold a warm job; the script
therefore writes the job's own measurement beside its log (`worker_record`), which quantreplay.cost adds in.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib
import os
import pickle
import select
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from quantreplay.lm import JOB_START_ENV, process_start_uptime

# What every model job imports and nothing in the server runs: polars and tokenizers start thread pools that do
# not survive a fork, and they import in a fraction of a second anyway.
PRELOAD = ("torch", "transformers", "transformers.models.llama.modeling_llama", "peft", "bitsandbytes")
IDLE_SECONDS = 300
DISABLE_ENV = "QUANTREPLAY_WARM_START"
# How long a job waits for a server it started to import PRELOAD (a cold disk can take 30 s).
START_TIMEOUT = 120
_LENGTH = struct.Struct("!Q")
# Environment read when those libraries are imported (CPU kernels, thread pools, caches, the loader): a server
# started under other values would not compute as the job's own process would.
IMPORT_ENV_PREFIXES = ("ATEN_", "ONEDNN_", "DNNL_", "MKL_", "OMP_", "KMP_", "OPENBLAS_", "PYTORCH_", "TORCH",
                       "BNB_", "TRANSFORMERS_", "HF_", "CUDA_", "LD_")  # fmt: skip


def run_job(target: str, kwargs: dict, *, log: str | None = None) -> None:
    """Run `target` (`module:function`) with `kwargs` and `log` (a function printing one line to stderr), as this
    process's job: in a warm fork where `warm_start_possible()`, else here. Exits as the job exited.

    `log` is the job's log file: a warm job's wall and CPU time and peak memory are written beside it
    (`worker_record`), and a stale record from an earlier warm run is removed before a job runs here.
    """
    sidecar = worker_record(log) if log else None
    if sidecar:
        Path(sidecar).unlink(missing_ok=True)
    connection = _connect() if warm_start_possible() else None
    if connection is None:
        sys.exit(_run_here(target, kwargs))
    started = time.perf_counter()
    status, usage = _run_warm(connection, target, kwargs)
    if sidecar:
        _write_benchmark(sidecar, wall=time.perf_counter() - started, usage=usage)
    sys.exit(status)


def warm_start_possible() -> bool:
    """Whether a fork of the warm server can run this process's job (see the module's docstring)."""
    return (
        sys.platform == "linux"
        and os.environ.get(DISABLE_ENV, "1") != "0"
        and "SLURM_JOB_ID" not in os.environ
        and not Path("/dev/nvidiactl").exists()
    )


def worker_record(log: str) -> str:
    """Where a warm job's own measurement goes: beside its log, in the columns of Snakemake's benchmark files."""
    return log.removesuffix(".log") + ".worker.tsv"


def _run_here(target: str, kwargs: dict) -> int:
    function = _resolve(target)
    return _exit_status(lambda: function(**kwargs, log=_log_line))


def _log_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _exit_status(call) -> int:
    """Run `call` as a script's body runs: its exit status, with SystemExit and errors reported as Python would."""
    from quantreplay.errors import one_line_errors

    try:
        with one_line_errors():
            call()
        return 0
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


# --- the client: find or start the server, send the job, wait -----------------------------------------------


def server_key() -> str:
    """What a server must share with a job to serve it: the interpreter, this checkout, the library versions and
    the environment they read on import."""
    from importlib.metadata import PackageNotFoundError, version

    # Not quantreplay.io.package_versions: io imports polars, whose threads must not reach a server that forks.
    versions = []
    for name in sorted({m.split(".")[0] for m in PRELOAD}):
        try:
            versions.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name}=none")
    environment = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(IMPORT_ENV_PREFIXES))
    parts = [sys.executable, sys.prefix, str(Path(__file__).resolve()), Path(__file__).read_text(), *versions,
             *environment]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def socket_folder() -> Path:
    """Where this user's servers listen: a folder only this user can enter."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"quantreplay-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise PermissionError(f"{folder} is not private to this user")
    return folder


def socket_path() -> Path:
    """The socket of the server for this process's jobs."""
    return socket_folder() / f"{server_key()}.sock"


def _try_connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
        return client
    except OSError:
        client.close()
        return None


def _connect() -> socket.socket | None:
    """A connection to this job's server, started if none runs; None if none can be had (the job runs here)."""
    try:
        path = socket_path()
        connection = _try_connect(path)
        if connection:
            return connection
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            connection = _try_connect(path)
            if connection:
                return connection
            path.unlink(missing_ok=True)
            server = _start_server(path)
            deadline = time.monotonic() + START_TIMEOUT
            while server and time.monotonic() < deadline and Path(f"/proc/{server}").exists():
                connection = _try_connect(path)
                if connection:
                    return connection
                time.sleep(0.05)
            return None
    except OSError:
        return None


def _start_server(path: Path) -> int | None:
    """Start a server for `path`; its pid, or None if it could not start.

    The launcher forks the server and exits, so the server is no child of this job: Snakemake's benchmark of this
    job would otherwise count every job the server runs while this one lives. Its own session: neither
    Snakemake's Ctrl-C nor the end of this job reaches it.
    """
    import subprocess

    try:
        launcher = subprocess.run(
            [sys.executable, "-m", "quantreplay.warm", "serve", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return int(launcher.stdout) if launcher.returncode == 0 and launcher.stdout.strip().isdigit() else None


def _run_warm(connection: socket.socket, target: str, kwargs: dict) -> tuple[int, dict]:
    umask = os.umask(0)
    os.umask(umask)
    started = process_start_uptime()
    request = pickle.dumps({
        "target": target,
        # Unpickled by the job after it imports this checkout's modules: settings objects stay this checkout's.
        "kwargs": pickle.dumps(kwargs),
        "cwd": os.getcwd(),
        "env": {**os.environ, **({JOB_START_ENV: repr(started)} if started is not None else {})},
        "path": sys.path,
        "argv": sys.argv,
        "umask": umask,
        "affinity": sorted(os.sched_getaffinity(0)),
    })  # fmt: skip
    fds = [_fileno(sys.stdin, os.O_RDONLY), _fileno(sys.stdout, os.O_WRONLY), _fileno(sys.stderr, os.O_WRONLY)]
    with connection:
        socket.send_fds(connection, [_LENGTH.pack(len(request))], fds)
        connection.sendall(request)
        reply = _receive(connection)
    if reply is None:
        print("warm start: the job's server went away before the job ended", file=sys.stderr)
        return 1, {}
    return pickle.loads(reply)


def _fileno(stream, mode: int) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return os.open(os.devnull, mode)


def _receive(connection: socket.socket) -> bytes | None:
    header = _read_exactly(connection, _LENGTH.size)
    return None if header is None else _read_exactly(connection, _LENGTH.unpack(header)[0])


def _read_exactly(connection: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = connection.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write_benchmark(path: str, *, wall: float, usage: dict) -> None:
    # Snakemake's column names (quantreplay.cost.BENCHMARK_COLUMNS); max_rss in MB. Written whole or not at all.
    staging = f"{path}.{os.getpid()}.partial"
    Path(staging).write_text(
        f"s\tcpu_time\tmax_rss\n{wall:.4f}\t{usage.get('cpu_seconds', 0.0):.2f}\t{usage.get('max_rss_mb', 0.0):.2f}\n"
    )
    os.replace(staging, path)


# --- the server: preload, accept, fork a supervisor per job ---------------------------------------------------


def serve(path: str, *, idle_seconds: float = IDLE_SECONDS) -> None:
    """Import PRELOAD, then serve jobs on the socket at `path` until `idle_seconds` pass without one."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(64)
    os.rename(staging, path)
    bound = os.stat(path).st_ino
    supervisors: set[int] = set()
    last_job = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([listener], [], [], 1.0)
            supervisors -= {pid for pid in supervisors if os.waitpid(pid, os.WNOHANG)[0]}
            if ready:
                connection, _ = listener.accept()
                if _peer_uid(connection) != os.getuid():
                    connection.close()
                    continue
                last_job = time.monotonic()
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    _supervise(connection)
                supervisors.add(pid)
                connection.close()
            elif not supervisors and time.monotonic() - last_job > idle_seconds:
                return
            if _inode(path) != bound:
                return  # removed (`stop`) or replaced: a newer server serves this key
    finally:
        if _inode(path) == bound:
            os.unlink(path)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _peer_uid(connection: socket.socket) -> int:
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _supervise(connection: socket.socket) -> None:
    """Fork the job, wait for it, send back its status and usage; kill it if the client goes away. Never returns."""
    try:
        header, fds, _, _ = socket.recv_fds(connection, _LENGTH.size, 3)
        header += _read_exactly(connection, _LENGTH.size - len(header)) or b""
        request = _read_exactly(connection, _LENGTH.unpack(header)[0]) if len(header) == _LENGTH.size else None
        if request is None or len(fds) != 3:
            os._exit(1)
        job = os.fork()
        if job == 0:
            connection.close()
            _run_forked(pickle.loads(request), fds)
        for fd in fds:
            os.close(fd)
        finished = os.pidfd_open(job)
        while True:
            ready, _, _ = select.select([connection, finished], [], [])
            if finished in ready:
                _, status, usage = os.wait4(job, 0)
                break
            if not connection.recv(1):
                # The script was killed: so is its job, with whatever it started.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job, signal.SIGKILL)
                os.waitpid(job, 0)
                os._exit(0)
        reply = pickle.dumps((
            os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status),
            {"cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024},
        ))  # fmt: skip
        connection.sendall(_LENGTH.pack(len(reply)) + reply)
    finally:
        os._exit(0)


def _run_forked(request: dict, fds: Sequence[int]) -> None:
    """The job: become the client's process (its fds, directory, environment, path), run the target, exit."""
    os.setpgid(0, 0)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    for target_fd, fd in enumerate(fds):
        os.dup2(fd, target_fd)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    os.sched_setaffinity(0, request["affinity"])
    sys.path[:] = request["path"]
    sys.argv = request["argv"]
    # This checkout's library, imported afresh (the server imported only third-party modules and this one).
    for name in [m for m in sys.modules if m == "quantreplay" or m.startswith("quantreplay.")]:
        del sys.modules[name]
    importlib.invalidate_caches()

    def call():
        kwargs = pickle.loads(request["kwargs"])
        _resolve(request["target"])(**kwargs, log=_log_line)

    os._exit(_exit_status(call))


def _detach() -> None:
    """Continue in a child that init adopts: the launcher prints its pid and exits."""
    server = os.fork()
    if server:
        print(server, flush=True)
        os._exit(0)
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)


def stop(*, every: bool = False) -> int:
    """Stop the server for this process's jobs, or every server of this user (each exits within a second of its
    socket's removal); how many were running."""
    running = 0
    for path in sorted(socket_folder().glob("*.sock")) if every else [socket_path()]:
        if connection := _try_connect(path):
            connection.close()
            running += 1
        path.unlink(missing_ok=True)
    return running


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantreplay.warm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run a server (jobs start one as needed)").add_argument("socket")
    stopping = commands.add_parser("stop", help="stop the server of this checkout and environment")
    stopping.add_argument("--all", action="store_true", help="stop every server of this user")
    args = parser.parse_args(argv)
    if args.command == "serve":
        _detach()
        serve(args.socket)
    else:
        print(f"stopped {stop(every=args.all)} server(s)")


if __name__ == "__main__":
    main()
