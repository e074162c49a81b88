"""GPU code paths, where CUDA is available (marked gpu: conftest skips them elsewhere and `-ra` says why).

Each check compares the GPU with the same computation on the CPU or with the dequantized weights: every
precision's base lands on the GPU, fp16 computes natively in fp16, the int8 and nf4 layers run bitsandbytes'
CUDA kernels and give the right products, a LoRA backward pass gives the CPU's gradients, a training stage and
an evaluation run end to end on the GPU.
"""

import json
import math

import polars as pl
import pytest
import torch

from quantreplay.bases import resolve_base
from quantreplay.evaluate import EvalSettings, evaluate_checkpoint
from quantreplay.loglik import choice_loglikelihoods
from quantreplay.quantize import QuantConfig, compute_dtype, load_base
from quantreplay.train import LoraSettings, StageSettings, attach_adapter, collate, tokenize_example, train_stage

pytestmark = pytest.mark.gpu
QUANT = QuantConfig()
PRECISIONS = ["fp32", "bf16", "fp16", "int8", "nf4"]
# How each precision stores a projection's weight on the GPU: fp16 stays fp16 (on a CPU it is held in fp32).
WEIGHT_DTYPES = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.int8,
    "nf4": torch.uint8,
}
GPU_COMPUTE = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8": "int8 (outliers fp16)", "nf4": "bf16"}


def _base(tiny_base: str, precision: str, device: str):
    return load_base(resolve_base(tiny_base), precision=precision, quant=QUANT, device=device)


def _batch(tiny_base: str, tiny_task_files: dict, device: str, n: int = 8) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows = pl.read_parquet(tiny_task_files["boolq/train"]).head(n)
    examples = [
        tokenize_example(tok, p, t, max_seq_len=128) for p, t in zip(rows["prompt"], rows["target"], strict=True)
    ]
    return {k: v.to(device) for k, v in collate(examples, pad_id=tok.pad_token_id).items()}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_loads_onto_the_gpu(tiny_base, precision):
    model = _base(tiny_base, precision, "cuda")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cuda"}
    assert model.model.layers[0].mlp.up_proj.weight.dtype == WEIGHT_DTYPES[precision]
    assert compute_dtype(precision, quant=QUANT, device="cuda") == GPU_COMPUTE[precision]


def test_fp16_computes_natively_on_the_gpu(tiny_base, tiny_task_files):
    model = _base(tiny_base, "fp16", "cuda").eval()
    seen = []
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.append((o.dtype, o.device.type)))
    with torch.no_grad():
        loss = model(**_batch(tiny_base, tiny_task_files, "cuda")).loss.item()
    assert seen == [(torch.float16, "cuda")]
    # The CPU holds the same fp16-rounded weights in fp32: only the activations' rounding differs.
    reference = _base(tiny_base, "fp16", "cpu").eval()
    with torch.no_grad():
        assert loss == pytest.approx(reference(**_batch(tiny_base, tiny_task_files, "cpu")).loss.item(), rel=1e-2)


def _dequantized(layer) -> torch.Tensor:
    import bitsandbytes.functional as F

    if type(layer).__name__ == "Linear8bitLt":
        return F.int8_vectorwise_dequant(layer.weight.data, layer.weight.SCB)
    return F.dequantize_4bit(layer.weight.data, layer.weight.quant_state)


# precision, layer class, bitsandbytes ops its forward must dispatch, tolerated relative error of the product
# (LLM.int8 also rounds the activations to int8, ~1 %; NF4 computes in bf16, ~0.4 %).
KERNELS = [
    ("int8", "Linear8bitLt", {"bitsandbytes::int8_vectorwise_quant", "bitsandbytes::int8_linear_matmul"}, 0.05),
    ("nf4", "Linear4bit", {"bitsandbytes::gemm_4bit"}, 0.02),
]


