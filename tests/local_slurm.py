"""A real single-node SLURM cluster on this machine, for the SLURM tests and for trying profiles/slurm by hand.

Debian's slurm-wlm (22.05) and munge, run as root without systemd; the Debian packages are installed with
apt-get when missing. State, spool, logs, PID files, and munge's own key and socket live in one private folder
(default /var/tmp/quantreplay-slurm, or $QUANTREPLAY_SLURM_DIR), so a munged that the machine already runs is
left alone. The one shared place is /etc/slurm/slurm.conf (and gres.conf beside it): the plugin's job step
strips SLURM_CONF from the environment of the srun it runs inside each job, so a config anywhere else is not
found there. The harness writes those files only where none exists or where it wrote them itself (their first
line is MARKER), and removes them when it stops the cluster.

The node is honest about its CPUs but announces two GPUs (gres backed by /dev/null and /dev/zero; nothing
opens them) and 1 TiB of memory (not a consumable here, and `config_overrides` stops slurmd from draining the
node for it), so profiles/slurm's partitions, GPU requests and memory for the paper's model are accepted as
they are. There is no slurmdbd, hence no sacct: finished jobs stay listed by squeue for MinJobAge, and
jobcomp/filetxt appends one line per finished job to a log.

    python tests/local_slurm.py start    # install what is missing, start, wait for an idle node
    python tests/local_slurm.py stop     # stop the daemons of the private folder, remove the config
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MARKER = "# Written by quantreplay tests/local_slurm.py; removed when it stops the cluster."
PACKAGES = ("munge", "slurm-client", "slurmctld", "slurmd")
CONF_DIR = Path("/etc/slurm")
DEFAULT_ROOT = Path(os.environ.get("QUANTREPLAY_SLURM_DIR", "/var/tmp/quantreplay-slurm"))
PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "config.yaml"
# Seconds to wait for a daemon to answer, and for the node to turn idle.
WAIT_S = 30
# squeue lists a finished job this long; the plugin's squeue polling needs >= 3 x its first poll delay.
MIN_JOB_AGE_S = 3600
# Announced, not enforced: enough for the paper-sized requests in profiles/slurm.
ANNOUNCED_MEMORY_MB = 1024 * 1024
# Character devices that every Linux has and no job opens: stand-ins for GPU device files, one per GPU.
FAKE_GPU_FILES = ("/dev/null", "/dev/zero")


class Unavailable(RuntimeError):
    """The cluster cannot run here; the message says why (tests skip with it)."""


@dataclass
class Daemon:
    """A daemon the harness runs: its process name (/proc/PID/comm) and its PID file."""

    name: str
    pidfile: Path

    def pid(self) -> int | None:
        """The PID in the PID file if that process is alive and has this daemon's name."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self.is_running(pid) else None

    def is_running(self, pid: int) -> bool:
        """Whether `pid` is alive and is this daemon (not a recycled PID)."""
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip() == self.name
        except OSError:
            return False


def profile_partitions(profile: Path = PROFILE) -> list[str]:
    """The partitions profiles/slurm submits to, the default-resources one first."""
    with open(profile) as fh:
        settings = yaml.safe_load(fh)
    names = [settings["default-resources"]["slurm_partition"]]
    for resources in settings.get("set-resources", {}).values():
        if resources.get("slurm_partition") and resources["slurm_partition"] not in names:
            names.append(resources["slurm_partition"])
    return names


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not written)"


def ensure_packages(packages=PACKAGES) -> None:
    """apt-get install the Debian packages that are missing; Unavailable where that cannot happen."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (it installs Debian packages and runs slurmctld and slurmd as root)")
    missing = [p for p in packages if "install ok installed" not in _run("dpkg-query", "-W", "-f=${Status}", p).stdout]
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise Unavailable(f"packages {' '.join(missing)} are missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        # A fresh Debian image has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
        raise Unavailable(f"apt-get install {' '.join(missing)} failed:\n{tail}")


@dataclass
class LocalSlurm:
    """One node, one private folder, the given partitions; `start` then `stop` (which stops only what it started)."""

    root: Path = DEFAULT_ROOT
    partitions: list[str] = field(default_factory=profile_partitions)
    started: list[Daemon] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self.host = socket.gethostname().split(".")[0]
        run = self.root / "run"
        self.munge_socket = run / "munge.socket"
        self.munged = Daemon("munged", run / "munged.pid")
        self.slurmctld = Daemon("slurmctld", run / "slurmctld.pid")
        self.slurmd = Daemon("slurmd", run / "slurmd.pid")
        self.logs = self.root / "log"
        self.jobcomp = self.logs / "jobcomp.log"

    # --- configuration -------------------------------------------------------------------------------------
    def slurm_conf(self) -> str:
        """slurm.conf for one node that runs as root and keeps everything in the private folder."""
        gres = f"gpu:{len(FAKE_GPU_FILES)}"
        # The CPUs this process may use (a container's cpuset), not the host's count.
        cpus = len(os.sched_getaffinity(0))
        partitions = "\n".join(
            f"PartitionName={name} Nodes={self.host} Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP"
            for i, name in enumerate(self.partitions)
        )
        return f"""{MARKER}
