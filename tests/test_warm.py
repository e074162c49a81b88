"""Warm start (quantreplay.warm): a job runs in a fork of a server that has imported torch and the rest, as if it
were the script's own process: its fds, directory, environment and exit status, killed with the script."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from quantreplay.cost import job_cost
from quantreplay.warm import worker_record

ROOT = Path(__file__).resolve().parents[1]

JOBS = textwrap.dedent(
    """
    import json, os, sys, time

    def ancestors():
        pid, chain = os.getppid(), []
        while pid > 1:
            chain.append(open(f"/proc/{pid}/cmdline").read())
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        return chain

    def report(*, out, log):
        preloaded = "torch" in sys.modules  # before this job imports anything
        from quantreplay.errors import ConfigError
        import quantreplay
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "env": os.environ.get("MARK"),
                   "preloaded": preloaded, "library": quantreplay.__file__,
                   "started": os.environ.get("QUANTREPLAY_JOB_STARTED"), "ancestors": ancestors()},
                  open(out, "w"))
        print("to stdout", flush=True)
        log("to the log")

    def exit_with(*, code, log):
        sys.exit(code)

    def crash(*, log):
        raise RuntimeError("boom")

    def config_error(*, log):
        from quantreplay.errors import ConfigError
        raise ConfigError("training.lr: -1 is not positive")

    def burn(*, seconds, log):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    def hang(*, pidfile, log):
        open(pidfile, "w").write(str(os.getpid()))
        time.sleep(600)
    """
)

CLIENT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from quantreplay.warm import run_job
    run_job(sys.argv[2], json.loads(sys.argv[3]), log=sys.argv[4] if len(sys.argv) > 4 else None)
    """
)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A folder with the job module and the client script, and the environment of a private server."""
    folder = tmp_path_factory.mktemp("warm")
    (folder / "jobs_under_test.py").write_text(JOBS)
    (folder / "client.py").write_text(CLIENT)
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(ROOT / "src"), "MARK": "seen"}
    env.pop("QUANTREPLAY_WARM_START", None)
    yield folder, env
    subprocess.run([sys.executable, "-m", "quantreplay.warm", "stop"], env=env, check=True, capture_output=True)


def client(warm, target: str, kwargs: dict, *extra: str, env: dict | None = None, **popen):
    folder, base_env = warm
    command = [sys.executable, str(folder / "client.py"), str(folder), f"jobs_under_test:{target}", json.dumps(kwargs)]
    return subprocess.run(
        [*command, *extra], cwd=folder, env=env or base_env, capture_output=True, text=True, timeout=180, **popen
    )


def test_a_warm_job_is_the_scripts_job_in_a_preloaded_fork(warm, tmp_path):
    out = tmp_path / "report.json"
    for _ in range(2):  # the first starts the server, the second finds it
        done = client(warm, "report", {"out": str(out)})
        assert done.returncode == 0, done.stderr
        assert done.stdout == "to stdout\n"
        assert done.stderr == "to the log\n"
        seen = json.loads(out.read_text())
        assert seen["preloaded"], "the job did not run in the warm server"
        assert seen["cwd"] == str(warm[0]) and seen["env"] == "seen"
        assert seen["library"] == str(ROOT / "src" / "quantreplay" / "__init__.py")
        # Its start-up counts from the script's start.
        assert float(seen["started"]) > 0
        # Outside the script's process tree, even when the script started the server: Snakemake's benchmark of
        # one job must not count the others the server runs meanwhile.
        assert not any("client.py" in command for command in seen["ancestors"]), seen["ancestors"]


def test_the_scripts_exit_status_is_the_jobs(warm):
    assert client(warm, "exit_with", {"code": 3}).returncode == 3
    crashed = client(warm, "crash", {})
    assert crashed.returncode == 1 and "RuntimeError: boom" in crashed.stderr
    one_line = client(warm, "config_error", {})
    assert (one_line.returncode, one_line.stderr) == (1, "Config error: training.lr: -1 is not positive\n")


def test_the_jobs_cpu_time_is_recorded_beside_its_log(warm, tmp_path, monkeypatch):
    # Snakemake's layout, relative to the run's folder: benchmarks/ mirrors logs/.
    (tmp_path / "logs").mkdir()
    (tmp_path / "benchmarks").mkdir()
    benchmark, log = tmp_path / "benchmarks" / "job.tsv", str(tmp_path / "logs" / "job.log")
    done = client(warm, "burn", {"seconds": 1.0}, log)
    assert done.returncode == 0, done.stderr
    # Snakemake's own record of the script (here written by hand) plus the job's.
    benchmark.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                         "1.50\t0:00:01\t50.0\t1\t1\t1\t0\t0\t10\t0.25\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    cost = job_cost("benchmarks/job.tsv")
    assert cost["wall_seconds"] == 1.5
    assert 1.2 <= cost["cpu_seconds"] < 3, cost
    assert cost["max_rss_mb"] > 50
    # A job that runs in its own process removes a warm record it would otherwise be charged with.
    done = client(warm, "exit_with", {"code": 0}, log, env={**warm[1], "QUANTREPLAY_WARM_START": "0"})
    assert done.returncode == 0 and not Path(worker_record(log)).exists()
    assert job_cost("benchmarks/job.tsv")["cpu_seconds"] == 0.25


def test_killing_the_script_kills_its_job(warm, tmp_path):
    folder, env = warm
    pidfile = tmp_path / "job.pid"
    kwargs = json.dumps({"pidfile": str(pidfile)})
    script = subprocess.Popen(
        [sys.executable, str(folder / "client.py"), str(folder), "jobs_under_test:hang", kwargs], cwd=folder, env=env
    )
    deadline = time.monotonic() + 120
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    job = int(pidfile.read_text())
    assert job != script.pid
    script.send_signal(signal.SIGTERM)
    script.wait(timeout=30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{job}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{job}").exists(), "the job outlived its script"


def test_without_warm_start_the_job_runs_in_the_scripts_process(warm, tmp_path):
    out = tmp_path / "report.json"
    done = client(warm, "report", {"out": str(out)}, env={**warm[1], "QUANTREPLAY_WARM_START": "0"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(out.read_text())
    assert not seen["preloaded"] and seen["started"] is None
    assert done.stderr == "to the log\n"
