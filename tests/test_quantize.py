"""The frozen base in each precision: real bitsandbytes layers, and the CPU compute policy (rounded weights, fp32
matmuls by default; native on request)."""

import os
import subprocess
import sys

import pytest
import torch

from quantreplay.bases import resolve_base
from quantreplay.quantize import (
    QuantConfig,
    compute_dtype,
    cpu_capability,
    cpu_layers_to_apply,
    dequantize_cpu_layers,
    held_weight,
    load_base,
)

QUANT = QuantConfig()
NATIVE = QuantConfig(cpu_compute="native")


@pytest.mark.parametrize(
    ("precision", "cls", "dtype"), [("int8", "Linear8bitLt", torch.int8), ("nf4", "Linear4bit", torch.uint8)]
)
def test_quantized_bases_hold_real_bitsandbytes_layers(tiny_base, precision, cls, dtype):
    model = load_base(resolve_base(tiny_base), precision=precision, quant=QUANT, device="cpu")
    layers = [m for m in model.modules() if type(m).__name__ == cls]
    # 7 projections per block, 2 blocks; the tied output head stays unquantized.
    assert len(layers) == 14
    assert all(m.weight.dtype == dtype for m in layers)
    if precision == "nf4":
        assert all(m.weight.quant_state.nested for m in layers)  # double quantization
        assert all(m.support_avx512bf16_for_cpu is False for m in layers)


def test_half_precisions_keep_their_rounding_and_compute_in_fp32_on_a_cpu(tiny_base):
    path = resolve_base(tiny_base)
    w32 = load_base(path, precision="fp32", quant=QUANT, device="cpu").model.layers[0].mlp.up_proj.weight
    for precision, half in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        held = load_base(path, precision=precision, quant=QUANT, device="cpu").model.layers[0].mlp.up_proj.weight
        assert held.dtype == torch.float32 and torch.equal(held, w32.to(half).float())
        native = load_base(path, precision=precision, quant=NATIVE, device="cpu").model.layers[0].mlp.up_proj.weight
        assert native.dtype == half and torch.equal(native.float(), held)


def test_nf4_keeps_its_codes_and_multiplies_in_the_policys_dtype(tiny_base):
    import bitsandbytes as bnb

    path = resolve_base(tiny_base)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for name, quant, dtype in (("fp32", QUANT, torch.float32), ("bf16", NATIVE, torch.bfloat16)):
        layer = load_base(path, precision="nf4", quant=quant, device="cpu").model.layers[0].mlp.up_proj
        assert type(layer).__name__ == "Linear4bit" and layer.weight.dtype == torch.uint8
        assert layer.compute_dtype == dtype
        weights = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        with torch.no_grad():
            outputs[name] = (layer(x).float(), x @ weights.T)
    # The default: the NF4 weights exactly, multiplied in fp32; native bf16 rounds the product to bf16.
    out, exact = outputs["fp32"]
    assert torch.allclose(out, exact, atol=1e-6)
    out, exact = outputs["bf16"]
    assert not torch.allclose(out, exact, atol=1e-4) and torch.allclose(out, exact, atol=5e-2)


@pytest.mark.parametrize(
    ("precision", "cpu", "native_cpu", "gpu"),
    [
        ("fp32", "fp32", "fp32", "fp32"),
        ("bf16", "fp32", "bf16", "bf16"),
        ("fp16", "fp32", "fp16", "fp16"),
        ("nf4", "fp32", "bf16", "bf16"),
        ("int8", "int8 (outliers fp32)", "int8 (outliers fp32)", "int8 (outliers fp16)"),
    ],
)
def test_the_compute_dtype_follows_the_policy(precision, cpu, native_cpu, gpu):
    assert compute_dtype(precision, quant=QUANT, device="cpu") == cpu
    assert compute_dtype(precision, quant=NATIVE, device="cpu") == native_cpu
    assert compute_dtype(precision, quant=QUANT, device="cuda") == gpu


