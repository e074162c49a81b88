"""The control arms (quantreplay.controls): each keeps exactly the part of int8's or nf4's change to the weights it
names, on the layers those precisions quantize, and runs through the pipeline like any precision."""

import json
import math

import polars as pl
import pytest
import torch
import yaml

from conftest import ROOT, SNAKEMAKE, expected_job_counts, job_counts, micro_config, run_snakemake
from quantreplay.bases import resolve_base
from quantreplay.controls import CONTROL_ARMS, NF4_BLOCK, blocks, dequantized
from quantreplay.quantize import QuantConfig, load_base
from quantreplay.telemetry import held_weights

QUANT = QuantConfig()
REAL = {"int8": "Linear8bitLt", "nf4": "Linear4bit"}


def _linears(model) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().clone() for name, m in model.named_modules() if type(m).__name__ == "Linear"}


def _real_dequantized(path: str, scheme: str) -> dict[str, torch.Tensor]:
    """What the real bitsandbytes layers of `scheme` multiply by, per layer name."""
    model = load_base(path, precision=scheme, quant=QUANT, device="cpu")
    real = {name for name, module in model.named_modules() if type(module).__name__ == REAL[scheme]}
    return {name: weights for name, weights in held_weights(model).items() if name in real}


@pytest.fixture(scope="module")
def bases(tiny_base):
    path = resolve_base(tiny_base)
    fp32 = load_base(path, precision="fp32", quant=QUANT, device="cpu")
    return path, _linears(fp32), fp32.state_dict()


@pytest.mark.parametrize("scheme", ["int8", "nf4"])
def test_fakequant_holds_the_real_layers_dequantized_weights_exactly(bases, scheme):
    path, _, original = bases
    real = _real_dequantized(path, scheme)
    arm = load_base(path, precision=f"fakequant-{scheme}", quant=QUANT, device="cpu")
    held = _linears(arm)
    assert real and set(real) < set(held)
    for name, weights in real.items():
        assert held[name].dtype == torch.float32 and torch.equal(held[name], weights), name
    # Everything the real arm leaves unquantized (embeddings, norms, the tied head) is the fp32 base's.
    state = arm.state_dict()
    untouched = [k for k in original if not any(k.startswith(f"{name}.") for name in real)]
    assert untouched and all(torch.equal(state[k], original[k]) for k in untouched)


@pytest.mark.parametrize("scheme", ["int8", "nf4"])
def test_noise_matches_the_quantization_errors_rms_in_every_block_and_repeats_with_its_seed(bases, scheme):
    path, w32, _ = bases
    real = _real_dequantized(path, scheme)
    first = _linears(load_base(path, precision=f"noise-{scheme}", quant=QUANT, device="cpu"))
    again = _linears(load_base(path, precision=f"noise-{scheme}", quant=QUANT, device="cpu"))
    other = _linears(load_base(path, precision=f"noise-{scheme}", quant=QuantConfig(noise_seed=7), device="cpu"))
    for name, quantized in real.items():
        noise, error = first[name] - w32[name], quantized - w32[name]
        for got, want in zip(blocks(noise, scheme), blocks(error, scheme), strict=True):
            rms_got, rms_want = got.pow(2).mean(1).sqrt(), want.pow(2).mean(1).sqrt()
            assert torch.allclose(rms_got, rms_want, rtol=0.02, atol=1e-12), name
        # Matched in size, not the error itself.
        assert not torch.allclose(noise, error, atol=1e-6)
        assert torch.equal(first[name], again[name]) and not torch.equal(first[name], other[name])


def test_permuted_error_is_the_real_error_shuffled_within_each_block(bases):
    path, w32, _ = bases
    real = _real_dequantized(path, "nf4")
    arm = _linears(load_base(path, precision="permuted-nf4", quant=QUANT, device="cpu"))
    moved = 0
    for name, quantized in real.items():
        shuffled, error = arm[name] - w32[name], quantized - w32[name]
        # W + shuffled error, rounded in fp32: compare the errors to within that rounding.
        for got, want in zip(blocks(shuffled, "nf4"), blocks(error, "nf4"), strict=True):
            assert torch.allclose(got.sort(1).values, want.sort(1).values, atol=1e-6), name
        moved += int((shuffled - error).abs().max() > 1e-4)
    assert moved == len(real)
    assert all(w.numel() % NF4_BLOCK == 0 for w in w32.values())


def test_stepnoise_draws_anew_in_training_and_vanishes_in_eval(bases):
    path, w32, _ = bases
    model = load_base(path, precision="stepnoise-nf4", quant=QUANT, device="cpu")
    layer = model.model.layers[0].mlp.up_proj
    name = "model.layers.0.mlp.up_proj"
    model.train()
    draws = [layer.weight.detach().clone() for _ in range(2)]
    assert not torch.equal(draws[0], draws[1])
    error = dequantized(w32[name], "nf4", double_quant=True, device="cpu") - w32[name]
    # Each draw is a Gaussian of the block's error RMS: its mean square over the layer is the error's, roughly.
    for draw in draws:
        ratio = (draw - w32[name]).pow(2).mean() / error.pow(2).mean()
        assert 0.8 < float(ratio) < 1.2
    model.eval()
    assert torch.equal(layer.weight, w32[name])


