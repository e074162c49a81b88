"""Checking a quantreplay config before any job runs.

`check_config` applies the JSON schema (filling defaults, as Snakemake's `validate` does) and then checks
what a schema cannot express: names that must come from a catalog, families that must match, values that
must be unique. Every problem is raised as a `ConfigError` whose message is one line naming the key and the
bad value, so the Snakefile can print it and stop without a traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import yaml

from quantreplay.bases import KINDS as MODEL_KINDS
from quantreplay.data.rows import FAMILIES
from quantreplay.data.sources import source_of
from quantreplay.quantize import PRECISIONS
from quantreplay.settings import SettingError, parse


class ConfigError(ValueError):
    """A config value is wrong; the message is one line that names the key and the value."""


def _with_defaults(validator_class):
    # jsonschema validates but does not fill defaults; fill them as each object is entered, so nested
    # defaults ({} objects whose keys have defaults) are filled too.
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def load_schema(path: str | Path) -> dict:
    """Read the YAML schema at `path`."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def apply_schema(config: dict, schema: dict) -> None:
    """Validate `config` against `schema` in place, filling defaults; raise ConfigError on the first error."""
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"{_key(error.absolute_path)}: {error.message}")


def _unique(values: list, key: str) -> None:
    seen = []
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{key}[{i}]: {v!r} is listed twice")
        seen.append(v)


def task_catalog_entry(name: str, task: dict) -> tuple[str, tuple[str, ...]]:
    """Return (catalog family, splits) of a configured task; raise ConfigError if its source cannot give it."""
    try:
        return source_of(name, task).catalogue_entry(name, task)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _semantic_errors(config: dict) -> Iterator[str]:
    for i, p in enumerate(config["precisions"]):
        if p not in PRECISIONS:
            yield f"precisions[{i}]: {p!r} is not a precision; choose from {', '.join(PRECISIONS)}"
    for i, b in enumerate(config["buffers"]):
        if not 0 <= b <= 1:
            yield f"buffers[{i}]: {b!r} is not a fraction in [0, 1] (0.001 means 0.1 %)"
    for i, s in enumerate(config["stages"]):
        if s not in FAMILIES:
            yield f"stages[{i}]: {s!r} is not a task family; choose from {', '.join(FAMILIES)}"
    for name, task in config["tasks"].items():
        try:
            source = source_of(name, task)
        except ValueError as error:
            yield str(error)
            continue
        if task["family"] not in FAMILIES:
            yield f"tasks.{name}.family: {task['family']!r} is not a family; choose from {', '.join(FAMILIES)}"
            continue
        # The source's own checks first: its catalogue entry is only looked up for an entry it can read.
        problem = next(source.check(name, task), None)
        if problem is not None:
            yield problem
            continue
        family, _ = task_catalog_entry(name, task)
        if family != task["family"]:
            yield f"tasks.{name}.family: {task['family']!r} does not match the dataset's family {family!r}"
    for k, stage in enumerate(config["stages"]):
        trainable = [n for n, t in config["tasks"].items() if t["family"] == stage and "train" in task_splits(n, t)]
        if not trainable:
            yield f"stages[{k}]: no task of family {stage!r} has a train split"
    for name, model in config["models"].items():
        kind = model["kind"]
        if kind not in MODEL_KINDS:
            yield f"models.{name}.kind: {kind!r} is not a model kind; choose from {', '.join(MODEL_KINDS)}"
        elif kind == "hub" and not model.get("source"):
            yield f"models.{name}.source: a hub model needs a source (a Hub id or a local path)"
        elif kind != "hub" and "source" in model:
            yield f"models.{name}.source: only hub models take a source, not {kind}"


def _settings_classes() -> dict:
    """The settings class of each config section that one reads (imported here: they pull in their modules)."""
    from quantreplay.evaluate import EvalSettings
    from quantreplay.intervals import AnalysisSettings
    from quantreplay.quantize import QuantConfig
    from quantreplay.train import LoraSettings

    return {
        "lora": LoraSettings,
        "quantization": QuantConfig,
        "evaluation": EvalSettings,
        "analysis": AnalysisSettings,
    }


def apply_settings(config: dict) -> None:
    """Parse every settings section through its class, in place: each section then holds every key (the class's
    defaults filled in), so job params are complete. `training` is filled as the defaults of a stage; each
    stage's overrides stay as written and are checked merged onto it. Raises ConfigError naming the key."""
    from quantreplay.bases.toy import toy_spec
    from quantreplay.grid import reference_precision, stage_settings
    from quantreplay.train import StageSettings

    training = dict(config["training"])
    overrides = training.pop("stages")
    try:
        for key, cls in _settings_classes().items():
            config[key] = parse(cls, config[key], key).to_dict()
        config["training"] = {**parse(StageSettings, training, "training").to_dict(), "stages": overrides}
        for name, model in config["models"].items():
            if model["kind"] == "toy":
                # The seed comes from data.seed: a toy base is part of the synthetic world it is pretrained on.
                spec = toy_spec(model.get("toy", {}), seed=config["data"]["seed"], key=f"models.{name}.toy")
                model["toy"] = {k: v for k, v in spec.to_dict().items() if k != "seed"}
    except SettingError as error:
        raise ConfigError(str(error)) from None
    for family in overrides:
        if family not in config["stages"]:
            raise ConfigError(
                f"training.stages.{family}: {family!r} is not one of the configured stages {config['stages']}"
            )
        try:
            parse(StageSettings, stage_settings(config, family), f"training.stages.{family}")
        except SettingError as error:
            raise ConfigError(str(error)) from None
    try:
        reference_precision(config["precisions"], config["analysis"]["reference_precision"])
    except ValueError as error:
        raise ConfigError(f"analysis.{error}") from None


def task_splits(name: str, task: dict) -> tuple[str, ...]:
    """The splits (train, test) that a configured task provides."""
    return task_catalog_entry(name, task)[1]


def check_config(config: dict, schema: dict) -> None:
    """Apply `schema` to `config` in place (filling defaults), then the semantic checks.

    Raises ConfigError with a one-line message naming the first bad key and its value.
    """
    apply_schema(config, schema)
    for key in ("precisions", "buffers", "buffer_counts", "seeds", "stages"):
        _unique(config[key], key)
    for message in _semantic_errors(config):
        raise ConfigError(message)
    apply_settings(config)