ClusterName=quantreplay
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# Our own munged: its socket, not the system's.
AuthInfo=socket={self.munge_socket}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile={self.slurmctld.pidfile}
SlurmdPidFile={self.slurmd.pidfile}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldLogFile={self.logs / "slurmctld.log"}
SlurmdLogFile={self.logs / "slurmd.log"}
SchedulerType=sched/backfill
SelectType=select/cons_tres
# CPUs are consumable, memory is not: the node runs as many jobs as it has CPUs, whatever --mem says.
SelectTypeParameters=CR_CPU
# Trust this file over the hardware, so the announced memory and GPUs do not drain the node.
SlurmdParameters=config_overrides
GresTypes=gpu
MinJobAge={MIN_JOB_AGE_S}
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Without slurmdbd there is no sacct; this log keeps one line per finished job.
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={ANNOUNCED_MEMORY_MB} Gres={gres}
{partitions}
"""

    def gres_conf(self) -> str:
        lines = [f"NodeName={self.host} Name=gpu File={path}" for path in FAKE_GPU_FILES]
        return "\n".join([MARKER, *lines]) + "\n"

    def _write_config(self) -> None:
        wanted = {"slurm.conf": self.slurm_conf(), "gres.conf": self.gres_conf()}
        for name in wanted:
            path = CONF_DIR / name
            if path.exists() and not path.read_text().startswith(MARKER):
                raise Unavailable(f"{path} exists and was not written by this harness: this machine has its own "
                                  "SLURM; not touching it")  # fmt: skip
        current = [(CONF_DIR / name).read_text() if (CONF_DIR / name).exists() else None for name in wanted]
        if current != list(wanted.values()) and (self.slurmctld.pid() or self.slurmd.pid()):
            raise Unavailable("a cluster of this harness runs with another configuration; stop it first with "
                              "`python tests/local_slurm.py stop`")  # fmt: skip
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        for name, text in wanted.items():
            (CONF_DIR / name).write_text(text)

    # --- daemons -------------------------------------------------------------------------------------------
    def _launch(self, daemon: Daemon, *cmd: str) -> None:
        """Start a daemon that forks into the background and writes its PID file; remember it as ours."""
        proc = _run(*cmd)
        pid = None
        for _ in range(WAIT_S * 10 if proc.returncode == 0 else 0):
            pid = daemon.pid()
            if pid:
                break
            time.sleep(0.1)
        if not pid:
            raise Unavailable(f"{daemon.name} did not start (exit {proc.returncode}): {proc.stderr.strip()}\n"
                              f"{_tail(self.logs / f'{daemon.name}.log')}")  # fmt: skip
        self.started.append(daemon)

    def _wait(self, what: str, check, log: Path) -> None:
        deadline = time.monotonic() + WAIT_S
        while not check():
            if time.monotonic() > deadline:
                raise Unavailable(f"{what} after {WAIT_S} s:\n{_tail(log)}")
            time.sleep(0.3)

    def node_state(self) -> str:
        proc = _run("sinfo", "-h", "-n", self.host, "-o", "%T", timeout=10)
        return proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout.split() else ""

    def start(self) -> LocalSlurm:
        """Install what is missing and start what is not running; on any failure stop it again and raise."""
        ensure_packages()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for sub in ("run", "log", "state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a key that others can read, and a socket folder that others cannot enter.
        os.chmod(self.root / "munge", 0o700)
        os.chmod(self.root / "run", 0o755)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            proc = _run("mungekey", "--create", f"--keyfile={key}")
            if proc.returncode != 0:
                raise Unavailable(f"mungekey failed: {proc.stderr.strip()}")
        self._write_config()
        if not self.munged.pid():
            # --force: a socket left by a killed munged must not block the start.
            self._launch(self.munged, "munged", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
                         f"--pid-file={self.munged.pidfile}", f"--log-file={self.logs / 'munged.log'}",
                         f"--seed-file={self.root / 'munge' / 'munged.seed'}")  # fmt: skip
        if not self.slurmctld.pid():
            # -c: start from an empty job list, so ids and queues of earlier sessions do not leak in.
            self._launch(self.slurmctld, "slurmctld", "-c")
        self._wait("slurmctld does not answer", lambda: _run("scontrol", "ping").returncode == 0,
                   self.logs / "slurmctld.log")  # fmt: skip
        if not self.slurmd.pid():
            self._launch(self.slurmd, "slurmd")

        def usable() -> bool:
            state = self.node_state()
            if state.startswith(("down", "drain", "fail", "inval")):
                _run("scontrol", "update", f"NodeName={self.host}", "State=RESUME")
            return state.startswith(("idle", "mixed", "allocated", "completing"))

        self._wait(f"node {self.host} is not usable", usable, self.logs / "slurmctld.log")
        proc = _run("srun", "-N1", "-n1", "-t", "1", "true", timeout=60)
        if proc.returncode != 0:
            raise Unavailable(f"`srun true` failed: {proc.stderr.strip()}\n{_tail(self.logs / 'slurmd.log')}")

    def stop(self, everything: bool = False) -> None:
        """Stop the daemons this object started (or, with `everything`, those of its folder), newest first."""
        daemons = [self.slurmd, self.slurmctld, self.munged] if everything else list(reversed(self.started))
        owned = self.slurmctld in daemons
        if owned and self.slurmctld.pid():
            # Our cluster, our jobs: let SLURM end whatever a failed test left running.
            _run("scancel", f"--user={getpass.getuser()}", timeout=30)
        for daemon in daemons:
            pid = daemon.pid()
            if pid:
                os.kill(pid, signal.SIGTERM)
                # The daemon removes its PID file before it is gone: wait for the process itself.
                for _ in range(300):
                    if not daemon.is_running(pid):
                        break
                    time.sleep(0.1)
                else:
                    os.kill(pid, signal.SIGKILL)
        self.started.clear()
        # The config goes with the controller: a cluster started by hand keeps its files.
        for name in ("slurm.conf", "gres.conf") if owned else ():
            path = CONF_DIR / name
            if path.exists() and path.read_text().startswith(MARKER):
                path.unlink()

    # --- the scheduler's own records -----------------------------------------------------------------------
    def queue(self, workdir: Path | str) -> list[dict[str, str]]:
        """Jobs submitted from `workdir`, from squeue (finished ones too, for MinJobAge)."""
        fields = {"id": "%i", "name": "%j", "state": "%T", "comment": "%k", "partition": "%P", "time_limit": "%l",
                  "gres": "%b", "cpus": "%C", "workdir": "%Z"}  # fmt: skip
        fmt = "|".join(fields.values())
        proc = _run("squeue", "--states=all", "--noheader", f"--format={fmt}", timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"squeue failed: {proc.stderr}")
        rows = [dict(zip(fields, line.split("|"), strict=True)) for line in proc.stdout.splitlines() if line]
        # `--gpus=N` (the plugin's form of a rule's `gpu` resource) shows only as TRES per job, which has no
        # --format letter: a second call with --Format gives it.
        proc = _run("squeue", "--states=all", "--noheader", "--Format=JobID:30,tres-per-job:60", timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"squeue failed: {proc.stderr}")
        tres = dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)
        for row in rows:
            row["tres_per_job"] = tres.get(row["id"], "N/A")
        return [row for row in rows if row["workdir"] == str(workdir)]

    def completions(self, workdir: Path | str) -> list[dict[str, str]]:
        """Finished jobs submitted from `workdir`, from the jobcomp log (key=value fields, one job a line)."""
        if not self.jobcomp.exists():
            return []
        rows = [dict(item.split("=", 1) for item in line.split() if "=" in item)
                for line in self.jobcomp.read_text().splitlines()]  # fmt: skip
        return [row for row in rows if row.get("WorkDir") == str(workdir)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_ROOT, help="private folder (default: %(default)s)")
    args = parser.parse_args(argv)
    cluster = LocalSlurm(root=args.dir)
    if args.action == "stop":
        cluster.stop(everything=True)
        return 0
    try:
        cluster.start()
    except Unavailable as err:
        print(f"local SLURM cluster not started: {err}", file=sys.stderr)
        return 1
    print(f"SLURM cluster up: node {cluster.host}, partitions {', '.join(cluster.partitions)}; "
          f"logs in {cluster.logs}. Stop it with: python tests/local_slurm.py stop")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
