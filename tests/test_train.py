"""LoRA training on real quantized bases: layers, what trains, stage continuity, determinism, the nf4 trap."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from quantreplay.bases import resolve_base
from quantreplay.config import ConfigError
from quantreplay.lm import IGNORE_INDEX
from quantreplay.quantize import QuantConfig, load_base
from quantreplay.settings import SettingError, parse
from quantreplay.train import (
    LoraSettings,
    StageSettings,
    attach_adapter,
    clip_gradients,
    collate,
    length_grouped_batches,
    sequence_sum_loss,
    stage_loss,
    tokenize_example,
    train_stage,
)

QUANT = QuantConfig()


def _train(
    tiny_base,
    tiny_task_files,
    out: Path,
    *,
    precision="fp32",
    previous=None,
    files=None,
    steps=4,
    seed=0,
    lr=5e-3,
    continuation="continue",
    **stage,
):
    files = files or [tiny_task_files["boolq/train"], tiny_task_files["piqa/train"]]
    return train_stage(
        base=resolve_base(tiny_base),
        precision=precision,
        train_files=files,
        previous_adapter=previous,
        adapter_out=str(out / "adapter"),
        report_out=str(out / "train.json"),
        lora=LoraSettings(),
        quant=QUANT,
        stage=StageSettings(lr=lr, max_steps=steps, batch_size=4, warmup_steps=1, **stage),
        seed=seed,
        threads=1,
        cell={"precision": precision, "stage": "nlu"},
        continuation=continuation,
        log=lambda s: None,
    )


def test_settings_reject_bad_values_by_name():
    with pytest.raises(SettingError, match="^lr: must be positive, got -1$"):
        StageSettings(lr=-1)
    with pytest.raises(SettingError, match="schedule"):
        StageSettings(schedule="step")
    with pytest.raises(SettingError, match="^r: "):
        LoraSettings(r=0)
    with pytest.raises(SettingError, match=r"^training\.lrate: unknown key"):
        parse(StageSettings, {"lrate": 1}, "training")
    with pytest.raises(SettingError, match=r"^training\.stages\.math\.lr: must be positive, got -1$"):
        parse(StageSettings, {"lr": -1}, "training.stages.math")
    with pytest.raises(SettingError, match=r"^lora\.r: must be an integer, got 2\.5$"):
        parse(LoraSettings, {"r": 2.5}, "lora")
    assert parse(LoraSettings, {"target_modules": ["q_proj"]}, "lora").target_modules == ("q_proj",)
    assert StageSettings(batch_size=8, epochs=1).steps_for(8000) == 1000
    assert StageSettings(max_steps=7).steps_for(8000) == 7


def test_loss_only_on_target_and_eos(tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    ex = tokenize_example(tok, "Question: is it? Answer:", " yes", max_seq_len=64)
    n_target = len(tok(" yes", add_special_tokens=False)["input_ids"]) + 1
    assert ex.input_ids[0] == tok.bos_token_id and ex.input_ids[-1] == tok.eos_token_id
    assert ex.labels[-n_target:] == ex.input_ids[-n_target:]
    assert all(label == IGNORE_INDEX for label in ex.labels[:-n_target])
    long = tokenize_example(tok, "word " * 200, " yes", max_seq_len=32)
    # Over-long prompts lose their start; the target survives whole.
    assert len(long.input_ids) == 32 and long.labels[-n_target:] == ex.labels[-n_target:]
    batch = collate([ex, long], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == (2, 32) and batch["attention_mask"][0].sum() == len(ex.input_ids)


def test_a_stage_that_does_not_fit_its_data_stops_before_the_model_loads(tiny_base, tiny_task_files, tmp_path):
    from quantreplay.lm import bos_ids, load_tokenizer
    from quantreplay.train import check_stage_fits, encode_pairs, read_training_rows

    files = [tiny_task_files["boolq/train"], tiny_task_files["arithmetic/train"]]
    rows = read_training_rows(files)
    tokenizer = load_tokenizer(resolve_base(tiny_base))
    pairs = encode_pairs(tokenizer, rows["prompt"], rows["target"])
    assert len(bos_ids(tokenizer)) == 1
    lengths = sorted(1 + len(p) + len(t) for p, t in pairs)
    keys = {"max_seq_len": "training.stages.math.max_seq_len", "warmup_steps": "training.warmup_steps"}
    # Room for every example, or for all but the longest prompts' starts: it trains, counting the truncated.
    assert check_stage_fits(pairs, rows, bos=1, stage=StageSettings(max_seq_len=lengths[-1]), keys=keys) == 0
    longest_target = max(1 + len(t) + 1 for _, t in pairs)
    cap = max(longest_target, lengths[len(lengths) // 2])
    assert 0 < check_stage_fits(pairs, rows, bos=1, stage=StageSettings(max_seq_len=cap), keys=keys) < len(pairs)
    # A cap below every example (the reported max_seq_len: 8), or one that cuts a worked answer, is refused.
    for cap in (8, longest_target - 1):
        with pytest.raises(ConfigError) as info:
            check_stage_fits(pairs, rows, bos=1, stage=StageSettings(max_seq_len=cap), keys=keys)
        message = str(info.value)
        assert message.startswith(f"training.stages.math.max_seq_len: {cap} truncates ") and "\n" not in message
        assert f"the longest is {lengths[-1]} tokens (task 'arithmetic' in {files[1]})" in message
    # Warmup longer than the steps that epochs make of the data.
    with pytest.raises(
        ConfigError, match=r"^training.warmup_steps: 50 exceeds the stage's 20 steps \(1.0 epochs of 80"
    ):
        check_stage_fits(pairs, rows, bos=1, stage=StageSettings(warmup_steps=50, batch_size=4), keys=keys)
    # Through the training step: the error comes before any model loads or adapter is written.
    with pytest.raises(ConfigError, match=r"^training.max_seq_len: 8 truncates 80 of 80 examples"):
        train_stage(base=resolve_base(tiny_base), precision="fp32", train_files=files, previous_adapter=None,
                    adapter_out=str(tmp_path / "adapter"), report_out=str(tmp_path / "train.json"),
                    lora=LoraSettings(), quant=QUANT, stage=StageSettings(max_seq_len=8), seed=0, threads=1,
                    cell={"precision": "fp32", "stage": "math"}, log=lambda s: None)  # fmt: skip
    assert not (tmp_path / "adapter").exists()


def test_length_grouped_batches_cover_every_example_and_limit_padding():
    lengths = [(i * 37) % 200 + 5 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=8, steps=125, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert sum(lengths) / padded > 0.9
    assert batches == length_grouped_batches(lengths, batch_size=8, steps=125, seed=0)
    assert len(length_grouped_batches(lengths, batch_size=8, steps=300, seed=0)) == 300


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "int8", "nf4"])
def test_lora_trains_and_base_stays_frozen(tiny_base, tiny_task_files, tmp_path, precision):
    model = load_base(resolve_base(tiny_base), precision=precision, quant=QUANT, device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = _train(tiny_base, tiny_task_files, tmp_path, precision=precision)
    from safetensors.torch import load_file

    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    # peft initialises lora_B to zero: after training it must have moved.
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["trainable_parameters"] < report["total_parameters"] / 2
    assert len(report["loss_curve"]) == result.steps == 4
    # The base's own weights are untouched by training (the adapter holds every change).
    model2 = load_base(resolve_base(tiny_base), precision=precision, quant=QUANT, device="cpu")
    for k, v in model2.state_dict().items():
        if isinstance(v, torch.Tensor) and k in before:
            assert torch.equal(v, before[k]), k


def _boolq_batch(tiny_base, tiny_task_files, n: int) -> dict:
    import polars as pl
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows = pl.read_parquet(tiny_task_files["boolq/train"]).head(n)
    pairs = zip(rows["prompt"], rows["target"], strict=True)
    return collate([tokenize_example(tok, p, t, max_seq_len=128) for p, t in pairs], pad_id=tok.pad_token_id)


def _probe_loss(tiny_base, tiny_task_files, adapter: str | None, precision: str) -> float:
    """Eval-mode loss of the first 8 boolq rows with the given adapter (no dropout: deterministic)."""
    from peft import PeftModel

    batch = _boolq_batch(tiny_base, tiny_task_files, 8)
    model = load_base(resolve_base(tiny_base), precision=precision, quant=QUANT, device="cpu")
    model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.parametrize("precision", ["fp32", "nf4"])
def test_stage_two_starts_from_stage_one(tiny_base, tiny_task_files, tmp_path, precision):
    _train(tiny_base, tiny_task_files, tmp_path / "s1", precision=precision, steps=6)
    end_of_stage1 = _probe_loss(tiny_base, tiny_task_files, str(tmp_path / "s1" / "adapter"), precision)
    # Stage 2 with lr ~0 for one step leaves the adapter where stage 1 left it: its loss on the same batch
    # matches stage 1's final loss, and is far from a fresh adapter's.
    _train(
        tiny_base,
        tiny_task_files,
        tmp_path / "s2",
        precision=precision,
        previous=str(tmp_path / "s1" / "adapter"),
        files=[tiny_task_files["arithmetic/train"]],
        steps=1,
        lr=1e-12,
    )
    start_of_stage2 = _probe_loss(tiny_base, tiny_task_files, str(tmp_path / "s2" / "adapter"), precision)
    assert start_of_stage2 == pytest.approx(end_of_stage1, rel=1e-3)
    _train(tiny_base, tiny_task_files, tmp_path / "fresh", precision=precision, steps=1, lr=1e-12)
    fresh = _probe_loss(tiny_base, tiny_task_files, str(tmp_path / "fresh" / "adapter"), precision)
    assert abs(fresh - end_of_stage1) > 0.05


@pytest.mark.parametrize("precision", ["fp32", "int8", "nf4"])
def test_same_cell_twice_gives_the_same_adapter_bytes(tiny_base, tiny_task_files, tmp_path, precision):
    digests = []
    for run in ("a", "b"):
        _train(tiny_base, tiny_task_files, tmp_path / run, precision=precision)
        digests.append(
            hashlib.sha256((tmp_path / run / "adapter" / "adapter_model.safetensors").read_bytes()).digest()
        )
    assert digests[0] == digests[1]
    _train(tiny_base, tiny_task_files, tmp_path / "c", precision=precision, seed=1)
    assert (
        hashlib.sha256((tmp_path / "c" / "adapter" / "adapter_model.safetensors").read_bytes()).digest() != digests[0]
    )


def _lora_grads(tiny_base, tiny_task_files, *, eval_forward_first: bool, keep_fix: bool) -> dict:
    import bitsandbytes as bnb

    batch = _boolq_batch(tiny_base, tiny_task_files, 4)
    model = load_base(resolve_base(tiny_base), precision="nf4", quant=QUANT, device="cpu")
    if not keep_fix:
        for m in model.modules():
            if isinstance(m, bnb.nn.Linear4bit):
                m.support_avx512bf16_for_cpu = True
    if eval_forward_first:
        # What a baseline evaluation or `generate` does before training.
        model.eval()
        with torch.no_grad():
            model(**batch)
    model = attach_adapter(
        model, lora=LoraSettings(dropout=0.0), previous_adapter=None, seed=0, gradient_checkpointing=False
    )
    model.train()
    model(**batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_nf4_training_after_an_eval_forward_computes_the_right_gradients(tiny_base, tiny_task_files):
    reference = _lora_grads(tiny_base, tiny_task_files, eval_forward_first=False, keep_fix=True)
    after_eval = _lora_grads(tiny_base, tiny_task_files, eval_forward_first=True, keep_fix=True)
    assert reference.keys() == after_eval.keys()
    for name in reference:
        torch.testing.assert_close(after_eval[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)


def test_probe_losses_of_earlier_tasks_are_in_train_json_at_the_configured_interval(tiny_base, tiny_task_files,
                                                                                     tmp_path):  # fmt: skip
    from quantreplay import lm
    from quantreplay.train import collate, probe_sets

    stage = StageSettings(lr=5e-3, max_steps=10, batch_size=4, warmup_steps=1, probe_points=4, probe_examples=3)
    probe_files = [tiny_task_files["boolq/test"], tiny_task_files["piqa/test"]]
    train_stage(
        base=resolve_base(tiny_base), precision="fp32", train_files=[tiny_task_files["arithmetic/train"]],
        previous_adapter=None, adapter_out=str(tmp_path / "adapter"), report_out=str(tmp_path / "train.json"),
        lora=LoraSettings(), quant=QUANT, stage=stage, seed=0, threads=1, cell={"precision": "fp32", "stage": "math"},
        probe_files=probe_files, log=lambda s: None,
    )  # fmt: skip
    report = json.loads((tmp_path / "train.json").read_text())
    # ceil(10 / 4) = 3: before the first step, after steps 3, 6 and 9, and after the last.
    assert report["probe_every"] == 3 and report["probe_examples"] == 3
    assert sorted({step for step, _, _ in report["probe_curve"]}) == [0, 3, 6, 9, 10]
    assert {task for _, task, _ in report["probe_curve"]} == {"boolq", "piqa"}
    # The step-0 probe is the untrained adapter's loss: the base's own loss on the same examples.
    tokenizer = lm.load_tokenizer(resolve_base(tiny_base))
    probes = probe_sets(tokenizer, probe_files, examples=3, max_seq_len=stage.max_seq_len)
    base = load_base(resolve_base(tiny_base), precision="fp32", quant=QUANT, device="cpu").eval()
    with torch.no_grad():
        expected = base(**collate(probes["boolq"], pad_id=lm.pad_id(tokenizer))).loss.item()
    first = next(loss for step, task, loss in report["probe_curve"] if step == 0 and task == "boolq")
    assert first == pytest.approx(expected, abs=1e-5)
    # Training on math moves the NLU probes.
    last = next(loss for step, task, loss in report["probe_curve"] if step == 10 and task == "boolq")
    assert last != first


def test_summed_loss_is_each_sequence_mean_times_its_target_length(tiny_base, tiny_task_files):
    import polars as pl
    from transformers import AutoTokenizer

    # A hand batch: two boolq rows (a one-word target) and two arithmetic rows (a worked answer), right-padded.
    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows = pl.concat([pl.read_parquet(tiny_task_files[f"{t}/train"]).head(2) for t in ("boolq", "arithmetic")])
    examples = [tokenize_example(tok, p, t, max_seq_len=128) for p, t in zip(rows["prompt"], rows["target"],
                                                                              strict=True)]  # fmt: skip
    lengths = [sum(label != IGNORE_INDEX for label in e.labels) for e in examples]
    assert len(set(lengths)) > 1
    model = load_base(resolve_base(tiny_base), precision="fp32", quant=QUANT, device="cpu")
    model.eval()
    with torch.no_grad():
        batch = collate(examples, pad_id=tok.pad_token_id)
        # token_mean is the model's own loss; each sequence's mean is its own forward, unpadded.
        assert stage_loss(model, batch, reduction="token_mean").item() == model(**batch).loss.item()
        means = [model(**collate([e], pad_id=tok.pad_token_id)).loss.item() for e in examples]
        summed = stage_loss(model, batch, reduction="sequence_sum").item()
    expected = sum(m * n for m, n in zip(means, lengths, strict=True)) / len(examples)
    assert summed == pytest.approx(expected, rel=1e-5)
    # On hand logits: a uniform prediction over 5 tokens costs log 5 per target token.
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 3, IGNORE_INDEX]])
    uniform = sequence_sum_loss(torch.zeros(2, 4, 5), labels).item()
    assert uniform == pytest.approx((2 + 1) * math.log(5) / 2)


def test_per_tensor_clipping_clips_each_tensor_to_the_norm_and_global_scales_all():
    def grads(*values):
        params = [torch.nn.Parameter(torch.zeros(2)) for _ in values]
        for p, v in zip(params, values, strict=True):
            p.grad = torch.tensor(v)
        return params

    # Norms 5 (3, 4), 0.5 and 1: global norm sqrt(25 + 0.25 + 1) = 5.12.
    hand = ([3.0, 4.0], [0.3, 0.4], [0.6, 0.8])
    per_tensor = grads(*hand)
    clip_gradients(per_tensor, max_norm=1.0, scope="per_tensor")
    norms = [p.grad.norm().item() for p in per_tensor]
    assert norms == pytest.approx([1.0, 0.5, 1.0], rel=1e-5)
    assert per_tensor[0].grad.tolist() == pytest.approx([0.6, 0.8], rel=1e-5)
    together = grads(*hand)
    clip_gradients(together, max_norm=1.0, scope="global")
    scale = 1 / math.sqrt(25 + 0.25 + 1)
    assert [p.grad.norm().item() for p in together] == pytest.approx([5 * scale, 0.5 * scale, scale], rel=1e-4)


def test_the_authors_loss_and_clipping_train_and_change_the_adapter(tiny_base, tiny_task_files, tmp_path):
    clean = _train(tiny_base, tiny_task_files, tmp_path / "clean", steps=2)
    authors = _train(tiny_base, tiny_task_files, tmp_path / "authors", steps=2, loss_reduction="sequence_sum",
                     grad_clip_scope="per_tensor")  # fmt: skip
    report = json.loads((tmp_path / "authors" / "train.json").read_text())
    assert report["stage"]["loss_reduction"] == "sequence_sum" and report["stage"]["grad_clip_scope"] == "per_tensor"
    # The same first batch: the summed loss is the mean times the (mean) target length, larger than the mean.
    assert authors.loss_curve[0][1] > clean.loss_curve[0][1]
    weights = [(tmp_path / d / "adapter" / "adapter_model.safetensors").read_bytes() for d in ("clean", "authors")]
    assert weights[0] != weights[1]


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _merge_stage_model(base: str, precision: str, previous: str):
    """A merge stage's model before its first step: `previous` merged into the base, a fresh adapter on top."""
    model = load_base(base, precision=precision, quant=QUANT, device="cpu")
    return attach_adapter(
        model, lora=LoraSettings(), previous_adapter=previous, seed=0, gradient_checkpointing=False,
        continuation="merge",
    )  # fmt: skip


