"""Weight-error and adapter telemetry (quantreplay.telemetry) on hand-built layers and real loads."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from quantreplay.bases import resolve_base
from quantreplay.quantize import QuantConfig, load_base
from quantreplay.telemetry import held_weights, outlier_shares, update_rows, weight_error_rows


def test_weight_error_rows_on_a_hand_built_layer():
    reference = {"model.layers.2.mlp.up_proj": torch.tensor([[3.0, 0.0], [0.0, 4.0]])}
    held = {"model.layers.2.mlp.up_proj": torch.tensor([[3.0, 1.0], [0.0, 2.0]])}
    (row,) = weight_error_rows(reference, held, list(reference))
    # Error [[0, 1], [0, -2]]: norm sqrt(5) of |W| = 5; RMS sqrt(5/4); mean -1/4; largest 2.
    assert row["module"] == "up_proj" and row["block"] == 2 and (row["rows"], row["columns"]) == (2, 2)
    assert math.isclose(row["relative_error"], math.sqrt(5) / 5, rel_tol=1e-6)
    assert math.isclose(row["error_rms"], math.sqrt(5 / 4), rel_tol=1e-6)
    assert math.isclose(row["error_mean"], -0.25, rel_tol=1e-6) and row["error_max"] == 2.0


def test_outlier_share_counts_input_columns_above_the_threshold_on_real_tokens_only():
    layer = torch.nn.Sequential()
    layer.add_module("proj", torch.nn.Linear(4, 2))
    x = torch.zeros(1, 3, 4)
    x[0, 0, 1] = 7.0  # column 1 above 6 on a real token
    x[0, 1, 2] = -6.5  # column 2 above in magnitude
    x[0, 2, 3] = 100.0  # column 3 only on padding

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = layer

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids)

    model = Wrapper()
    batch = {"input_ids": x, "attention_mask": torch.tensor([[1, 1, 0]])}
    assert outlier_shares(model, [batch], ["inner.proj"], 6.0) == {"inner.proj": 0.5}


def _adapter(folder, factors, *, r=2, alpha=4):
    folder.mkdir()
    tensors = {}
    for layer, (b, a) in factors.items():
        tensors[f"base_model.model.{layer}.lora_A.weight"] = a
        tensors[f"base_model.model.{layer}.lora_B.weight"] = b
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": alpha}))
    return str(folder)


def test_update_rows_match_the_dense_updates(tmp_path):
    gen = torch.Generator().manual_seed(0)
    layers = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    stages = [{name: (torch.randn(5, 2, generator=gen), torch.randn(2, 3, generator=gen)) for name in layers}
              for _ in range(3)]  # fmt: skip
    folders = [_adapter(tmp_path / f"s{i}", f) for i, f in enumerate(stages)]
    rows = {(r["after_stage"], r["layer"]): r for r in update_rows(folders)}
    scale = 4 / 2
    dense = [{n: scale * b @ a for n, (b, a) in s.items()} for s in stages]
    for layer in [*layers, "total"]:
        names = layers if layer == "total" else [layer]

        def flat(k, names=names):
            if k < 0:
                return torch.zeros(sum(dense[0][n].numel() for n in names))
            return torch.cat([dense[k][n].reshape(-1) for n in names])

        for k in range(3):
            row = rows[k + 1, layer]
            step, previous = flat(k) - flat(k - 1), flat(k - 1) - flat(k - 2)
            assert math.isclose(row["update_norm"], float(flat(k).norm()), rel_tol=1e-5)
            assert math.isclose(row["step_norm"], float(step.norm()), rel_tol=1e-5)
            if k == 0:
                assert row["step_cosine"] is None and row["previous_step_kept"] is None
                continue
            cosine = float(step @ previous / (step.norm() * previous.norm()))
            kept = float(flat(k) @ previous / previous.pow(2).sum())
            assert math.isclose(row["step_cosine"], cosine, rel_tol=1e-4, abs_tol=1e-6)
            assert math.isclose(row["previous_step_kept"], kept, rel_tol=1e-4, abs_tol=1e-6)


@pytest.mark.parametrize("precision", ["int8", "nf4", "fp16", "fakequant-nf4"])
def test_held_weights_of_real_loads_differ_from_fp32_by_their_precisions_rounding(tiny_base, precision):
    path = resolve_base(tiny_base)
    quant = QuantConfig()
    reference = held_weights(load_base(path, precision="fp32", quant=quant, device="cpu"))
    held = held_weights(load_base(path, precision=precision, quant=quant, device="cpu"))
    name = "model.layers.0.mlp.up_proj"
    (row,) = weight_error_rows(reference, held, [name])
    # fp16 rounds at 2^-11, int8 at 1/254 of a row's range, nf4 at about 1/16 of a block's.
    bounds = {"fp16": (1e-5, 1e-3), "int8": (1e-3, 2e-2), "nf4": (2e-2, 0.3), "fakequant-nf4": (2e-2, 0.3)}
    low, high = bounds[precision]
    assert low < row["relative_error"] < high
