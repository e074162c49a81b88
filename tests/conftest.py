"""Shared helpers: the repository root, the default config, and running Snakemake on a config."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="session")
def default_config() -> dict:
    with open(ROOT / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def run_snakemake(
    config: dict, workdir: Path, *args: str, timeout: float = 600, snakefile: Path = ROOT / "Snakefile"
) -> subprocess.CompletedProcess:
    """Run the project's Snakefile (or `snakefile`) on `config` with `workdir` as the working directory."""
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(snakefile),
            "--directory",
            str(workdir),
            "--configfile",
            str(configfile),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# The micro grid as a file a user can run too (`--configfile tests/config/micro.yaml`).
MICRO_CONFIG = ROOT / "tests" / "config" / "micro.yaml"


def micro_config(default: dict | None = None) -> dict:
    """The micro configuration (tests/config/micro.yaml) narrowed to two precisions, fp16 and nf4: seconds per job.

    `default` is accepted for the callers that pass the default config; the micro file is a whole configuration.
    """
    with open(MICRO_CONFIG) as fh:
        config = yaml.safe_load(fh)
    config["precisions"] = ["fp16", "nf4"]
    return config


# The micro grid's precisions: every one the pipeline knows.
MICRO_GRID_PRECISIONS = ["fp32", "bf16", "fp16", "int8", "nf4"]


@pytest.fixture(scope="session")
def micro_grid(default_config, tmp_path_factory) -> tuple[Path, dict]:
    """The micro config over every precision, run to the end once per session: (workdir, config). Tests read it;
    a test that changes it works on a copy."""
    workdir = tmp_path_factory.mktemp("grid")
    config = micro_config()
    config["precisions"] = MICRO_GRID_PRECISIONS
    proc = run_snakemake(config, workdir)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir, config


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` where CUDA is not available; `-ra` (in addopts) prints the reason."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"needs CUDA: torch {torch.__version__} sees no GPU here")
    for item in gpu_tests:
        item.add_marker(skip)


def expected_job_counts(config: dict) -> dict[str, int]:
    """Jobs per rule that a run of `config` from nothing schedules, derived from the grid's dimensions.

    One entry per rule: a new rule (a figure, a table) adds its line here, and every dry-run test that compares
    Snakemake's job stats with this follows.
    """
    from quantreplay.config import task_splits

    models, precisions, seeds = len(config["models"]), len(config["precisions"]), len(config["seeds"])
    buffers = len(config["buffers"]) + len(config.get("buffer_counts", []))
    later_stages = len(config["stages"]) - 1
    cells = models * precisions * seeds * buffers
    checkpoints = models * precisions * (1 + seeds * (1 + buffers * later_stages))
    heldout = config.get("heldout_loss", {}).get("examples", 0) > 0
    counts = {
        # One parquet per task and split.
        "prepare_data": sum(len(task_splits(name, task)) for name, task in config["tasks"].items()),
        "build_base": models,
        # Stage 1 holds no buffer: one job per model, precision and seed serves every buffer.
        "train_first_stage": models * precisions * seeds,
        "train_stage": cells * later_stages,
        # Mixes depend on neither model nor precision.
        "replay_mix": seeds * buffers * later_stages,
        # The untrained base once per model and precision (shared by seeds), then every trained stage.
        "evaluate": checkpoints,
        # With heldout_loss.examples > 0: the held-out loss of every checkpoint, and its tables.
        "heldout_loss": checkpoints if heldout else 0,
        "heldout_tables": int(heldout),
        "cell_metrics": cells,
        # The weight error of every model and precision; the adapter telemetry of the whole grid.
        "quant_error": models * precisions,
        "telemetry": 1,
        # One R-matrix figure per cell.
        "plot_r_matrix": cells,
        "aggregate": 1,
        "plots": 1,
        "all": 1,
    }
    return {rule: n for rule, n in counts.items() if n}


# The rules whose jobs come after every job of `quantreplay.grid.jobs` (whose benchmark files the tables read).
AFTER_JOBS = ("telemetry", "aggregate", "plots", "plot_r_matrix", "heldout_tables", "all")


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's 'Job stats' table (empty when nothing is to be done)."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Job stats:"):
            for row in lines[i + 3 :]:
                parts = row.split()
                if len(parts) != 2 or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            break
    return counts


def scheduled_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run lists, from Snakemake's job blocks."""
    jobs = []
    for block in output.split("\n\n"):
        rule = next((line.split()[-1].rstrip(":") for line in block.splitlines() if line.startswith(("rule ",
                     "localrule "))), None)  # fmt: skip
        if rule is None:
            continue
        wildcards = {}
        for line in block.splitlines():
            if line.strip().startswith("wildcards:"):
                for pair in line.split("wildcards:", 1)[1].split(","):
                    key, value = pair.strip().split("=", 1)
                    wildcards[key] = value
        jobs.append((rule, wildcards))
    return jobs


# The micro grid's toy base (about 100k parameters), also the unit tests' tiny base.
TINY_TOY = micro_config()["models"]["toy"]["toy"]


@pytest.fixture(scope="session")
def tiny_task_files(tmp_path_factory) -> dict[str, str]:
    """Train splits of three builtin tasks (two NLU, one math), 40 rows each, as parquet files."""
    from quantreplay.data.sources import prepare_split

    out = tmp_path_factory.mktemp("data")
    files = {}
    for task, family in (("boolq", "nlu"), ("piqa", "nlu"), ("arithmetic", "math")):
        params = {
            "dataset": task,
            "family": family,
            "seed": 0,
            "source": "builtin",
            "train_size": 40,
            "test_size": 10,
            "n_creatures": 10,
        }
        for split in ("train", "test"):
            path = out / task / f"{split}.parquet"
            prepare_split(task=task, split=split, params=params, output=path)
            files[f"{task}/{split}"] = str(path)
    return files


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_task_files) -> str:
    """A toy Llama of about 100k parameters, pretrained for 6 steps: real, and built in seconds.

    64 wide, because narrower layers do not reach bitsandbytes' CPU inference repack that the nf4 test guards.
    """
    from quantreplay.bases.build import build_base

    out = tmp_path_factory.mktemp("base") / "toy"
    spec = {"kind": "toy", "corpus_seed": 0, "toy": TINY_TOY}
    build_base(
        output=str(out),
        spec=spec,
        tokenizer_data=[v for k, v in tiny_task_files.items() if k.endswith("train")],
        threads=1,
        log=lambda s: None,
    )
    return str(out)


# The warm servers (quantreplay.warm) that the tests' jobs start listen in a folder of this session's, apart from
# a pipeline the user may be running, and end with the tests.
WARM_RUNTIME = Path(tempfile.mkdtemp(prefix="quantreplay-tests-"))


def pytest_configure(config):
    os.environ["XDG_RUNTIME_DIR"] = str(WARM_RUNTIME)


def pytest_unconfigure(config):
    from quantreplay.warm import stop

    stop(every=True)
    shutil.rmtree(WARM_RUNTIME, ignore_errors=True)