def test_the_cpu_capability_names_the_kernels_torch_runs():
    # torch picks its kernels by the CPU's vector instructions; ATEN_CPU_CAPABILITY caps them (as on an AVX2 CPU).
    probe = "from quantreplay.quantize import cpu_capability; print(cpu_capability())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "DEFAULT"
    assert cpu_capability() != "" and cpu_capability() == torch.backends.cpu.get_cpu_capability()


def _one_backward(tiny_base, tiny_task_files, precision: str, quant: QuantConfig, *, training: bool):
    """(layer classes, loss, LoRA gradients) of a fresh seeded adapter, no dropout, on 8 boolq rows: the model as
    train_stage (training) or an evaluation (not training) holds it."""
    import polars as pl
    from transformers import AutoTokenizer

    from quantreplay.train import LoraSettings, attach_adapter, collate, tokenize_example

    model = load_base(resolve_base(tiny_base), precision=precision, quant=quant, device="cpu")
    dequantize_cpu_layers(model, precision, quant=quant, device="cpu", training=training)
    classes = {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}
    model = attach_adapter(model, lora=LoraSettings(dropout=0.0), previous_adapter=None, seed=0,
                           gradient_checkpointing=False)  # fmt: skip
    model.train(training)
    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows = pl.read_parquet(tiny_task_files["boolq/train"]).head(8)
    examples = [tokenize_example(tok, p, t, max_seq_len=128) for p, t in zip(rows["prompt"], rows["target"],
                                                                             strict=True)]  # fmt: skip
    loss = model(**collate(examples, pad_id=tok.pad_token_id)).loss
    loss.backward()
    return classes, loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("precision", "training"), [("nf4", True), ("nf4", False), ("int8", True)])
def test_dequantized_cpu_layers_give_bitsandbytes_own_numbers(tiny_base, tiny_task_files, precision, training):
    kept = QuantConfig(cpu_layers="bitsandbytes")
    classes, loss, grads = _one_backward(tiny_base, tiny_task_files, precision, kept, training=training)
    assert classes >= {"Linear4bit" if precision == "nf4" else "Linear8bitLt"}
    fast_classes, fast_loss, fast_grads = _one_backward(tiny_base, tiny_task_files, precision, QUANT,
                                                        training=training)  # fmt: skip
    assert fast_classes == {"Linear"}
    assert fast_loss == pytest.approx(loss, rel=1e-6)
    assert fast_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_int8_evaluates_with_llm_int8_layers_and_a_gpu_keeps_every_layer(tiny_base):
    # In eval mode LLM.int8 rounds the activations: its products differ from the dequantized weights', so int8's
    # evaluation keeps bitsandbytes' layers; off a CPU (or under native compute) nothing is swapped.
    model = load_base(resolve_base(tiny_base), precision="int8", quant=QUANT, device="cpu")
    assert dequantize_cpu_layers(model, "int8", quant=QUANT, device="cpu", training=False) == 0
    assert not cpu_layers_to_apply("nf4", quant=QUANT, device="cuda", training=True)
    assert not cpu_layers_to_apply("nf4", quant=NATIVE, device="cpu", training=True)
    assert not cpu_layers_to_apply("fp16", quant=QUANT, device="cpu", training=True)
    assert dequantize_cpu_layers(model, "int8", quant=QUANT, device="cpu", training=True) == 14


def test_held_weight_of_an_int8_layer_is_the_same_before_and_after_its_first_forward():
    # bitsandbytes moves the codes and scales from the weight to the layer's state at the first forward.
    import bitsandbytes as bnb

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    layer = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(linear.state_dict())
    layer = layer.to("cpu").eval()
    before = held_weight(layer).clone()
    layer(torch.randn(2, 64))
    assert layer.weight.CB is None and layer.state.CB is not None
    assert torch.equal(held_weight(layer), before)
    assert (before - linear.weight).abs().max() < 0.01
