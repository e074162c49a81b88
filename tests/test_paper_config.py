"""The paper's setting (config/paper.yaml) validates and dry-runs here, where it cannot run: no GPU, no Hub.

The dry run happens in a folder laid out like a checkout (the default config at config/config.yaml), as
`snakemake -n --configfile config/paper.yaml` would run there; a --configfile merged into the default instead of
replacing it would add the toy model and the synthetic tasks, and the job counts would show it.
"""

import copy
import shutil

import pytest
import yaml

from conftest import ROOT, expected_job_counts, job_counts, run_snakemake
from quantreplay.config import check_config, load_schema


@pytest.fixture(scope="module")
def paper() -> dict:
    with open(ROOT / "config" / "paper.yaml") as fh:
        return yaml.safe_load(fh)


def test_paper_config_passes_the_config_check_with_the_papers_recipe(paper):
    config = copy.deepcopy(paper)
    check_config(config, load_schema(ROOT / "config" / "schema" / "config.schema.yaml"))
    # arXiv 2512.18934 as DESIGN.md sums it up.
    assert [(m["kind"], m["source"]) for m in config["models"].values()] == [
        ("hub", "meta-llama/Llama-3.1-8B-Instruct")
    ]
    assert config["precisions"] == ["fp16", "int8", "nf4"]
    assert config["buffers"] == [0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    assert config["stages"] == ["nlu", "math", "code"]
    assert (config["lora"]["r"], config["lora"]["alpha"]) == (8, 16)
    training = config["training"]
    assert (training["lr"], training["epochs"], training["batch_size"], training["max_steps"]) == (2e-4, 1, 8, None)
    assert training["stages"] == {family: {"lr": 5e-5, "warmup_steps": 100} for family in ("math", "code")}
    assert {task["source"] for task in config["tasks"].values()} == {"hub"}
    splits = {name: [s for s in ("train", "test") if s in task] for name, task in config["tasks"].items()}
    # The eight commonsense sets each train and are scored.
    nlu = [name for name, task in config["tasks"].items() if task["family"] == "nlu"]
    assert len(nlu) == 8 and all(splits[name] == ["train", "test"] for name in nlu)
    # Code trains on CodeAlpaca (no tests) and is scored on HumanEval only.
    assert {n: splits[n] for n, t in config["tasks"].items() if t["family"] == "code"} == {
        "codealpaca": ["train"],
        "humaneval": ["test"],
    }


def test_dry_run_lists_the_papers_grid_and_touches_no_hub(paper, tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    # run_snakemake sets HF_HUB_OFFLINE and HF_DATASETS_OFFLINE, so any Hub call fails the run; a fresh HF_HOME
    # shows that nothing was even looked up in a cache.
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    proc = run_snakemake(paper, tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == expected_job_counts(paper)
    assert "results/base/llama" in proc.stdout and "results/base/toy" not in proc.stdout
    assert not hf_home.exists()
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
