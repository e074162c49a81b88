"""Checking a quantreplay config before any job runs.

`check_config_files` reads the config files once more, strictly (a key given twice, a file that is empty or not
a mapping). `check_config` applies the JSON schema (filling defaults, as Snakemake's `validate` does) and then
checks what a schema cannot express: names that must come from a catalog, families that must match, values that
must be unique, local files that must exist, buffers that must differ. Every problem is raised as a
`ConfigError` whose message is one line naming the key and the bad value; `quantreplay.errors.one_line_errors`
prints it as `Config error: ...` and stops without a traceback, in the Snakefile and in the jobs that check what
only the data can tell (`quantreplay.train.check_stage_fits`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import jsonschema
import yaml

from quantreplay.bases import KINDS as MODEL_KINDS
from quantreplay.data.rows import FAMILIES
from quantreplay.data.sources import source_of
from quantreplay.errors import ConfigError
from quantreplay.quantize import PRECISIONS
from quantreplay.settings import SettingError, parse


def _typed(value, schema):
    """`value` as the scalar type `schema` declares, where it is text that spells one, else `value` itself.
    Snakemake reads a `--config` value that is a list or a mapping with YAML's BaseLoader, every scalar in it a
    string (`--config seeds=[0,1]` gives ['0', '1']); a string the schema allows stays a string."""
    types = schema.get("type") if isinstance(schema, dict) else None
    types = [types] if isinstance(types, str) else list(types or [])
    if not isinstance(value, str) or not types or "string" in types:
        return value
    text = value.strip()
    for kind, convert in (("integer", int), ("number", int), ("number", float)):
        if kind in types:
            try:
                return convert(text)
            except ValueError:
                pass
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "null" in types and text in ("null", "Null", "NULL", "~"):
        return None
    return value


def _with_defaults(validator_class):
    # jsonschema validates but does not fill defaults; fill them as each object is entered, so nested
    # defaults ({} objects whose keys have defaults) are filled too. Text that spells the number or boolean a
    # key or list item asks for becomes that value first (`_typed`: Snakemake's --config lists and mappings).
    validate_properties = validator_class.VALIDATORS["properties"]
    validate_items = validator_class.VALIDATORS["items"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
                if key in instance:
                    instance[key] = _typed(instance[key], sub)
        yield from validate_properties(validator, properties, instance, schema)

    def typed_items(validator, items, instance, schema):
        if isinstance(instance, list):
            instance[:] = [_typed(item, items) for item in instance]
        yield from validate_items(validator, items, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults, "items": typed_items})


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _duplicate_keys(node: yaml.Node, path: tuple) -> Iterator[str]:
    if isinstance(node, yaml.MappingNode):
        first: dict = {}
        for key_node, value_node in node.value:
            # A complex key (a list or mapping as key) has no name to report; YAML merge keys may repeat.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<" and key in first:
                shown = [
                    f"{n.value!r} on line {n.start_mark.line + 1}" if isinstance(n, yaml.ScalarNode)
                    else f"line {n.start_mark.line + 1}"
                    for n in (first[key], value_node)
                ]  # fmt: skip
                yield f"{_key((*path, key))} is given twice, {shown[0]} and {shown[1]} (YAML keeps the last silently)"
            else:
                first[key] = value_node
            yield from _duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, i))


class _DuplicateJsonKey(Exception):
    pass


def _json_object_without_duplicates(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _DuplicateJsonKey(key)
    return dict(pairs)


def check_config_file(path: str | Path) -> None:
    """Read the YAML file at `path` (a config, a profile, the schema) as Snakemake would, but strictly: raise
    ConfigError naming the file if it is missing, unreadable YAML, empty or not a mapping of keys, or if a mapping
    in it gives a key twice."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        _check_json_config(path, text, error)
        return
    if root is None:
        raise ConfigError(f"{path}: is empty, not a mapping of keys")
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else f"a single value ({root.value!r})"
        raise ConfigError(f"{path}: is {kind}, not a mapping of keys")
    problem = next(_duplicate_keys(root, ()), None)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")


