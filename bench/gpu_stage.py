"""Benchmark: one training stage and one evaluation per precision on a GPU, for the toy and a ~1B Llama.

For each model and precision, the pipeline's own `train_stage` trains a fresh adapter on the NLU training
splits (the default config's stage-1 settings, cut to `--steps` steps) and `evaluate_checkpoint` scores the
trained checkpoint on NLU and math test splits. Prints and writes, per run: median ms per optimizer step,
training tokens per second, peak GPU memory of training and of evaluation (torch's allocator, reset before each),
evaluation seconds and scores, and the compute dtype the report states.

The models: the toy base a pipeline run built (`results/base/toy`), and a random-weight Llama of about 1B
parameters (TinyLlama's shape: 22 layers, 2048 wide, 5632 MLP, 32 heads, 4 KV heads) with the toy's tokenizer,
so the same data feeds both. Speed and memory do not depend on the weights; the 1B model's scores are chance.

    .venv/bin/python bench/gpu_stage.py                          # needs results/base/toy and results/data
    .venv/bin/python bench/gpu_stage.py --models toy --precisions fp16 nf4 --steps 50
    .venv/bin/python bench/gpu_stage.py --big-shape small        # a ~20M stand-in, to try the script on a CPU
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from train_step import save_random_llama  # bench/train_step.py, beside this script

from quantreplay.bases import resolve_base
from quantreplay.evaluate import EvalSettings, evaluate_checkpoint
from quantreplay.quantize import QuantConfig
from quantreplay.train import LoraSettings, StageSettings, train_stage

SHAPES = {
    # TinyLlama-1.1B's layers; with the toy's small vocabulary, about 0.97B parameters.
    "1b": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4
    ),
    "small": dict(
        hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2
    ),
}
NLU_TRAIN = ["boolq", "piqa", "siqa", "arc_easy", "arc_challenge", "openbookqa", "hellaswag", "winogrande"]
TESTS = ["boolq", "piqa", "winogrande", "arithmetic"]


def random_llama(out: Path, *, tokenizer_from: Path, shape: str) -> int:
    """A random-weight Llama of `shape` with the tokenizer at `tokenizer_from`, saved in fp16 at `out` as a base
    folder the pipeline loads."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = save_random_llama(out, tokenizer, SHAPES[shape], dtype=torch.float16, device=device)
    (out / "base.json").write_text(json.dumps({"kind": "toy", "source": f"random {shape}"}))
    return n


def _reset() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib() -> int | None:
    return round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None


def run_one(base: str, precision: str, *, data: Path, steps: int, examples: int, work: Path) -> dict:
    """Train `steps` steps of stage 1 on `base` in `precision`, then evaluate the result; the measurements."""
    quant = QuantConfig()
    _reset()
    train = train_stage(
        base=base,
        precision=precision,
        train_files=[str(data / t / "train.parquet") for t in NLU_TRAIN],
        previous_adapter=None,
        adapter_out=str(work / f"{precision}-adapter"),
        report_out=str(work / f"{precision}-train.json"),
        lora=LoraSettings(),
        quant=quant,
        # The default config's stage 1, cut to `steps` steps.
        stage=StageSettings(lr=2e-3, max_steps=steps, warmup_steps=min(20, steps), batch_size=8, max_seq_len=256),
        seed=0,
        threads=2,
        cell={"precision": precision, "stage": "nlu"},
        log=lambda s: None,
    ).report
    train_peak = _peak_mib()
    _reset()
    t0 = time.perf_counter()
    scores = evaluate_checkpoint(
        base=base,
        precision=precision,
        adapter=str(work / f"{precision}-adapter"),
        test_files=[str(data / t / "test.parquet") for t in TESTS],
        settings=EvalSettings(max_examples=examples, batch_size=32, max_new_tokens={"nlu": 8, "math": 48, "code": 48}),
        quant=quant,
        predictions_out=str(work / f"{precision}-predictions.parquet"),
        scores_out=str(work / f"{precision}-scores.json"),
        cell={"precision": precision},
        threads=2,
        log=lambda s: None,
    )
    return {
        "precision": precision,
        "device": train["device"],
        "compute_dtype": train["compute_dtype"],
        "parameters": train["total_parameters"],
        "steps": train["steps"],
        "median_step_ms": round(train["median_step_ms"], 2),
        "tokens_per_second": round(train["tokens_per_second"]),
        "first_loss": train["loss_curve"][0][1],
        "last_loss": train["loss_curve"][-1][1],
        "train_peak_gpu_mib": train_peak,
        "eval_seconds": round(time.perf_counter() - t0, 2),
        "eval_peak_gpu_mib": _peak_mib(),
        "scores": {task: round(s["value"], 4) for task, s in scores["tasks"].items()},
        "eval_task_seconds": {task: round(s["seconds"], 2) for task, s in scores["tasks"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toy-base", type=Path, default=Path("results/base/toy"))
    parser.add_argument("--data", type=Path, default=Path("results/data"))
    parser.add_argument("--models", nargs="+", default=["toy", "big"], choices=["toy", "big"])
    parser.add_argument("--big-shape", default="1b", choices=sorted(SHAPES))
    parser.add_argument("--precisions", nargs="+", default=["fp16", "int8", "nf4"])
    parser.add_argument("--steps", type=int, default=200, help="training steps of the toy (the big model: a tenth)")
    parser.add_argument("--examples", type=int, default=96, help="test examples per task")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu_stage.json"))
    args = parser.parse_args()

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; torch {torch.__version__}", flush=True)
    results = []
    work = Path(tempfile.mkdtemp(prefix="gpu-stage-"))
    try:
        for model in args.models:
            if model == "toy":
                base, steps = resolve_base(args.toy_base), args.steps
            else:
                t0 = time.perf_counter()
                n = random_llama(work / "big", tokenizer_from=args.toy_base, shape=args.big_shape)
                print(f"random Llama ({args.big_shape}): {n / 1e9:.3f}B parameters, built in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
                base, steps = str(work / "big"), max(5, args.steps // 10)
            for precision in args.precisions:
                try:
                    row = {"model": model, **run_one(base, precision, data=args.data, steps=steps,
                                                     examples=args.examples, work=work / model)}  # fmt: skip
                except Exception as error:  # noqa: BLE001 - one failing precision must not hide the others
                    row = {"model": model, "precision": precision, "error": f"{type(error).__name__}: {error}"}
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device, "torch": torch.__version__, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