def test_a_stepnoise_cell_trains_through_the_training_job_and_records_its_arm(tiny_base, tiny_task_files, tmp_path):
    from quantreplay.train import LoraSettings, StageSettings, train_stage

    stage = StageSettings(lr=2e-3, max_steps=2, warmup_steps=0, batch_size=4, max_seq_len=128)
    result = train_stage(
        base=resolve_base(tiny_base),
        precision="stepnoise-nf4",
        train_files=[tiny_task_files["boolq/train"]],
        previous_adapter=None,
        adapter_out=str(tmp_path / "adapter"),
        report_out=str(tmp_path / "train.json"),
        lora=LoraSettings(),
        quant=QUANT,
        stage=stage,
        seed=0,
        threads=1,
        cell={"stage": "nlu"},
        log=lambda s: None,
    )
    report = json.loads((tmp_path / "train.json").read_text())
    assert result.steps == 2 and report["compute_dtype"] == "fp32"
    arm = report["control_arm"]
    assert arm["arm"] == "stepnoise-nf4" and arm["drawn_from"] == "the training seed"
    assert report["base_layers"] == {"Linear": 15}


def test_every_arm_runs_through_the_pipeline_and_records_itself(tmp_path):
    config = micro_config()
    config["precisions"] = ["fp16", "nf4", *CONTROL_ARMS]
    config["buffers"] = [0]
    proc = run_snakemake(config, tmp_path)
    assert proc.returncode == 0, proc.stderr[-6000:]
    for arm, spec in CONTROL_ARMS.items():
        scores = json.loads((tmp_path / f"results/eval/toy/{arm}/seed0/buf0/math/scores.json").read_text())
        assert scores["control_arm"]["arm"] == arm and scores["control_arm"]["scheme"] == spec.scheme
        assert scores["compute_dtype"] == "fp32"
    comparison = (tmp_path / "results/tables/comparison.csv").read_text()
    assert all(f",{arm}," in comparison for arm in CONTROL_ARMS)
    # Each arm's weight error is its scheme's: the same size as the real arm's (exactly, for fakequant).
    errors = (
        pl.read_csv(tmp_path / "results/tables/quant_error.csv")
        .group_by("precision")
        .agg(pl.col("relative_error").mean())
    )
    error = dict(errors.iter_rows())
    assert error["fp16"] < 1e-3 and error["fakequant-nf4"] > 10 * error["fakequant-int8"] > 10 * error["fp16"]
    for arm, spec in CONTROL_ARMS.items():
        assert error[arm] > error["fp16"]
        if spec.kind in ("noise", "permuted", "fakequant"):
            assert math.isclose(error[arm], error[f"fakequant-{spec.scheme}"], rel_tol=0.02), arm
    assert math.isclose(error["nf4"], error["fakequant-nf4"], rel_tol=1e-6)
    # The mechanism table: every arm's two metrics, nf4's arms compared with nf4; the reading under it.
    mechanism = pl.read_csv(tmp_path / "results/tables/mechanism.csv")
    assert set(mechanism["precision"]) == {"fp16", "nf4", *CONTROL_ARMS} and mechanism.height == 2 * 8
    nf4_arms = mechanism.filter(pl.col("precision").str.ends_with("-nf4"))
    assert nf4_arms["outcome"].null_count() == 0 and nf4_arms["minus_scheme"].null_count() == 0
    text = (tmp_path / "results/tables/mechanism.md").read_text()
    assert "the grid has no int8 to compare them with" in text and "nf4 -" in text
    for figure in ("mechanism", "quant_error", "adapter_updates", "forgetting_in_stage"):
        assert (tmp_path / f"results/plots/{figure}.png").stat().st_size > 10_000, figure
    # Forgetting inside the stage: the probe losses of every NLU task, before the first step and after each.
    report = json.loads((tmp_path / "results/train/toy/stepnoise-nf4/seed0/buf0/math/train.json").read_text())
    assert sorted({step for step, _, _ in report["probe_curve"]}) == [0, 1, 2, 3]
    assert len({task for _, task, _ in report["probe_curve"]}) == 8
    telemetry = pl.read_csv(tmp_path / "results/tables/adapter_telemetry.csv")
    assert telemetry.filter(pl.col("layer") == "total").height == 8 * 2


def test_the_mechanism_study_overlays_the_default_tier_and_dry_runs(tmp_path, default_config):
    import subprocess

    with open(ROOT / "config" / "mechanism.yaml") as fh:
        overlay = yaml.safe_load(fh)
    merged = {**default_config, **overlay}
    assert set(CONTROL_ARMS) < set(merged["precisions"]) and {"fp16", "int8", "nf4"} < set(merged["precisions"])
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile",
         str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "mechanism.yaml")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == expected_job_counts(merged)
