"""Bad configs stop before any job runs, with one line that names the key and the bad value."""

import copy
import time

import pytest

from conftest import ROOT, run_snakemake
from quantreplay.config import ConfigError, check_config, load_schema


def _set(path: str, value):
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(path: str):
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


# (what is wrong, how to break the default config, what the one line must say)
BAD_CONFIGS = [
    ("unknown precision", _set("precisions", ["fp16", "int4"]), "precisions[1]: 'int4' is not a precision"),
    ("duplicate precision", _set("precisions", ["nf4", "nf4"]), "precisions[1]: 'nf4' is listed twice"),
    ("buffer above one", _set("buffers", [0, 1.5]), "buffers[1]: 1.5 is not a fraction in [0, 1]"),
    ("negative buffer", _set("buffers", [-0.1]), "buffers[0]: -0.1 is not a fraction in [0, 1]"),
    ("duplicate buffer", _set("buffers", [0.1, 0.10]), "buffers[1]: 0.1 is listed twice"),
    ("buffer as text", _set("buffers", ["10%"]), "buffers[0]: '10%' is not of type 'number'"),
    ("no buffers", _set("buffers", []), "buffers: [] should be non-empty"),
    ("unknown stage", _set("stages", ["nlu", "vision"]), "stages[1]: 'vision' is not a task family"),
    ("duplicate stage", _set("stages", ["nlu", "nlu"]), "stages[1]: 'nlu' is listed twice"),
    (
        "stage without training data",
        _set("tasks.pyfunc.family", "math"),
        "tasks.pyfunc.family: 'math' does not match the dataset's family 'code'",
    ),
    ("unknown source", _set("tasks.boolq.source", "bultin"), "tasks.boolq.source: 'bultin' is not a source"),
    (
        "unknown builtin dataset",
        _set("tasks.boolq.dataset", "boolqq"),
        "tasks.boolq.dataset: 'boolqq' is not a builtin task",
    ),
    (
        "unknown offline dataset",
        lambda c: c["tasks"].update(real={"source": "offline", "family": "nlu", "dataset": "squad"}),
        "tasks.real.dataset: 'squad' is not an offline task",
    ),
    (
        "unknown hub format",
        lambda c: c["tasks"].update(h={"source": "hub", "family": "nlu", "test": {"path": "x", "format": "csv"}}),
        "tasks.h.test.format: 'csv' is not a hub format",
    ),
    (
        "hub task without splits",
        lambda c: c["tasks"].update(h={"source": "hub", "family": "nlu"}),
        "tasks.h: a hub task needs a train or a test split",
    ),
    (
        "task name unfit for paths",
        lambda c: c["tasks"].update({"Bad Name": {"source": "builtin", "family": "nlu"}}),
        "tasks: 'Bad Name' does not match",
    ),
    ("unknown key", _set("data.builtin.train_sise", 10), "data.builtin: Additional properties are not allowed"),
    ("zero training examples", _set("data.builtin.train_size", 0), "data.builtin.train_size: 0 is less than"),
    ("missing seeds", _delete("seeds"), "config: 'seeds' is a required property"),
    ("negative seed", _set("seeds", [-1]), "seeds[0]: -1 is less than the minimum of 0"),
    ("unknown model kind", _set("models.toy.kind", "onnx"), "models.toy.kind: 'onnx' is not a model kind"),
    ("hub model without source", _set("models.toy.kind", "hub"), "models.toy.source: a hub model needs a source"),
    (
        "heads do not divide width",
        _set("models.toy.toy.num_heads", 5),
        "models.toy.toy.hidden_size: 192 is not divisible by",
    ),
    ("sequence longer than positions", _set("models.toy.toy.seq_len", 1024), "models.toy.toy.seq_len: 1024 exceeds"),
    ("learning rate as text", _set("models.toy.toy.lr", "3e-3"), "models.toy.toy.lr: '3e-3' is not of type"),
    ("no models", _set("models", {}), "models: {} should be non-empty"),
    (
        "reference outside the grid",
        _set("analysis.reference_precision", "fp32"),
        "analysis.reference_precision: 'fp32' is not one of the precisions",
    ),
    ("confidence above one", _set("analysis.confidence", 1.5), "analysis.confidence: must be in (0, 1), got 1.5"),
    ("negative learning rate", _set("training.lr", -1), "training.lr: must be positive, got -1"),
    (
        "a stage's bad override",
        _set("training.stages", {"math": {"batch_size": 0}}),
        "training.stages.math.batch_size: must be a positive integer, got 0",
    ),
    (
        "a stage's unknown key",
        _set("training.stages", {"math": {"lrate": 1}}),
        "training.stages.math: Unevaluated properties are not allowed ('lrate' was unexpected)",
    ),
    ("unknown training key", _set("training.warmup", 1), "training: Unevaluated properties are not allowed"),
    (
        "override of a stage not run",
        _set("training.stages", {"vision": {}}),
        "training.stages.vision: 'vision' is not",
    ),
    ("lora rank zero", _set("lora.r", 0), "lora.r: must be a positive integer, got 0"),
    ("pass@k above the samples", _set("evaluation.pass_k", [5]), "evaluation.pass_k: must lie in [1, code_samples=1]"),
    ("unknown mc mode", _set("evaluation.mc_mode", "vote"), "evaluation.mc_mode: must be one of loglik, generate"),
    (
        "bad nf4 dtype",
        _set("quantization.nf4_compute_dtype", "int4"),
        "quantization.nf4_compute_dtype: must be one of",
    ),
]

# The Snakemake-level test runs one case of each kind of check: the schema, the grid's semantic checks, a toy
# model's spec, and a settings class (every case goes through check_config above).
THROUGH_SNAKEMAKE = (
    "buffer as text",
    "unknown builtin dataset",
    "heads do not divide width",
    "a stage's bad override",
)


@pytest.fixture(scope="module")
def schema():
    return load_schema(ROOT / "config" / "schema" / "config.schema.yaml")


def test_default_config_is_valid_and_gains_defaults(default_config, schema):
    config = copy.deepcopy(default_config)
    check_config(config, schema)
    assert config["data"]["offline"]["test_fraction"] == 0.5
    assert config["models"]["toy"]["toy"]["hidden_size"] == 192
    # Settings sections come back whole, their classes' defaults filled in; a stage's overrides stay as written.
    assert config["evaluation"]["sandbox_memory_mb"] == 1024 and config["lora"]["target_modules"][0] == "q_proj"
    assert config["training"]["max_steps"] is None and config["training"]["stages"] == {
        "math": {"epochs": 2},
        "code": {"epochs": 2},
    }


@pytest.mark.parametrize(("what", "mutate", "message"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_raises_one_line(default_config, schema, what, mutate, message):
    config = copy.deepcopy(default_config)
    mutate(config)
    with pytest.raises(ConfigError) as info:
        check_config(config, schema)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize(("what", "mutate", "message"), [b for b in BAD_CONFIGS if b[0] in THROUGH_SNAKEMAKE],
                         ids=[b[0] for b in BAD_CONFIGS if b[0] in THROUGH_SNAKEMAKE])  # fmt: skip
def test_snakemake_stops_before_any_job(default_config, tmp_path, what, mutate, message):
    config = copy.deepcopy(default_config)
    mutate(config)
    started = time.monotonic()
    proc = run_snakemake(config, tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0
    errors = [line for line in lines if line.startswith("Config error: ")]
    assert len(errors) == 1 and message in errors[0], lines
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
    # Parsing the Snakefile and the config takes about a second; a bad config must not get further.
    assert elapsed < 20, elapsed
