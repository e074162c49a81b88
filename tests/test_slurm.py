"""profiles/slurm on a real SLURM: one node started on this machine by tests/local_slurm.py.

A small grid goes through sbatch and scores exactly as a local run of the same config; SLURM's own records show
every job, each with the partition that the profile gives its rule and the wall time and GPUs that the config
gives its model step. A job cancelled
with scancel (its retry too) fails the run cleanly, and the next call resumes only what is missing.
"""

import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

import local_slurm
from conftest import ROOT, SNAKEMAKE, job_counts, micro_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = ROOT / "profiles" / "slurm"
with open(PROFILE / "config.yaml") as fh:
    SETTINGS = yaml.safe_load(fh)
# Each cell's metrics: every step up to them, and no tables or plots, whose waves of polling would add a minute.
CELLS = [f"results/metrics/toy/nf4/seed0/buf{buffer}.json" for buffer in (0, 0.1)]
# The plugin first polls 40 s after a submission (the profile keeps that default for real clusters); these jobs
# take seconds. The only setting the tests change: everything else comes from profiles/slurm as it is.
FAST_POLLING = ("--slurm-init-seconds-before-status-checks", "1")
RUN_TIMEOUT_S = 420


@pytest.fixture(scope="session")
def cluster():
    """The local cluster, stopped after the session (only the daemons this session started)."""
    try:
        slurm = local_slurm.LocalSlurm().start()
    except local_slurm.Unavailable as err:
        # CI sets this: there the cluster must run, and a skip would hide a broken harness.
        if os.environ.get("QUANTREPLAY_REQUIRE_SLURM") == "1":
            pytest.fail(f"local SLURM cluster did not start: {err}")
        pytest.skip(f"no local SLURM cluster: {err}")
    yield slurm
    slurm.stop()


def grid_config(default: dict) -> dict:
    """The micro config cut to one precision and one task per family: 16 jobs; the buffers' stage 2 run side by side.

    Each SLURM job costs seconds of Snakemake start-up (its job step and the srun inside), whatever its size.
    """
    config = micro_config(default)
    config["precisions"] = ["nf4"]
    config["tasks"] = {name: config["tasks"][name] for name in ("boolq", "arithmetic")}
    # Distinct wall times and a GPU for the model steps, so the test tells config-driven requests apart from the
    # profile's defaults (the local node announces two stand-in GPUs).
    resources = config["models"]["toy"]["resources"]
    resources["train"] = {"threads": 1, "mem_mb": 1500, "runtime": 9, "gpu": 1}
    resources["evaluate"] = {"threads": 1, "mem_mb": 1200, "runtime": 8, "gpu": 1}
    resources["build_base"] = {"threads": 1, "mem_mb": 1000, "runtime": 7, "gpu": 0}
    return config


def start(config: dict, workdir: Path, *args: str) -> subprocess.Popen:
    """Start Snakemake on `config` in `workdir`; its output goes to files beside the folder (no pipe fills up)."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out, err = (open(workdir.with_name(f"{workdir.name}.{kind}"), "w") for kind in ("out", "err"))
    with out, err:
        return subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=ROOT)


def finish(proc: subprocess.Popen, workdir: Path) -> tuple[int, str]:
    """Wait for `start`'s Snakemake; its exit status and its stdout and stderr together."""
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    output = "".join(workdir.with_name(f"{workdir.name}.{kind}").read_text() for kind in ("out", "err"))
    return proc.returncode, output


def run(config: dict, workdir: Path, *args: str) -> tuple[int, str]:
    return finish(start(config, workdir, *args), workdir)


def through_slurm(*args: str) -> tuple[str, ...]:
    return ("--profile", str(PROFILE), *FAST_POLLING, *args)


def rule_of(job: dict) -> str:
    """The rule of a SLURM job, from the comment the plugin gives it: rule_<rule>_wildcards_<values>."""
    return job["comment"].removeprefix("rule_").split("_wildcards_")[0]


def minutes(limit: str) -> int:
    """A SLURM time limit ([D-]H:MM:SS or M:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return int(days or 0) * 24 * 60 + seconds // 60


def scores(workdir: Path) -> dict:
    """Every checkpoint's per-task scores, without their timings."""
    out = {}
    for path in sorted(workdir.glob("results/eval/**/scores.json")):
        tasks = json.loads(path.read_text())["tasks"]
        out[str(path.relative_to(workdir))] = {
            task: {k: v for k, v in score.items() if k != "seconds"} for task, score in tasks.items()
        }
    return out


def adapters(workdir: Path) -> dict:
    """Every adapter's weights file, as bytes."""
    files = sorted(workdir.glob("results/train/**/*.safetensors"))
    return {str(path.relative_to(workdir)): path.read_bytes() for path in files}


@pytest.fixture(scope="module")
def runs(cluster, default_config, tmp_path_factory):
    """The grid run locally and through the profile, side by side (the SLURM run spends most of its time polling)."""
    config = grid_config(default_config)
    local_dir, slurm_dir = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("slurm")
    local = start(config, local_dir, "--cores", "1", *CELLS)
    slurm_rc, slurm_out = run(config, slurm_dir, *through_slurm(*CELLS))
    local_rc, local_out = finish(local, local_dir)
    assert local_rc == 0, local_out[-6000:]
    assert slurm_rc == 0, slurm_out[-6000:]
    return config, local_dir, local_out, slurm_dir, slurm_out


