"""Control arms: bases that keep one part of what quantization does to the frozen weights and drop the rest.

The paper explains its result as "quantization-induced noise acts as implicit regularization", but a frozen
bitsandbytes base is one fixed, deterministic change of the weights (W -> Q(W)) plus, for INT8, rounding of the
activations and an outlier path. Each arm below is a precision of the grid that isolates one reading:

- `fakequant-<scheme>`: the weights are exactly Q(W) of that scheme, held and multiplied in fp32 (the changed
  weights, none of the arithmetic);
- `noise-<scheme>`: W + e, e Gaussian with each quantization block's RMS equal to that of Q(W) - W, drawn once
  from `quantization.noise_seed` (the error's size, none of its structure);
- `stepnoise-nf4`: the same matched Gaussian drawn anew at every training forward and absent in eval mode (the
  regularizer the hypothesis names);
- `permuted-nf4`: Q(W) - W shuffled within each block (the error's values, none of its placement).

Blocks are NF4's 64 consecutive weights of the flattened matrix (bitsandbytes' blocking) and INT8's output rows
(LLM.int8's per-row absmax). Q is bitsandbytes' own quantizer, fed the dtype the real arm quantizes from, so
`fakequant-*` holds the real arm's dequantized weights bit for bit. The arms touch exactly the Linear layers the
real arms quantize (transformers' own rule); embeddings, norms and the head stay as they are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

NF4_BLOCK = 64
SCHEMES = ("int8", "nf4")


@dataclass(frozen=True)
class ControlArm:
    """`scheme`: whose quantization error the arm borrows; `kind`: what it keeps of it."""

    scheme: str
    kind: str
    keeps: str


CONTROL_ARMS = {
    "fakequant-int8": ControlArm("int8", "fakequant", "the int8 weights, multiplied in fp32"),
    "fakequant-nf4": ControlArm("nf4", "fakequant", "the nf4 weights, multiplied in fp32"),
    "noise-int8": ControlArm("int8", "noise", "Gaussian noise of int8's error RMS per row, fixed"),
    "noise-nf4": ControlArm("nf4", "noise", "Gaussian noise of nf4's error RMS per block, fixed"),
    "stepnoise-nf4": ControlArm("nf4", "stepnoise", "Gaussian noise of nf4's error RMS per block, new each step"),
    "permuted-nf4": ControlArm("nf4", "permuted", "nf4's error shuffled within each block, fixed"),
}


def is_control_arm(precision: str) -> bool:
    return precision in CONTROL_ARMS


def quantized_linear_names(model) -> list[str]:
    """Names of the Linear layers that int8 and nf4 quantize in `model`, by transformers' own rule (every Linear
    but the output head and modules tied to the embeddings)."""
    import torch
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    keep = get_keys_to_not_convert(model)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and should_convert_module(name, keep)
    ]


def source_dtype(device: str):
    """The dtype the real arms quantize from: fp16 on a GPU, fp32 on a CPU (quantize.load_base)."""
    import torch

    return torch.float16 if device == "cuda" else torch.float32


def dequantized(weight, scheme: str, *, double_quant: bool, device: str):
    """Q(W) of `scheme` by bitsandbytes' quantizers, in fp32: what the real layer multiplies by."""
    import bitsandbytes.functional as bnbf
    import torch

    if scheme == "nf4":
        packed, state = bnbf.quantize_4bit(
            weight.to(source_dtype(device)).contiguous(),
            blocksize=NF4_BLOCK,
            compress_statistics=double_quant,
            quant_type="nf4",
        )
        return bnbf.dequantize_4bit(packed, state).to(torch.float32)
    if scheme == "int8":
        # Int8Params quantizes an fp16 copy on every device.
        codes, scales, _ = bnbf.int8_vectorwise_quant(weight.to(torch.float16).contiguous())
        return int8_weights(codes, scales)
    raise ValueError(f"unknown quantization scheme {scheme!r}; choose from {', '.join(SCHEMES)}")


def int8_weights(codes, scales):
    """LLM.int8's weights from their int8 codes and per-row absmax scales, in fp32, as MatMul8bitFp restores them:
    CB * (SCB / 127)."""
    import torch

    return codes.to(torch.float32).mul_(scales.to(torch.float32).unsqueeze(1).mul(1.0 / 127.0))


