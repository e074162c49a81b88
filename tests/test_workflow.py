"""End to end: Snakemake builds every task split and the base model of a micro config, then does nothing.

These runs ask for the data and base targets only; tests/test_workflow_train.py covers the rest.
"""

import json

import polars as pl
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import job_counts, micro_config, run_snakemake
from quantreplay.bases import resolve_base
from quantreplay.data.rows import SCHEMA

pytestmark = pytest.mark.slow


# Sizes of each split in the micro config; the offline and hub tasks are capped or tiny.
SIZES = {"offline_arc": {"train": 30, "test": 20}, "hub_gsm8k": {"test": 3}}


def _targets(config: dict) -> list[str]:
    """Every task split and the base model: the targets of this issue's part of the DAG."""
    splits = [(t, s) for t in config["tasks"] for s in SIZES.get(t, {"train": 0, "test": 0})]
    return [f"results/data/{t}/{s}.parquet" for t, s in splits] + ["results/base/toy"]


@pytest.fixture(scope="module")
def built(default_config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("micro")
    config = micro_config(default_config)
    # One task from each other source, so the DAG runs all three loaders.
    config["data"]["offline"] = {"max_train": 30, "max_test": 20}
    config["tasks"]["offline_arc"] = {"source": "offline", "family": "nlu", "dataset": "arc_easy"}
    records = workdir / "gsm8k.jsonl"
    records.write_text(
        "".join(
            json.dumps({"question": f"What is {a} + {a}?", "answer": f"{a} + {a} = {2 * a}\n#### {2 * a}"}) + "\n"
            for a in (3, 4, 5)
        )
    )
    config["tasks"]["hub_gsm8k"] = {
        "source": "hub",
        "family": "math",
        "test": {"path": "json", "data_files": str(records), "split": "train", "format": "gsm8k"},
    }
    proc = run_snakemake(config, workdir, *_targets(config))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not (workdir / "results" / "train").exists()
    return workdir, config, proc


def test_every_split_follows_the_row_contract(built):
    workdir, config, _ = built
    for task, spec in config["tasks"].items():
        sizes = SIZES.get(task, {"train": 40, "test": 10})
        prompts = {"train": set(), "test": set()}
        for split, size in sizes.items():
            frame = pl.read_parquet(workdir / "results" / "data" / task / f"{split}.parquet")
            assert dict(frame.schema) == SCHEMA
            assert frame.height == size
            assert (frame["task"] == task).all() and (frame["family"] == spec["family"]).all()
            if spec["family"] == "nlu":
                assert frame["choices"].null_count() == 0 and frame["answer"].null_count() == 0
            if spec["family"] == "code":
                assert frame["tests"].null_count() == 0 and frame["entry_point"].null_count() == 0
            prompts[split] = set(frame["prompt"])
            assert (workdir / "logs" / "data" / task / f"{split}.log").exists()
        assert not prompts["train"] & prompts["test"]


def test_base_model_loads_offline_and_covers_the_tasks(built, monkeypatch):
    workdir, config, _ = built
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = workdir / "results" / "base" / "toy"
    path = resolve_base(base)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    toy = config["models"]["toy"]["toy"]
    assert model.config.hidden_size == toy["hidden_size"]
    assert model.config.num_hidden_layers == toy["num_layers"]
    assert len(tokenizer) <= toy["vocab_size"]
    report = json.loads((base / "pretrain.json").read_text())
    assert len(report["loss_curve"]) == toy["pretrain_steps"]
    # The tokenizer was trained on the tasks too: a code prompt round-trips exactly.
    row = pl.read_parquet(workdir / "results" / "data" / "pyfunc" / "test.parquet").row(0, named=True)
    text = row["prompt"] + row["target"]
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert "loss" in (workdir / "logs" / "base" / "toy.log").read_text()


def test_second_run_does_nothing(built):
    workdir, config, _ = built
    proc = run_snakemake(config, workdir, "--dry-run", *_targets(config))
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_change_reruns_only_what_it_touches(built):
    workdir, config, _ = built
    longer = json.loads(json.dumps(config))
    longer["models"]["toy"]["toy"]["pretrain_steps"] = 7
    proc = run_snakemake(longer, workdir, "--dry-run", *_targets(config))
    assert proc.returncode == 0, proc.stderr
    assert job_counts(proc.stdout) == {"build_base": 1}

    resized = json.loads(json.dumps(config))
    resized["data"]["builtin"]["test_size"] = 11
    proc = run_snakemake(resized, workdir, "--dry-run", *_targets(config))
    assert proc.returncode == 0, proc.stderr
    # Both splits are drawn from one stream, so both change; the toy tokenizer reads the train splits.
    # Builtin splits only: the offline and hub tasks do not depend on the builtin sizes.
    assert job_counts(proc.stdout) == {"prepare_data": 20, "build_base": 1}