def test_every_job_goes_through_sbatch_as_the_profile_asks(runs, cluster):
    _, _, local_out, slurm_dir, slurm_out = runs
    queue = cluster.queue(slurm_dir)
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_out))
    assert {job["id"] for job in queue} == submitted
    # The same jobs as the local run, each a SLURM job that completed, all named after the one run.
    assert Counter(rule_of(job) for job in queue) == job_counts(local_out)
    assert {job["state"] for job in queue} == {"COMPLETED"}
    assert len({job["name"] for job in queue}) == 1
    config = runs[0]
    steps = {"build_base": "build_base", "train_first_stage": "train", "train_stage": "train", "evaluate": "evaluate"}
    for job in queue:
        wanted = {**SETTINGS["default-resources"], **SETTINGS["set-resources"].get(rule_of(job), {})}
        assert job["partition"] == wanted["slurm_partition"], job
        step = steps.get(rule_of(job))
        # Model steps take wall time and GPUs from the model's config; the light steps the profile's default.
        model = config["models"]["toy"]["resources"][step] if step else {"runtime": wanted["runtime"], "gpu": 0}
        assert minutes(job["time_limit"]) == model["runtime"], job
        assert job["tres_per_job"] == (f"gres:gpu:{model['gpu']}" if model["gpu"] else "N/A"), job
        # cpus_per_task is the rule's threads: one for every job of the micro config. (A two-thread base build
        # would tell a constant apart, but it holds both CPUs of this node and costs a wave of polling.)
        assert job["cpus"] == "1", job
    assert {job["partition"] for job in queue} == set(local_slurm.profile_partitions())
    # The controller's completion log agrees: every job ended with exit code 0.
    done = {c["JobId"]: c for c in cluster.completions(slurm_dir)}
    assert set(done) == submitted
    assert {(c["JobState"], c["ExitCode"]) for c in done.values()} == {("COMPLETED", "0:0")}


def test_results_equal_a_local_run(runs):
    _, local_dir, _, slurm_dir, _ = runs
    for cell in CELLS:
        assert (slurm_dir / cell).read_text() == (local_dir / cell).read_text()
    # base, after stage 1, after stage 2 with either buffer
    assert scores(slurm_dir) == scores(local_dir) and len(scores(slurm_dir)) == 4
    # Bit for bit: the same seeded training in a SLURM job and in a local one.
    assert adapters(slurm_dir) == adapters(local_dir) and len(adapters(slurm_dir)) == 3


def test_cancelled_job_fails_the_run_and_the_next_run_resumes_the_rest(runs, cluster, tmp_path):
    config, local_dir, _, _, _ = runs
    workdir = tmp_path / "grid"
    shutil.copytree(local_dir, workdir)
    # Back to just before scoring stage 2: both buffers' evaluations and the cells' metrics are missing.
    for path in [*workdir.glob("results/eval/toy/nf4/seed0/buf*"), workdir / "results/metrics"]:
        shutil.rmtree(path)
    rc, dry = run(config, workdir, *through_slurm("--dry-run", *CELLS))
    assert rc == 0, dry
    assert job_counts(dry) == {"evaluate": 2, "cell_metrics": 2}

    # Cancel buffer 0.1's evaluation once it runs, and again when the profile's retry resubmits it.
    victim = "rule_evaluate_wildcards_toy_nf4_seed0_buf0.1_math"
    proc = start(config, workdir, *through_slurm(*CELLS))
    cancelled: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        for job in cluster.queue(workdir):
            if job["comment"] == victim and job["state"] == "RUNNING" and job["id"] not in cancelled:
                subprocess.run(["scancel", job["id"]], check=True)
                cancelled.append(job["id"])
        time.sleep(0.25)
    rc, output = finish(proc, workdir)
    assert rc == 1, output[-6000:]
    assert len(cancelled) == 1 + SETTINGS["retries"], (cancelled, cluster.queue(workdir))
    assert "Error in rule evaluate" in output and "SLURM status is: 'CANCELLED'" in output
    assert "Traceback" not in output
    done = {c["JobId"]: c for c in cluster.completions(workdir)}
    assert [done[i]["JobState"] for i in cancelled] == ["CANCELLED"] * len(cancelled)
    # Buffer 0's evaluation ran beside it, and Snakemake let it finish before exiting.
    kept = workdir / "results/eval/toy/nf4/seed0/buf0/math/scores.json"
    assert kept.exists() and not (workdir / "results/eval/toy/nf4/seed0/buf0.1/math/scores.json").exists()
    kept_mtime = kept.stat().st_mtime_ns

    rc, dry = run(config, workdir, *through_slurm("--dry-run", *CELLS))
    assert rc == 0, dry
    missing = job_counts(dry)
    # Only buffer 0.1 is scored again; whether buffer 0's metrics got written before the exit varies.
    assert missing["evaluate"] == 1 and set(missing) <= {"evaluate", "cell_metrics"}
    rc, output = run(config, workdir, *through_slurm(*CELLS))
    assert rc == 0, output[-6000:]
    assert job_counts(output) == missing
    assert kept.stat().st_mtime_ns == kept_mtime
    for cell in CELLS:
        assert (workdir / cell).read_text() == (local_dir / cell).read_text()