# What merging means for each base: the previous update added to the base's weights as they are held, in fp32. For
# nf4 those are the NF4 values (fakequant-nf4 holds them as fp32 numbers), not re-quantized after the addition.
MERGED_REFERENCE = {"fp32": "fp32", "nf4": "fakequant-nf4"}


@pytest.mark.parametrize("precision", ["fp32", "nf4"])
def test_merging_reproduces_the_merged_model_and_the_fresh_adapter_starts_at_zero(
    tiny_base, tiny_task_files, tmp_path, precision
):
    from peft import PeftModel

    _train(tiny_base, tiny_task_files, tmp_path / "s1", precision=precision, steps=4)
    stage1 = str(tmp_path / "s1" / "adapter")
    batch = _boolq_batch(tiny_base, tiny_task_files, 4)
    base = resolve_base(tiny_base)
    reference = load_base(base, precision=MERGED_REFERENCE[precision], quant=QUANT, device="cpu")
    merged = _logits(PeftModel.from_pretrained(reference, stage1).merge_and_unload(), batch)
    model = _merge_stage_model(base, precision, stage1)
    assert torch.allclose(_logits(model, batch), merged, atol=1e-4)
    # ... far closer than the stage-1 update moved them, or than the fp32 base lies from the nf4 one.
    unmerged = _logits(load_base(base, precision=MERGED_REFERENCE[precision], quant=QUANT, device="cpu"), batch)
    assert (merged - unmerged).abs().max() > 1e-2
    if precision == "nf4":
        assert (merged - _logits(PeftModel.from_pretrained(load_base(base, precision="fp32", quant=QUANT,
                device="cpu"), stage1).merge_and_unload(), batch)).abs().max() > 1e-2  # fmt: skip
    # The fresh adapter starts at zero update (B = 0) and is all that trains; the merged update is frozen.
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)
    assert all(not p.any() for n, p in model.named_parameters() if "lora_B.default" in n)
    # The base's own weights are as loaded: an nf4 base stays quantized, its codes untouched.
    fresh = load_base(base, precision=precision, quant=QUANT, device="cpu")
    name = "model.layers.0.self_attn.q_proj"
    held = model.get_submodule(f"base_model.model.{name}.base_layer").weight
    assert (
        torch.equal(held.data, fresh.get_submodule(name).weight.data)
        and held.dtype == fresh.get_submodule(name).weight.dtype
    )


