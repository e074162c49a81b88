"""Benchmark: examples per second of multiple-choice scoring by log-likelihood against generation-based scoring.

Both score the same multiple-choice test split with the same checkpoint: `loglik` runs one batched forward
over every (prompt, choice) pair; `generate` decodes greedily and extracts the choice (the paper's way).
Needs a built pipeline (the default: `make run`, or at least `snakemake --cores 2 results/base/toy`).

    .venv/bin/python bench/eval_throughput.py
    .venv/bin/python bench/eval_throughput.py --adapter results/train/toy/nf4/seed0/nlu/adapter --precision nf4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl
import torch

from quantreplay.bases import resolve_base
from quantreplay.evaluate import EvalSettings, score_multiple_choice, subsample
from quantreplay.quantize import QuantConfig, load_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="results/base/toy")
    parser.add_argument("--adapter", default=None, help="a PEFT adapter folder (default: the untrained base)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument(
        "--tests", nargs="+", default=["results/data/arc_easy/test.parquet", "results/data/boolq/test.parquet"]
    )
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/eval_throughput.json")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    base = resolve_base(args.base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = load_base(base, precision=args.precision, quant=QuantConfig(), device="cpu")
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    model.eval()
    rows = []
    for path in args.tests:
        frame = subsample(pl.read_parquet(path), max_examples=args.examples, seed=0)
        for mode in ("loglik", "generate"):
            settings = EvalSettings(batch_size=args.batch, mc_mode=mode)
            started = time.perf_counter()
            scored = score_multiple_choice(model, tokenizer, frame, settings, "cpu")
            seconds = time.perf_counter() - started
            row = {
                "task": frame["task"][0],
                "mode": mode,
                "examples": frame.height,
                "seconds": seconds,
                "examples_per_s": frame.height / seconds,
                "accuracy": scored["correct"].mean(),
            }
            rows.append(row)
            print(
                f"{row['task']:>14} {mode:>8}: {row['examples_per_s']:8.1f} examples/s  "
                f"accuracy {row['accuracy']:.3f}",
                flush=True,
            )
    for task in dict.fromkeys(r["task"] for r in rows):
        loglik, generate = (
            next(r for r in rows if r["task"] == task and r["mode"] == m) for m in ("loglik", "generate")
        )
        ratio = loglik["examples_per_s"] / generate["examples_per_s"]
        print(f"{task:>14}: log-likelihood scoring runs at {ratio:.2f}x the examples/s of generation")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
