"""Bad configs stop before any job runs, with one line that names the key and the bad value."""

import copy
import subprocess
import time

import pytest

from conftest import ROOT, SNAKEMAKE, run_snakemake
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
def _hub_test(test: dict):
    """A config edit that adds a hub math task `h` with this test split."""
    return lambda c: c["tasks"].update(h={"source": "hub", "family": "math", "test": test})


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
    (
        "learning rate as text",
        _set("models.toy.toy.lr", "3e-3 per step"),
        "models.toy.toy.lr: '3e-3 per step' is not of type",
    ),
    ("no models", _set("models", {}), "models: {} should be non-empty"),
    (
        "reference outside the grid",
        _set("analysis.reference_precision", "fp32"),
        "analysis.reference_precision: 'fp32' is not one of the precisions",
    ),
    ("confidence above one", _set("analysis.confidence", 1.5), "analysis.confidence: must be in (0, 1), got 1.5"),
    (
        "negative held-out examples",
        _set("heldout_loss", {"examples": -1}),
        "heldout_loss.examples: must be a non-negative integer (0: no held-out loss), got -1",
    ),
    (
        "unknown held-out key",
        _set("heldout_loss", {"examples": 4, "exampels": 4}),
        "heldout_loss: Additional properties are not allowed ('exampels' was unexpected)",
    ),
    (
        "held-out sequence too short",
        _set("heldout_loss", {"examples": 4, "max_seq_len": 4}),
        "heldout_loss.max_seq_len: must be at least 8, or null, got 4",
    ),
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
        "test examples for some families only",
        _set("evaluation.max_examples", {"nlu": 64, "math": 32}),
        "evaluation.max_examples: 'code' is a required property",
    ),
    (
        "no test examples for a family",
        _set("evaluation.max_examples", {"nlu": 64, "math": 0, "code": 32}),
        "evaluation.max_examples: must be positive, null, or a positive count or null for each of nlu, math, code",
    ),
    (
        "bad nf4 dtype",
        _set("quantization.nf4_compute_dtype", "int4"),
        "quantization.nf4_compute_dtype: must be one of",
    ),
    # Cross-field rules of the settings classes, each naming the key path of the field it blames.
    ("warmup beyond max_steps", _set("training.max_steps", 10), "training.warmup_steps: 20 exceeds max_steps=10"),
    (
        "a stage's warmup beyond its max_steps",
        _set("training.stages", {"code": {"max_steps": 5, "warmup_steps": 8}}),
        "training.stages.code.warmup_steps: 8 exceeds max_steps=5",
    ),
    (
        "sandbox CPU limit above its wall limit",
        _set("evaluation.sandbox_cpu_seconds", 30),
        "evaluation.sandbox_cpu_seconds: 30 exceeds sandbox_wall_seconds=10",
    ),
    ("pass@k listed twice", _set("evaluation.pass_k", [1, 1]), "evaluation.pass_k: lists a k twice, got [1, 1]"),
    ("pass@k as bools", _set("evaluation.pass_k", [True]), "evaluation.pass_k[0]: True is not of type 'integer'"),
    ("unknown replay draw", _set("replay.draw", "first"), "replay.draw: must be one of uniform, head, got 'first'"),
    # The head draw floors: 0.0005 of 1000 rows is none, the empty buffer under another label.
    (
        "a head buffer that floors to none",
        lambda c: c.update(buffers=[0, 0.0005], replay={"draw": "head"}),
        "buffers[1]: 0.0005 replays as many examples of every earlier task as buffers[0]: 0 (0 of 1000 per task)",
    ),
    (
        "unknown loss",
        _set("training.loss_reduction", "sum"),
        "training.loss_reduction: must be one of token_mean, sequence_sum, got 'sum'",
    ),
    (
        "unknown clip scope in a stage",
        _set("training.stages", {"math": {"grad_clip_scope": "layer"}}),
        "training.stages.math.grad_clip_scope: must be one of global, per_tensor, got 'layer'",
    ),
    ("drop_last not a boolean", _set("evaluation.drop_last", "yes"), "evaluation.drop_last: 'yes' is not of type"),
    ("unknown decoding", _set("evaluation.decoding", "beam"), "evaluation.decoding: must be one of greedy, sample"),
    ("top_k with greedy decoding", _set("evaluation.top_k", 50), "evaluation.top_k: applies only to sampling"),
    (
        "unknown code metric",
        _set("evaluation.code_metric", "bleu"),
        "evaluation.code_metric: must be one of pass_at_k, rouge1, got 'bleu'",
    ),
    (
        "continuation of an unknown precision",
        lambda c: c.update(continuation={"per_precision": {"fp8": "merge"}}),
        "continuation.per_precision: must be a map of precisions (fp32, bf16",
    ),
    (
        "unknown continuation",
        lambda c: c.update(continuation={"mode": "restart"}),
        "continuation.mode: must be one of continue, merge, got 'restart'",
    ),
    ("toy warmup beyond pretraining", _set("models.toy.toy.pretrain_steps", 10), "models.toy.toy.warmup_steps: 40"),
    # 1000 training rows per task: 0.0001 and 0.001 both draw max(1, round(b * n)) = 1 example.
    (
        "buffers that round to one size",
        _set("buffers", [0, 0.0001, 0.001]),
        "buffers[2]: 0.001 replays as many examples of every earlier task as buffers[1]: 0.0001 (1 of 1000 per task)",
    ),
    (
        "a count equal to a fraction",
        _set("buffer_counts", [100]),
        "buffer_counts[0]: 100 replays as many examples of every earlier task as buffers[6]: 0.1 (100 of 1000",
    ),
    (
        "hub task's missing local file",
        _hub_test({"path": "json", "data_files": ["gone.jsonl"], "format": "gsm8k"}),
        "tasks.h.test.data_files[0]: 'gone.jsonl' does not exist in ",
    ),
    (
        "hub task's glob matching nothing",
        _hub_test({"path": "parquet", "data_files": "/nowhere/*.parquet", "format": "gsm8k"}),
        "tasks.h.test.data_files: '/nowhere/*.parquet' matches no file",
    ),
    (
        "hub task's missing local folder",
        lambda c: c["tasks"].update(
            h={"source": "hub", "family": "math", "train": {"path": "./gsm8k_copy", "format": "gsm8k"}}
        ),
        "tasks.h.train.path: './gsm8k_copy' does not exist in ",
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
        "math": {"epochs": 3},
        "code": {"epochs": 3, "lr": 1.0e-3},
    }