@pytest.mark.parametrize("precision", ["fp32", "nf4"])
def test_a_merge_stage_saves_one_adapter_of_the_whole_update(tiny_base, tiny_task_files, tmp_path, precision):
    from peft import PeftModel

    from quantreplay.train import save_merged_adapter

    _train(tiny_base, tiny_task_files, tmp_path / "s1", precision=precision, steps=4)
    stage1 = str(tmp_path / "s1" / "adapter")
    base = resolve_base(tiny_base)
    batch = _boolq_batch(tiny_base, tiny_task_files, 4)
    model = _merge_stage_model(base, precision, stage1)
    # A trained fresh adapter, in effect: random B.
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B.default" in n:
                p.normal_(std=0.02)
    expected = _logits(model, batch)
    save_merged_adapter(model, str(tmp_path / "merged"))
    saved = PeftModel.from_pretrained(load_base(base, precision=precision, quant=QUANT, device="cpu"),
                                      str(tmp_path / "merged"))  # fmt: skip
    assert saved.peft_config["default"].r == 16 and saved.peft_config["default"].lora_alpha == 16
    assert torch.allclose(_logits(saved, batch), expected, atol=1e-4)
    # Through train_stage: the stage trains the fresh adapter and saves the sum; train.json says how it continued.
    merge = _train(tiny_base, tiny_task_files, tmp_path / "s2", precision=precision, previous=stage1, steps=2,
                   continuation="merge")  # fmt: skip
    assert merge.report["continuation"] == "merge"
    again = PeftModel.from_pretrained(load_base(base, precision=precision, quant=QUANT, device="cpu"),
                                      str(tmp_path / "s2" / "adapter"))  # fmt: skip
    assert again.peft_config["default"].r == 16
    # A third stage merges the first two stages' sum in turn: r per stage so far.
    _train(tiny_base, tiny_task_files, tmp_path / "s3", precision=precision, previous=str(tmp_path / "s2" / "adapter"),
           steps=1, continuation="merge")  # fmt: skip
    assert json.loads((tmp_path / "s3" / "adapter" / "adapter_config.json").read_text())["r"] == 24
    cont = _train(tiny_base, tiny_task_files, tmp_path / "c2", precision=precision, previous=stage1, steps=2)
    assert cont.report["continuation"] == "continue"
    assert not torch.allclose(
        _logits(again, batch),
        _logits(
            PeftModel.from_pretrained(
                load_base(base, precision=precision, quant=QUANT, device="cpu"), str(tmp_path / "c2" / "adapter")
            ),
            batch,
        ),
    )