def _check_json_config(path, text: str, yaml_error: yaml.YAMLError) -> None:
    # Snakemake reads a file as JSON first: JSON that is not YAML (tabs) is checked as JSON.
    try:
        loaded = json.loads(text, object_pairs_hook=_json_object_without_duplicates)
    except _DuplicateJsonKey as error:
        raise ConfigError(f"{path}: {error.args[0]!r} is given twice in one object (JSON keeps the last)") from None
    except ValueError:
        mark = getattr(yaml_error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(yaml_error, "problem", None) or str(yaml_error).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: is {type(loaded).__name__} JSON, not a mapping of keys")


def check_config_files(paths: Sequence[str | Path]) -> None:
    """`check_config_file` on every file Snakemake loads, in order."""
    for path in paths:
        check_config_file(path)


def load_schema(path: str | Path) -> dict:
    """Read the YAML schema at `path`, strictly (`check_config_file`)."""
    check_config_file(path)
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
    yield from _same_buffer_sizes(config)
    for name, model in config["models"].items():
        kind = model["kind"]
        if kind not in MODEL_KINDS:
            yield f"models.{name}.kind: {kind!r} is not a model kind; choose from {', '.join(MODEL_KINDS)}"
        elif kind == "hub" and not model.get("source"):
            yield f"models.{name}.source: a hub model needs a source (a Hub id or a local path)"
        elif kind != "hub" and "source" in model:
            yield f"models.{name}.source: only hub models take a source, not {kind}"


def _same_buffer_sizes(config: dict) -> Iterator[str]:
    """Two buffers that draw as many examples of every replayed task (sizes known before the data exist: builtin
    tasks) are one buffer size under two labels, a fraction that rounds like another or like a count: their
    mixes differ only by the seeded draw, and the study would read replicates as two doses."""
    from quantreplay.replay import Buffer

    replayed = [
        (name, task)
        for stage in config["stages"][:-1]
        for name, task in config["tasks"].items()
        if task["family"] == stage and "train" in task_splits(name, task)
    ]
    sizes = {name: source_of(name, task).train_size(name, task, config["data"]) for name, task in replayed}
    if not sizes or None in sizes.values():
        return
    buffers = [(f"buffers[{i}]", b, Buffer(fraction=b)) for i, b in enumerate(config["buffers"])]
    buffers += [(f"buffer_counts[{i}]", c, Buffer(count=c)) for i, c in enumerate(config.get("buffer_counts", []))]
    # The schema has filled the section; a bad draw is reported by apply_settings, as uniform here.
    draw = config.get("replay", {}).get("draw", "uniform")
    seen: dict[tuple, tuple] = {}
    for key, value, buffer in buffers:
        drawn = tuple(buffer.drawn(n, draw) for n in sizes.values())
        if drawn in seen:
            first_key, first_value = seen[drawn]
            counts = sorted({(k, n) for k, n in zip(drawn, sizes.values(), strict=True)})
            each = ", ".join(f"{k} of {n}" for k, n in counts)
            yield (
                f"{key}: {value!r} replays as many examples of every earlier task as {first_key}: {first_value!r} "
                f"({each} per task): two labels for one buffer size"
            )
            return
        seen[drawn] = (key, value)


def _settings_classes() -> dict:
    """The settings class of each config section that one reads (imported here: they pull in their modules)."""
    from quantreplay.evaluate import EvalSettings
    from quantreplay.heldout import HeldoutSettings
    from quantreplay.intervals import AnalysisSettings
    from quantreplay.quantize import QuantConfig
    from quantreplay.replay import ReplaySettings
    from quantreplay.train import ContinuationSettings, LoraSettings

    return {
        "replay": ReplaySettings,
        "continuation": ContinuationSettings,
        "lora": LoraSettings,
        "quantization": QuantConfig,
        "evaluation": EvalSettings,
        "analysis": AnalysisSettings,
        "heldout_loss": HeldoutSettings,
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
