"""Loading the frozen base in one of the study's precisions.

fp32, bf16 and fp16 load the weights in that dtype. int8 is bitsandbytes' LLM.int8 (`Linear8bitLt`, int8
weights with fp16/fp32 outliers above a threshold), nf4 is bitsandbytes' 4-bit NormalFloat with double
quantization (`Linear4bit`, packed uint8 weights, block size 64), the QLoRA recipe. Embeddings, norms and the
output head stay unquantized, as in both papers. The control arms (quantreplay.controls) are precisions too: an
fp32 base changed in one chosen part of what int8 or nf4 does to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quantreplay.controls import CONTROL_ARMS, apply_arm, is_control_arm
from quantreplay.settings import Settings, non_negative, one_of, positive, setting

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "nf4", *CONTROL_ARMS)
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


# How a base computes on a CPU: in fp32 from its precision's rounded weights, or in the precision's own dtype.
CPU_COMPUTE = ("fp32", "native")
# How int8 and nf4 hold their weights on a CPU under fp32 compute (QuantConfig.cpu_layers, `cpu_layers_to_apply`).
CPU_LAYERS = ("dequantized", "bitsandbytes")


@dataclass(frozen=True)
class QuantConfig(Settings):
    """How the precisions hold and multiply the frozen base (config `quantization`).

    int8_threshold: LLM.int8's outlier threshold (activations above it take the fp16 path); 6.0 is the paper's
    and bitsandbytes' default. nf4_double_quant: also quantize the per-block scales (QLoRA). nf4_compute_dtype:
    the dtype NF4's dequantized matmuls run in on a GPU (bf16, QLoRA's choice; the paper's authors ran fp16).
    cpu_compute: on a CPU, `fp32` keeps each precision's rounding of the weights (fp16 or bf16 values, NF4 codes
    and scales, int8 weights) and multiplies in fp32, so a result does not depend on which CPU ran it and no
    precision is slow on a CPU without bf16 or fp16 hardware (there, bf16 and fp16 matmuls are 25-70x slower than
    fp32); `native` computes as a GPU does (bf16 and fp16 natively, NF4 in nf4_compute_dtype), fast only on CPUs
    with AMX or AVX-512 bf16/fp16 units. On a GPU every precision computes natively. cpu_layers: under fp32
    compute on a CPU, `dequantized` swaps bitsandbytes' layers, once loaded, for fp32 Linear layers that hold the
    very weights those layers multiply by (`dequantize_cpu_layers`), wherever the products are the same: nf4 always,
    int8 in training (in eval mode LLM.int8 rounds the activations, so int8's evaluation keeps its layers);
    `bitsandbytes` keeps the layers, which dequantize their weights on every matmul (the same numbers, 2-3x
    slower steps on SmolLM2-135M). noise_seed: the seed of the `noise-*` and `permuted-nf4` control arms' draws
    (quantreplay.controls), the same for every cell.
    """

    int8_threshold: float = setting(6.0, positive, "positive")
    nf4_double_quant: bool = setting(True)
    nf4_compute_dtype: str = setting("bf16", one_of(*DTYPES), f"one of {', '.join(DTYPES)}")
    cpu_compute: str = setting("fp32", one_of(*CPU_COMPUTE), f"one of {', '.join(CPU_COMPUTE)}")
    cpu_layers: str = setting("dequantized", one_of(*CPU_LAYERS), f"one of {', '.join(CPU_LAYERS)}")
    noise_seed: int = setting(0, non_negative, "an integer >= 0")


def quiet_bitsandbytes() -> None:
    """bitsandbytes logs a cast warning on every int8 matmul on CPU; keep logs readable."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def disable_cpu_inference_repack(model) -> int:
    """Keep every `Linear4bit` on its training kernel; returns how many layers were changed.

    On CPUs with AVX512-BF16, an eval-mode forward under no_grad repacks Linear4bit weights in place for an
    inference kernel; training afterwards crashes on some shapes and on others silently computes wrong LoRA
    gradients (the only sign is a warning that an autograd kernel was not registered). Turning the repack off
    right after loading avoids both (observed with bitsandbytes >= 0.47).
    """
    import bitsandbytes as bnb

    changed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def compute_dtype(precision: str, *, quant: QuantConfig, device: str) -> str:
    """The dtype the base's matmuls run in (see QuantConfig.cpu_compute)."""
    if precision == "int8":
        # LLM.int8 multiplies int8 weights by int8-rounded activations; its outlier columns take a float path.
        return "int8 (outliers fp16)" if device == "cuda" else "int8 (outliers fp32)"
    if is_control_arm(precision):
        return "fp32"
    if device == "cpu" and quant.cpu_compute == "fp32":
        return "fp32"
    return quant.nf4_compute_dtype if precision == "nf4" else precision


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here (e.g. AVX2, AVX512), for reports and benchmarks: a
    step time means little without it."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def load_base(path: str, *, precision: str, quant: QuantConfig, device: str):
    """Load the causal LM at `path` with its weights in `precision`, on `device` ('cpu' or 'cuda'), computing in
    `compute_dtype(precision, quant=quant, device=device)`.

    Raises ValueError naming an unknown precision.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    compute = (
        getattr(torch, DTYPES[compute_dtype(precision, quant=quant, device=device)]) if precision != "int8" else None
    )
    if is_control_arm(precision):
        # Full precision on every device: an arm differs from fp32 only in the change it makes to the weights.
        placement = {"device_map": {"": 0}} if device == "cuda" else {}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **placement)
        apply_arm(model, precision, double_quant=quant.nf4_double_quant, noise_seed=quant.noise_seed, device=device)
        return model
    if precision in DTYPES:
        # On a GPU the weights load straight onto it (like the quantized ones below): an 8B fp16 base is never
        # materialised in host memory first.
        placement = {"device_map": {"": 0}} if device == "cuda" else {}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, DTYPES[precision]), **placement)
        # Rounded to the precision on load; held and multiplied in the compute dtype (a no-op unless fp32 on CPU).
        return model.to(compute)
    from transformers import BitsAndBytesConfig

    quiet_bitsandbytes()
    if precision == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=quant.int8_threshold)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=quant.nf4_double_quant,
            bnb_4bit_compute_dtype=compute,
        )
    # Unquantized parts in fp16 on a GPU (as the paper loads them); fp32 on CPU, where fp16 math is slow.
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=config, dtype=dtype, device_map={"": 0 if device == "cuda" else "cpu"}
    )
    if precision == "nf4":
        disable_cpu_inference_repack(model)
    return model


def held_weight(module):
    """What a Linear layer multiplies by, in fp32: bitsandbytes' layers dequantized as their matmuls do (int8:
    CB * SCB / 127; nf4: dequantize_4bit), any other Linear's weight as it reads (a stepnoise arm in training mode:
    one draw)."""
    kind = type(module).__name__
    weight = module.weight
    if kind == "Linear8bitLt":
        from quantreplay.controls import int8_weights

        # Before the first forward the codes and scales sit on the weight; a forward moves them to the layer's state.
        codes = weight.CB if getattr(weight, "CB", None) is not None else module.state.CB
        scales = weight.SCB if getattr(weight, "SCB", None) is not None else module.state.SCB
        return int8_weights(codes, scales)
    if kind == "Linear4bit":
        import bitsandbytes as bnb

        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float()
    return weight.detach().float()


def cpu_layers_to_apply(precision: str, *, quant: QuantConfig, device: str, training: bool) -> bool:
    """Whether `dequantize_cpu_layers` applies: the products bitsandbytes computes on a CPU under fp32 compute are
    its dequantized weights times the input in fp32 for nf4 (MatMul4Bit) and for int8 in training (MatMul8bitFp);
    int8 in eval mode rounds the input to int8 (MatMul8bitLt)."""
    if device != "cpu" or quant.cpu_compute != "fp32" or quant.cpu_layers != "dequantized":
        return False
    return precision == "nf4" or (precision == "int8" and training)


def dequantize_cpu_layers(model, precision: str, *, quant: QuantConfig, device: str, training: bool) -> int:
    """Swap `model`'s bitsandbytes layers for frozen fp32 Linear layers holding the weights they multiply by, where
    `cpu_layers_to_apply` says the products are the same (nf4: dequantize_4bit; int8: codes x scales / 127, as
    MatMul8bitFp restores them). Returns how many layers were swapped (0 where it does not apply). Call it on the
    freshly loaded base, before an adapter wraps the layers."""
    if not cpu_layers_to_apply(precision, quant=quant, device=device, training=training):
        return 0
    import torch

    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child).__name__ not in ("Linear8bitLt", "Linear4bit"):
                continue
            weight = held_weight(child)
            linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            linear.weight = torch.nn.Parameter(weight, requires_grad=False)
            if child.bias is not None:
                linear.bias = torch.nn.Parameter(child.bias.data.float(), requires_grad=False)
            setattr(parent, child_name, linear)
            swapped += 1
    return swapped


def quantized_layers(model) -> dict[str, int]:
    """Count of linear layers by class name (Linear, Linear8bitLt, Linear4bit) in `model`; a stepnoise arm's
    parametrized Linear counts as a Linear."""
    counts: dict[str, int] = {}
    for module in model.modules():
        name = type(module).__name__.removeprefix("Parametrized")
        if name in ("Linear", "Linear8bitLt", "Linear4bit"):
            counts[name] = counts.get(name, 0) + 1
    return counts


def weight_bytes(model) -> int:
    """Bytes held by the model's parameters and buffers as stored (packed nf4 counts as packed)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
