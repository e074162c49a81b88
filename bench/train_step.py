"""Benchmark: one LoRA training step per precision, against the machine's floor and a bare PyTorch + PEFT loop.

The floor is the step's matmul FLOPs at the machine's fp32 matmul speed at the model's own shapes, measured in the
same run on the same threads: a step can only be faster than it by skipping work. Each precision's step time is
printed as the floor's fraction of it ("of floor": 1.0 would be all matmuls at peak and nothing else), beside
the plainest transformers + PEFT loop on the same model. The CPU's vector capability (AVX2, AVX512) is printed
first: step times mean little without it.

For the default toy architecture (about 2M parameters) and a ~27M-parameter variant, with random weights
(speed does not depend on them), the pipeline's `train_stage` runs `--steps` steps on examples of one fixed
length (so every batch is batch x seq tokens), and a bare loop (`from_pretrained` with the same
quantization config, `get_peft_model`, AdamW, forward, backward, step) runs the same number of steps on a
batch of the same shape. Prints median ms per step, tokens/s and the ratio pipeline / bare, and writes them
as JSON.

    .venv/bin/python bench/train_step.py                 # both sizes, all five precisions
    .venv/bin/python bench/train_step.py --sizes default --precisions fp16 nf4 --steps 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from quantreplay.bases.toy import train_tokenizer
from quantreplay.data.rows import to_frame
from quantreplay.io import write_parquet
from quantreplay.quantize import QuantConfig
from quantreplay.train import LoraSettings, StageSettings, train_stage

SIZES = {
    # The default config's toy model.
    "default": dict(
        hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2
    ),
    # About 27M parameters: a LoRA step (batch 8 x 128, 2 threads) took 381-631 ms across precisions on CPU.
    "27M": dict(
        hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4
    ),
}
VOCAB = 2048


def make_base(out: Path, size: str) -> int:
    """A random-weight Llama of `size` with a real tokenizer, saved at `out`; returns its parameter count."""
    tokenizer = train_tokenizer([f"word{i} {i * 7} x" for i in range(4000)], vocab_size=VOCAB)
    return save_random_llama(out, tokenizer, SIZES[size])


def save_random_llama(out: Path, tokenizer, shape: dict, *, dtype=torch.float32, device: str = "cpu") -> int:
    """A Llama of `shape` (LlamaConfig's size keys) with random weights (seed 0) and `tokenizer`'s vocabulary and
    special tokens, built on `device` and saved at `out` in `dtype` with the tokenizer; returns its parameter
    count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def make_data(out: Path, base: Path, *, seq: int, n: int) -> Path:
    """`n` training rows that tokenize to exactly `seq` tokens (bos + prompt + target + eos)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    if len(tok(" x", add_special_tokens=False)["input_ids"]) != 1:
        raise RuntimeError("the benchmark tokenizer must encode ' x' as one token")
    rows = [
        {"id": f"b-{i}", "task": "bench", "family": "nlu", "prompt": " x" * (seq - 4), "target": " x x"}
        for i in range(n)
    ]
    path = out / "bench.parquet"
    write_parquet(to_frame(rows, task="bench", family="nlu", split="train"), path)
    return path


def step_matmuls(config, *, batch: int, seq: int, rank: int) -> list[tuple[int, int, int, int]]:
    """The matmuls of one LoRA step on a Llama `config` as (count, m, k, n) for an m x k @ k x n product.

    Frozen projections: the forward product and, in backward, the gradient for their input (no weight gradient).
    LoRA's A and B (rank `rank`): forward, input gradient and weight gradient. Attention: scores and the
    weighted sum, forward and both backward products. The tied output head: forward and input gradient.
    """
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = h // config.num_attention_heads * config.num_key_value_heads
    tokens, heads, width = batch * seq, config.num_attention_heads, h // config.num_attention_heads
    projections = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]
    out = []
    for k, n in projections:
        out += [(2 * layers, tokens, k, n)]  # forward and input gradient (same FLOPs)
        out += [(3 * layers, tokens, k, rank), (3 * layers, tokens, rank, n)]  # LoRA A and B
    # Attention per head: S x d @ d x S scores and S x S @ S x d output, each with two backward products.
    out += [(3 * layers * batch * heads, seq, width, seq), (3 * layers * batch * heads, seq, seq, width)]
    out += [(2, tokens, h, config.vocab_size)]
    return out


def fp32_floor(config, *, batch: int, seq: int, rank: int, threads: int, repeats: int = 5) -> dict:
    """The step's FLOPs and the seconds its matmuls take in fp32 at full speed, shape by shape, on `threads`."""
    torch.set_num_threads(threads)
    flops = seconds = 0.0
    for count, m, k, n in step_matmuls(config, batch=batch, seq=seq, rank=rank):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            runs.append(time.perf_counter() - t0)
        flops += count * 2 * m * k * n
        seconds += count * min(runs)
    return {"step_gflop": flops / 1e9, "floor_seconds": seconds, "peak_gflops": flops / seconds / 1e9}


def bare_steps(
    base: Path, precision: str, *, batch: int, seq: int, steps: int, threads: int, dropout: float
) -> list[float]:
    """Seconds per step of the plainest transformers + PEFT loop on the same model, quantization and batch shape
    (none of quantreplay's code: from_pretrained, get_peft_model, AdamW, forward, backward, step)."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.set_num_threads(threads)
    quantization = {
        "int8": BitsAndBytesConfig(load_in_8bit=True),
        "nf4": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            # The pipeline's default CPU policy: NF4 codes, fp32 matmuls.
            bnb_4bit_compute_dtype=torch.float32,
        ),
    }.get(precision)
    # fp16 and bf16 as the pipeline runs them on a CPU by default: rounded weights multiplied in fp32.
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, quantization_config=quantization)
    if precision in ("fp16", "bf16"):
        model = model.float()
    if quantization is not None:
        # The one fix no CPU run can skip (see quantreplay.quantize.disable_cpu_inference_repack).
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(
        model,
        LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=dropout,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(4, model.config.vocab_size, (batch, seq))
    model.train()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16", "int8", "nf4"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout (the default config's)")
    parser.add_argument("--out", default="bench/results/train_step.json")
    args = parser.parse_args()

    from transformers import AutoConfig

    from quantreplay.quantize import cpu_capability

    print(f"CPU capability: {cpu_capability()}; {args.threads} threads; batch {args.batch} x {args.seq} tokens")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            base = Path(tmp) / size
            n_params = make_base(base, size)
            floor = fp32_floor(AutoConfig.from_pretrained(base), batch=args.batch, seq=args.seq, rank=8,
                               threads=args.threads)  # fmt: skip
            print(f"{size}: {floor['step_gflop']:.1f} GFLOP per step, fp32 matmul at its shapes "
                  f"{floor['peak_gflops']:.0f} GFLOP/s: floor {1000 * floor['floor_seconds']:.1f} ms")  # fmt: skip
            data = make_data(Path(tmp), base, seq=args.seq, n=args.batch * args.steps)
            for precision in args.precisions:
                out = Path(tmp) / f"{size}-{precision}"
                report = train_stage(
                    base=str(base), precision=precision, train_files=[str(data)], previous_adapter=None,
                    adapter_out=str(out / "adapter"), report_out=str(out.with_suffix(".json")),
                    lora=LoraSettings(dropout=args.dropout),
                    quant=QuantConfig(), stage=StageSettings(lr=1e-4, max_steps=args.steps, batch_size=args.batch,
                                                             max_seq_len=args.seq),
                    seed=0, threads=args.threads, cell={"stage": "bench", "precision": precision}, log=lambda s: None,
                ).report  # fmt: skip
                bare = statistics.median(
                    bare_steps(
                        base,
                        precision,
                        batch=args.batch,
                        seq=args.seq,
                        steps=args.steps,
                        threads=args.threads,
                        dropout=args.dropout,
                    )[1:]
                )
                ours = report["median_step_ms"] / 1000
                row = {
                    "size": size,
                    "parameters": n_params,
                    "precision": precision,
                    "compute_dtype": report["compute_dtype"],
                    "pipeline_ms": 1000 * ours,
                    "bare_ms": 1000 * bare,
                    "ratio": ours / bare,
                    "tokens_per_s": args.batch * args.seq / ours,
                    "base_weight_bytes": report["base_weight_bytes"],
                    "floor_ms": 1000 * floor["floor_seconds"],
                    "of_floor": floor["floor_seconds"] / ours,
                    "cpu_capability": report["cpu_capability"],
                }
                results.append(row)
                print(
                    f"{size:>7} {n_params / 1e6:5.1f}M {precision:>5} ({row['compute_dtype']:>20}): pipeline "
                    f"{row['pipeline_ms']:7.1f} ms ({row['of_floor']:4.0%} of floor)  bare {row['bare_ms']:7.1f} ms  "
                    f"ratio {row['ratio']:.2f}  "
                    f"{row['tokens_per_s']:8.0f} tok/s  base {row['base_weight_bytes'] / 2**20:6.1f} MiB",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