def test_command_line_lists_and_mappings_get_the_types_the_schema_asks_for(default_config, schema):
    """Snakemake reads a --config list or mapping with YAML's BaseLoader, every scalar a string: those become the
    numbers, booleans and nulls their keys ask for, exactly as from a config file; text that spells none stays text
    and is refused as before, and a key that takes text keeps it."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    given = parse_config(["seeds=[0,1,2]", "buffers=[0, 0.001, 1e-2]",
                          "training={lr: 1.0e-3, max_steps: null, gradient_checkpointing: true}",
                          "precisions=[fp16, int8]"])  # fmt: skip
    assert given["seeds"] == ["0", "1", "2"]  # what Snakemake hands over
    config = copy.deepcopy(default_config)
    update_config(config, given)
    check_config(config, schema)
    assert config["seeds"] == [0, 1, 2] and config["buffers"] == [0, 0.001, 0.01]
    assert config["training"]["lr"] == 1e-3 and config["training"]["max_steps"] is None
    assert config["training"]["gradient_checkpointing"] is True and config["precisions"] == ["fp16", "int8"]
    # PyYAML reads 3e-3 (no dot: YAML 1.1) in a config file as text; it is the number it spells.
    config = copy.deepcopy(default_config)
    config["models"]["toy"]["toy"]["lr"] = "3e-3"
    check_config(config, schema)
    assert config["models"]["toy"]["toy"]["lr"] == 0.003
    config = copy.deepcopy(default_config)
    update_config(config, parse_config(["seeds=[0,one]"]))
    with pytest.raises(ConfigError, match=r"^seeds\[1\]: 'one' is not of type 'integer'$"):
        check_config(config, schema)


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
    _stops_before_any_job(proc, tmp_path, message)
    # Parsing the Snakefile and the config takes about a second; a bad config must not get further.
    assert elapsed < 20, elapsed


# (what is wrong, the file's text, what the one line says after the file's path)
BAD_FILES = [
    ("a key given twice", "seeds: [0]\ntraining:\n  lr: 0.1\n  lr: 0.2\n",
     ": training.lr is given twice, '0.1' on line 3 and '0.2' on line 4 (YAML keeps the last silently)"),
    ("a key given twice in a list's mapping", "tasks:\n  h:\n    train: {path: json, path: csv}\n",
     ": tasks.h.train.path is given twice, 'json' on line 3 and 'csv' on line 3"),
    ("a section given twice", "lora: {r: 4}\nseeds: [0]\nlora: {r: 8}\n",
     ": lora is given twice, line 1 and line 3"),
    ("an empty file", "# nothing yet\n", ": is empty, not a mapping of keys"),
    ("a list", "- seeds: [0]\n", ": is a list, not a mapping of keys"),
    ("a single value", "config.yaml\n", ": is a single value ('config.yaml'), not a mapping of keys"),
    ("broken YAML", "seeds: [0\n", ", line 2: not valid YAML"),
    # Snakemake reads JSON first; JSON with tabs is not YAML.
    ("JSON with a key given twice", '{\n\t"seeds": [0],\n\t"seeds": [1]\n}\n',
     ": 'seeds' is given twice in one object (JSON keeps the last)"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_config_file_raises_one_line(tmp_path, what, text, message):
    from quantreplay.config import check_config_file

    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        check_config_file(path)
    assert str(info.value).startswith(f"{path}{message}") and "\n" not in str(info.value)


def test_missing_config_file_raises_one_line(tmp_path):
    from quantreplay.config import check_config_file

    with pytest.raises(ConfigError, match=r"gone.yaml: cannot be read \(No such file or directory\)$"):
        check_config_file(tmp_path / "gone.yaml")


def test_shipped_yaml_files_have_no_duplicate_keys():
    from quantreplay.config import check_config_files

    shipped = [
        *(ROOT / "config").glob("*.yaml"),
        *(ROOT / "profiles").glob("*/config.yaml"),
        ROOT / "tests" / "config" / "micro.yaml",
    ]
    check_config_files(sorted(shipped) + [ROOT / "config" / "schema" / "config.schema.yaml"])


def _stops_before_any_job(proc, workdir, message: str) -> None:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0
    errors = [line for line in lines if line.startswith("Config error: ")]
    assert len(errors) == 1 and message in errors[0], lines
    assert "Traceback" not in proc.stderr
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


def _snakemake_dry_run(workdir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_snakemake_reads_its_config_files_strictly(tmp_path):
    # A --configfile that gives a key twice: Snakemake alone would train with the second learning rate.
    text = (ROOT / "config" / "config.yaml").read_text().replace("  lr: 2.0e-3\n", "  lr: 2.0e-3\n  lr: 5.0e-4\n")
    line = text.splitlines().index("  lr: 5.0e-4") + 1
    twice = tmp_path / "twice.yaml"
    twice.write_text(text)
    proc = _snakemake_dry_run(tmp_path, "--configfile", str(twice))
    _stops_before_any_job(
        proc, tmp_path, f"Config error: {twice}: training.lr is given twice, '2.0e-3' on line {line - 1} and '5.0e-4'"
    )
    # The default config file (read without --configfile) is read the same way: empty, it is named.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("")
    proc = _snakemake_dry_run(tmp_path)
    _stops_before_any_job(proc, tmp_path, "Config error: config/config.yaml: is empty")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "cannot be read (No such file or directory)"), ("", "is empty"), ("- seeds: [0]\n", "is a list")],
    ids=["missing", "empty", "a list"],
)
def test_snakemake_names_an_unfit_configfile_before_its_cli_reads_it(tmp_path, text, message):
    # Snakemake's CLI reads --configfile before the workflow runs; the venv's start-up hook checks it first.
    path = tmp_path / "my.yaml"
    if text is not None:
        path.write_text(text)
    for given in (
        ["--configfile", str(path)],
        [f"--configfile={path}"],
        ["--configfiles", str(ROOT / "config" / "config.yaml"), str(path)],
    ):
        proc = _snakemake_dry_run(tmp_path, *given)
        _stops_before_any_job(proc, tmp_path, f"Config error: {path}: {message}")


def test_configfile_arguments_are_found_as_snakemake_parses_them():
    from quantreplay.snakemake_guard import config_file_arguments, snakemake_arguments

    assert snakemake_arguments(["/v/bin/python", "/v/bin/snakemake", "-n"]) == ["-n"]
    assert snakemake_arguments(["python", "-m", "snakemake", "--configfile", "a"]) == ["--configfile", "a"]
    assert snakemake_arguments(["python", "-m", "pytest"]) is None
    assert snakemake_arguments(["python"]) is None
    given = [
        "-n",
        "--configfile",
        "a.yaml",
        "b.yaml",
        "--cores",
        "2",
        "--configfile=c.yaml",
        "all",
        "--configfiles",
        "d",
    ]
    assert config_file_arguments(given) == ["a.yaml", "b.yaml", "c.yaml", "d"]
    assert config_file_arguments(["--config", "x=1", "--", "--configfile", "e"]) == []


def test_every_rule_that_asks_for_the_models_gpus_goes_to_the_slurm_profiles_gpu_partition():
    """A rule whose `gpu` resource comes from a model's resources (`model_job`) asks sbatch for that model's GPUs:
    on the CPU partition such a job would wait forever."""
    import re

    import yaml

    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_partition = profile["set-resources"]["evaluate"]["slurm_partition"]
    assert gpu_partition != profile["default-resources"]["slurm_partition"]
    model_rules = set()
    for path in (ROOT / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \n].*\n?)*)", path.read_text(), flags=re.M):
            if re.search(r"gpu=model_job\(", body):
                model_rules.add(name)
    assert {"train_first_stage", "train_stage", "evaluate", "heldout_loss", "quant_error"} <= model_rules
    for rule in model_rules:
        assert profile["set-resources"].get(rule, {}).get("slurm_partition") == gpu_partition, rule