def blocks(tensor, scheme: str) -> list:
    """Views of `tensor` as 2-D groups of quantization blocks (one row per block): INT8's output rows; NF4's 64
    consecutive weights of the flattened tensor, the shorter last block as a group of its own."""
    if scheme == "int8":
        return [tensor.reshape(tensor.shape[0], -1)]
    flat = tensor.reshape(-1)
    whole = flat.numel() // NF4_BLOCK * NF4_BLOCK
    groups = [flat[:whole].view(-1, NF4_BLOCK)] if whole else []
    return groups + ([flat[whole:].view(1, -1)] if whole < flat.numel() else [])


def block_rms(error, scheme: str) -> list:
    """Each block's RMS of `error`, a column per group of `blocks`."""
    return [group.pow(2).mean(dim=1, keepdim=True).sqrt() for group in blocks(error, scheme)]


def matched_noise(error, scheme: str, generator):
    """Gaussian noise in `error`'s shape whose every block has exactly the RMS of that block of `error`."""
    import torch

    noise = torch.randn(error.shape, generator=generator, dtype=torch.float32)
    targets = block_rms(error.cpu(), scheme)
    for target, group, rms in zip(targets, blocks(noise, scheme), block_rms(noise, scheme), strict=True):
        group.mul_(torch.where(rms > 0, target / rms, torch.zeros_like(rms)))
    return noise.to(error.device)


def permuted_within_blocks(error, scheme: str, generator):
    """`error` with the values of every block shuffled among that block's positions."""
    import torch

    shuffled = error.detach().cpu().clone()
    for group in blocks(shuffled, scheme):
        order = torch.rand(group.shape, generator=generator).argsort(dim=1)
        group.copy_(group.gather(1, order))
    return shuffled.to(error.device)


def expanded_rms(error, scheme: str):
    """Per weight, the RMS of its block of `error` (the standard deviation stepnoise draws with)."""
    import torch

    std = torch.empty_like(error)
    for group, rms in zip(blocks(std, scheme), block_rms(error, scheme), strict=True):
        group.copy_(rms.expand_as(group))
    return std


def _step_noise_class():
    import torch

    class StepNoise(torch.nn.Module):
        """A parametrization of a frozen weight: W plus fresh Gaussian noise of a fixed per-weight standard
        deviation at every forward in training mode, W itself in eval mode. Draws come from torch's global
        generator, which the training job seeds with the cell's seed."""

        def __init__(self, std):
            super().__init__()
            self.register_buffer("std", std, persistent=False)

        def forward(self, weight):
            if not self.training:
                return weight
            return weight + torch.randn_like(weight) * self.std

    return StepNoise


def layer_generator(noise_seed: int, name: str):
    """A CPU generator for one layer, from the arm's seed and the layer's name (same draw on every load)."""
    import torch

    return torch.Generator().manual_seed(noise_seed * 1_000_003 + zlib.crc32(name.encode()))


def apply_arm(model, arm_name: str, *, double_quant: bool, noise_seed: int, device: str) -> int:
    """Turn the fp32 `model` into control arm `arm_name` in place; returns how many Linear layers changed."""
    import torch
    from torch.nn.utils import parametrize

    arm = CONTROL_ARMS[arm_name]
    modules = dict(model.named_modules())
    names = quantized_linear_names(model)
    for name in names:
        module = modules[name]
        with torch.no_grad():
            weight = module.weight
            quantized = dequantized(weight, arm.scheme, double_quant=double_quant, device=device)
            error = quantized - weight.float()
            if arm.kind == "fakequant":
                weight.copy_(quantized)
            elif arm.kind == "noise":
                weight.add_(matched_noise(error, arm.scheme, layer_generator(noise_seed, name)))
            elif arm.kind == "permuted":
                weight.add_(permuted_within_blocks(error, arm.scheme, layer_generator(noise_seed, name)))
        if arm.kind == "stepnoise":
            step_noise = _step_noise_class()(expanded_rms(error, arm.scheme))
            parametrize.register_parametrization(module, "weight", step_noise)
    return len(names)


def describe(precision: str, *, noise_seed: int) -> dict | None:
    """What a run's reports record of its arm (None for a plain precision)."""
    if not is_control_arm(precision):
        return None
    arm = CONTROL_ARMS[precision]
    seeded = {"noise": "noise_seed", "permuted": "noise_seed", "stepnoise": "the training seed"}.get(arm.kind)
    return {
        "arm": precision,
        "scheme": arm.scheme,
        "kind": arm.kind,
        "keeps": arm.keeps,
        "noise_seed": noise_seed if seeded == "noise_seed" else None,
        "drawn_from": seeded,
    }
