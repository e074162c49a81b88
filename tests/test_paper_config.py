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


# Hub repositories whose main branch holds Parquet or JSON data files and no loading script (each checked as
# config/paper.yaml says above it), and the two read from the Hub's Parquet export because main holds only a script.
NO_SCRIPT = {"google/boolq", "allenai/ai2_arc", "allenai/openbookqa", "Rowan/hellaswag", "allenai/winogrande",
             "openai/gsm8k", "sahil2801/CodeAlpaca-20k", "openai/openai_humaneval"}  # fmt: skip
PARQUET_EXPORT = {"piqa": "ybisk/piqa", "siqa": "allenai/social_i_qa"}


def test_where_the_paper_is_silent_the_config_takes_the_notebooks_value(paper):
    # NF4 computes in fp16 (bnb_4bit_compute_dtype=torch.float16), not QLoRA's bf16.
    assert paper["quantization"]["nf4_compute_dtype"] == "fp16"
    training = paper["training"]
    assert (training["schedule"], training["warmup_steps"], training["max_seq_len"], training["grad_clip"]) == (
        "constant", 10, 2048, 1.0
    )  # fmt: skip


def test_every_hub_dataset_loads_without_a_loading_script(paper):
    """datasets >= 4 refuses a repository's `<name>.py`: every split names a repository checked to hold none, or the
    Parquet export (refs/convert/parquet) of one that does, read by the parquet builder."""
    for task, spec in paper["tasks"].items():
        for split in ("train", "test"):
            if split not in spec:
                continue
            source = spec[split]
            if task in PARQUET_EXPORT:
                assert (source["path"], source["split"]) == ("parquet", "train"), (task, split)
                hf_split = "validation" if split == "test" else "train"
                export = f"hf://datasets/{PARQUET_EXPORT[task]}@refs/convert/parquet/*/{hf_split}/*.parquet"
                assert source["data_files"] == export, (task, split)
            else:
                assert source["path"] in NO_SCRIPT and not source.get("data_files"), (task, split)


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
