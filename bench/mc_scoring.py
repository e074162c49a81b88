"""Benchmark: multiple-choice log-likelihood scoring that reads each prompt once, against a full forward of every
(prompt, choice) pair with the head and log-softmax over every position (the pipeline's method before).

Both score the same test splits with the same checkpoint and must agree (the largest difference is printed).
Needs a built base and task splits, e.g. the default tier's (`snakemake --cores 2 results/base/toy` and its data)
or the real tier's (`--base runs/smollm2/results/base/smollm2 --data runs/smollm2/results/data`).

    .venv/bin/python bench/mc_scoring.py
    .venv/bin/python bench/mc_scoring.py --base runs/smollm2/results/base/smollm2 --data runs/smollm2/results/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl
import torch

from quantreplay import lm
from quantreplay.bases import resolve_base
from quantreplay.evaluate import subsample
from quantreplay.loglik import choice_loglikelihoods
from quantreplay.quantize import QuantConfig, cpu_capability

NLU = ("boolq", "piqa", "siqa", "arc_challenge", "arc_easy", "openbookqa", "hellaswag", "winogrande")


def every_pair_in_full(model, tokenizer, requests, *, batch_size: int) -> list[float]:
    """The baseline: prompt + choice as one sequence per request, batched, log-softmax over the whole vocabulary at
    every position."""
    encoded = [(lm.bos_ids(tokenizer) + lm.encode(tokenizer, c), lm.encode(tokenizer, x)) for c, x in requests]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
    out = [0.0] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = lm.pad_batch([encoded[i][0] + encoded[i][1] for i in idx], pad=lm.pad_id(tokenizer))
        with torch.no_grad():
            logprobs = torch.log_softmax(model(**batch).logits.float(), dim=-1)
        for row, i in enumerate(idx):
            ctx, cont = encoded[i]
            positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
            out[i] = logprobs[row, positions, torch.tensor(cont)].sum().item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="results/base/toy")
    parser.add_argument("--data", default="results/data", help="folder of {task}/test.parquet")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--examples", type=int, default=200, help="per task (seeded subsample)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=list(NLU), choices=NLU)
    parser.add_argument("--out", default="bench/results/mc_scoring.json")
    args = parser.parse_args()

    device = lm.job_device(args.threads)
    tokenizer, model = lm.load_checkpoint(resolve_base(args.base), precision=args.precision, quant=QuantConfig(),
                                          device=device)  # fmt: skip
    model.eval()
    print(f"CPU capability {cpu_capability()}, {args.threads} thread(s), {args.base} in {args.precision}")
    rows = []
    for task in args.tasks:
        path = Path(args.data) / task / "test.parquet"
        if not path.is_file():
            continue
        frame = subsample(pl.read_parquet(path), max_examples=args.examples, seed=0)
        requests = [(p, c) for p, cs in zip(frame["prompt"], frame["choices"], strict=True) for c in cs]
        times = {}
        for name, method in (("full", every_pair_in_full), ("shared", choice_loglikelihoods)):
            started = time.perf_counter()
            kwargs = {"batch_size": args.batch} | ({"device": device} if method is choice_loglikelihoods else {})
            values = method(model, tokenizer, requests, **kwargs)
            times[name] = (time.perf_counter() - started, values)
        diff = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(times["full"][1], times["shared"][1], strict=True))
        row = {"task": task, "examples": frame.height, "requests": len(requests), "full_s": times["full"][0],
               "shared_s": times["shared"][0], "speedup": times["full"][0] / times["shared"][0],
               "max_relative_difference": diff}  # fmt: skip
        rows.append(row)
        print(f"{task:>14}: {row['requests']:5d} requests  full {row['full_s']:7.2f} s  "
              f"shared {row['shared_s']:7.2f} s  x{row['speedup']:.1f}  max relative difference {diff:.1e}",
              flush=True)  # fmt: skip
    full, shared = sum(r["full_s"] for r in rows), sum(r["shared_s"] for r in rows)
    print(f"all NLU tasks: full {full:.1f} s, shared {shared:.1f} s: x{full / shared:.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary = {"cpu_capability": cpu_capability(), "full_s": full, "shared_s": shared, "speedup": full / shared}
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
