"""Held-out target loss: how well each checkpoint predicts the reference answers of fixed test examples.

Accuracy moves in steps of one example and sits at a floor where a model solves almost nothing (a 135M model on
GSM8K, before training and after): it cannot show that a stage taught its family something, nor that a later stage
took it away. The loss of the reference answer moves with every example. At every checkpoint, for each task, the
same `examples` test examples (the training probes' draw, quantreplay.train.probe_rows), each one's mean negative
log-likelihood per target token with its prompt as context, as in training (target and end-of-sequence token).

The tables treat an example's target log-likelihood per token (minus its loss) as its score, and build from it
the R matrix and metrics that accuracy gets (quantreplay.metrics), with the same paired bootstrap
(quantreplay.intervals): gain and forgetting keep their signs. A stage's gain is how far its own family's loss
fell from the untrained base's; a family's forgetting is how far its loss rose after the last stage above the
lowest it had before.

The tables (rule heldout_tables) are quantreplay.aggregate's `heldout_tables`: heldout_loss.csv (mean loss per
model, precision, buffer, seed, after_stage and task), heldout_intervals.csv and heldout_comparison.csv (the columns
of intervals.csv and comparison.csv, on log-likelihood), and heldout_loss.md (and .html, for the report): gain and
forgetting in nats per token with their intervals, and each precision minus the reference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from quantreplay import lm
from quantreplay.settings import Settings, non_negative, positive, setting

# The score column of heldout_loss.parquet that the tables resample: higher is better, as accuracy.
SCORE = "loglik"


@dataclass(frozen=True)
class HeldoutSettings(Settings):
    """Config `heldout_loss`: test examples per task whose target loss every checkpoint measures (0: no such
    step), sequences per forward, and the longest sequence (null: the longest of any training stage, so every
    example is cut as training would cut it)."""

    examples: int = setting(0, non_negative, "a non-negative integer (0: no held-out loss)")
    batch_size: int = setting(8, positive, "positive")
    max_seq_len: int | None = setting(None, lambda v: v >= 8, "at least 8, or null")


def example_losses(model, examples: Sequence, *, pad_id: int, batch_size: int, device: str) -> tuple[list, list]:
    """Each example's mean negative log-likelihood per target token, and its number of target tokens, in the order
    given. Batches of `batch_size` hold examples of similar length (a quarter less padding than in the order given,
    on the real tier's probes); right-padded, so a sequence's loss does not depend on its batch."""
    import torch

    from quantreplay.train import collate, sequence_nll

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    losses, tokens = [0.0] * len(examples), [0] * len(examples)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in picked], pad_id=pad_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            sums, counts = sequence_nll(logits, batch["labels"])
            for i, total, count in zip(picked, sums.tolist(), counts.tolist(), strict=True):
                losses[i], tokens[i] = total / count, count
    return losses, tokens


def heldout_losses(model, tokenizer, test_files: Sequence[str], *, settings: HeldoutSettings, device: str,
                   log=print) -> pl.DataFrame:  # fmt: skip
    """One row per probe example of every test file: task, family, id, target_tokens, loss, loglik. Needs
    `settings.max_seq_len` resolved (quantreplay.grid.heldout_params)."""
    from quantreplay.train import probe_rows, tokenize_examples

    frames = []
    for path in test_files:
        started = time.perf_counter()
        rows = probe_rows(path, examples=settings.examples, columns=("task", "family", "id", "prompt", "target"))
        examples = tokenize_examples(tokenizer, rows["prompt"], rows["target"], max_seq_len=settings.max_seq_len)
        losses, tokens = example_losses(
            model, examples, pad_id=lm.pad_id(tokenizer), batch_size=settings.batch_size, device=device
        )
        frame = rows.select("task", "family", "id").with_columns(
            target_tokens=pl.Series(tokens, dtype=pl.Int64), loss=pl.Series(losses, dtype=pl.Float64)
        )
        frames.append(frame.with_columns((-pl.col("loss")).alias(SCORE)))
        log(f"{rows['task'][0]}: loss {frame['loss'].mean():.4f} (n={frame.height}, "
            f"{time.perf_counter() - started:.1f} s)")  # fmt: skip
    return pl.concat(frames)


def run_heldout_loss(*, base_dir: str, adapter: str | None, test_files: Sequence[str], settings: dict, output: str,
                     cell: dict, threads: int, log=print) -> pl.DataFrame:  # fmt: skip
    """The heldout_loss step: the inputs checked against their manifests, the checkpoint loaded as the evaluate
    step loads it, `heldout_losses` written atomically to `output`."""
    from quantreplay.bases import checked_base
    from quantreplay.io import write_parquet
    from quantreplay.manifest import check_inputs
    from quantreplay.quantize import QuantConfig
    from quantreplay.settings import parse

    check_inputs(adapter, test_files)
    heldout = parse(HeldoutSettings, settings["heldout_loss"], "heldout_loss")
    device = lm.job_device(threads)
    tokenizer, model = lm.load_checkpoint(
        checked_base(base_dir),
        precision=cell["precision"],
        quant=parse(QuantConfig, settings["quantization"], "quantization"),
        device=device,
        adapter=adapter,
    )
    model.eval()
    frame = heldout_losses(model, tokenizer, test_files, settings=heldout, device=device, log=log)
    write_parquet(frame, output)
    return frame