@pytest.mark.parametrize(("precision", "cls", "ops", "tolerance"), KERNELS, ids=[k[0] for k in KERNELS])
def test_quantized_layers_run_bitsandbytes_cuda_kernels(tiny_base, precision, cls, ops, tolerance):
    from bitsandbytes.cextension import lib

    assert lib.compiled_with_cuda, "bitsandbytes loaded no CUDA library"
    layer = _base(tiny_base, precision, "cuda").eval().model.layers[0].mlp.up_proj
    assert type(layer).__name__ == cls and layer.weight.device.type == "cuda"
    # Before the first forward, which moves int8's scales from the weight into the layer's state.
    weight = _dequantized(layer).float()
    x = torch.randn(2, 5, layer.in_features, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, torch.no_grad():
        out = layer(x.half())
    assert ops <= {event.key for event in prof.key_averages()}
    reference = x.half().float() @ weight.T
    assert ((out.float() - reference).norm() / reference.norm()).item() < tolerance


def _lora_grads(tiny_base, tiny_task_files, precision: str, device: str) -> dict[str, torch.Tensor]:
    """Gradients of a fresh adapter (seeded, no dropout) after one backward pass on the same batch."""
    model = attach_adapter(
        _base(tiny_base, precision, device),
        lora=LoraSettings(dropout=0.0),
        previous_adapter=None,
        seed=0,
        gradient_checkpointing=False,
    )
    model.train()
    model(**_batch(tiny_base, tiny_task_files, device)).loss.backward()
    return {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_lora_gradients_on_the_gpu_match_the_cpu(tiny_base, tiny_task_files, precision):
    cpu = _lora_grads(tiny_base, tiny_task_files, precision, "cpu")
    gpu = _lora_grads(tiny_base, tiny_task_files, precision, "cuda")
    assert gpu.keys() == cpu.keys()
    if precision == "fp32":
        for name in cpu:
            torch.testing.assert_close(gpu[name], cpu[name], rtol=1e-3, atol=1e-6, msg=name)
        return
    # Same weights, other arithmetic: fp16/bf16 activations, LLM.int8's int8 activations, bf16 NF4 matmuls.
    a = torch.cat([g.flatten() for g in cpu.values()])
    b = torch.cat([gpu[name].flatten() for name in cpu])
    assert a.norm() > 0
    assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > 0.99
    assert 0.9 < (b.norm() / a.norm()).item() < 1.1


@pytest.mark.parametrize("precision", ["fp16", "int8", "nf4"])
def test_a_training_stage_runs_on_the_gpu(tiny_base, tiny_task_files, tmp_path, precision):
    from safetensors.torch import load_file

    result = train_stage(
        base=resolve_base(tiny_base),
        precision=precision,
        train_files=[tiny_task_files["boolq/train"], tiny_task_files["piqa/train"]],
        previous_adapter=None,
        adapter_out=str(tmp_path / "adapter"),
        report_out=str(tmp_path / "train.json"),
        lora=LoraSettings(),
        quant=QUANT,
        # Enough steps that fp16's loss scaler, which skips the steps whose scaled gradients overflow while it
        # finds its scale, still updates the adapter.
        stage=StageSettings(lr=5e-3, max_steps=10, batch_size=4, warmup_steps=1),
        seed=0,
        threads=1,
        cell={"precision": precision, "stage": "nlu"},
        log=lambda s: None,
    )
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["device"] == torch.cuda.get_device_name()
    assert report["compute_dtype"] == GPU_COMPUTE[precision]
    assert report["loss_scaling"] is (precision == "fp16")
    assert report["peak_gpu_bytes"] > 0
    assert all(math.isfinite(loss) for _, loss in result.loss_curve)
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)


def test_loglikelihoods_on_the_gpu_match_the_cpu(tiny_base, tiny_task_files):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows = pl.read_parquet(tiny_task_files["boolq/test"]).head(6)
    requests = [(p, c) for p, choices in zip(rows["prompt"], rows["choices"], strict=True) for c in choices]
    scores = {
        device: choice_loglikelihoods(
            _base(tiny_base, "fp32", device).eval(), tok, requests, batch_size=4, device=device
        )
        for device in ("cpu", "cuda")
    }
    assert scores["cuda"] == pytest.approx(scores["cpu"], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("precision", ["fp16", "nf4"])
def test_an_evaluation_runs_on_the_gpu(tiny_base, tiny_task_files, tmp_path, precision):
    report = evaluate_checkpoint(
        base=resolve_base(tiny_base),
        precision=precision,
        adapter=None,
        test_files=[tiny_task_files["boolq/test"], tiny_task_files["arithmetic/test"]],
        settings=EvalSettings(max_examples=4, batch_size=4, max_new_tokens={"nlu": 4, "math": 16, "code": 16}),
        quant=QUANT,
        predictions_out=str(tmp_path / "predictions.parquet"),
        scores_out=str(tmp_path / "scores.json"),
        cell={"precision": precision},
        threads=1,
        log=lambda s: None,
    )
    assert set(report["tasks"]) == {"boolq", "arithmetic"}
    assert all(s["n"] == 4 and 0 <= s["value"] <= 1 for s in report["tasks"].values())
    assert pl.read_parquet(tmp_path / "predictions.parquet").height == 8


@pytest.mark.parametrize("scheme", ["int8", "nf4"])
def test_fakequant_on_the_gpu_holds_the_real_gpu_layers_weights(tiny_base, scheme):
    from quantreplay.telemetry import held_weights

    real = _base(tiny_base, scheme, "cuda")
    arm = _base(tiny_base, f"fakequant-{scheme}", "cuda")
    name = "model.layers.0.mlp.up_proj"
    held = held_weights(arm)[name]
    assert held.device.type == "cuda" and held.dtype == torch.float32
    assert torch.equal(held, held_weights(real)[name])


def test_the_noise_arms_and_stepnoise_run_on_the_gpu(tiny_base, tiny_task_files, tmp_path):
    for arm in ("noise-nf4", "permuted-nf4", "stepnoise-nf4"):
        model = _base(tiny_base, arm, "cuda")
        assert model.model.layers[0].mlp.up_proj.weight.device.type == "cuda"
    report = tmp_path / "train.json"
    train_stage(base=resolve_base(tiny_base), precision="stepnoise-nf4", train_files=[tiny_task_files["boolq/train"]],
                previous_adapter=None, adapter_out=str(tmp_path / "adapter"), report_out=str(report),
                lora=LoraSettings(), quant=QUANT, stage=StageSettings(lr=2e-3, max_steps=2, batch_size=4),
                seed=0, threads=1, cell={"stage": "nlu"}, log=lambda s: None)  # fmt: skip
    assert json.loads(report.read_text())["control_arm"]["arm"] == "stepnoise-nf4"
