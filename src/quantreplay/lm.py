"""Language-model plumbing that training and evaluation share: where a job computes, loading a checkpoint,
the special-token ids, and padding a batch on either side.

Training right-pads (labels follow the tokens); generation left-pads (every prompt ends where new tokens start);
log-likelihood scoring right-pads. All three go through `pad_batch`, and all take the pad and bos ids from here,
so a tokenizer without a pad token behaves the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

# Labels with this value are ignored by the loss (PyTorch's cross-entropy default).
IGNORE_INDEX = -100


def job_device(threads: int) -> str:
    """'cuda' when a GPU is visible, else 'cpu'; torch uses `threads` CPU threads (the Snakemake job's), since
    competing jobs on more threads than they were given slow each other down several-fold."""
    import torch

    torch.set_num_threads(threads)
    return "cuda" if torch.cuda.is_available() else "cpu"


# A warm-started job (quantreplay.warm) runs in a fork of an older process: its start is its script's, given here
# as seconds since boot.
JOB_START_ENV = "QUANTREPLAY_JOB_STARTED"


def process_start_uptime() -> float | None:
    """When this process started, in seconds since boot (Linux; None elsewhere)."""
    import os
    from pathlib import Path

    try:
        # Field 22 of /proc/self/stat, counted after the command name (which may hold spaces): clock ticks since boot.
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def seconds_since_process_start() -> float | None:
    """How long this job has run, from the kernel's record of its start (Linux; None elsewhere): a job's start-up
    (interpreter, imports, model load) measured from its true beginning, not from the first import."""
    import os
    from pathlib import Path

    try:
        started = float(os.environ[JOB_START_ENV]) if os.environ.get(JOB_START_ENV) else process_start_uptime()
        return None if started is None else float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError):
        return None


def device_name(device: str) -> str:
    """The device for reports: 'cpu' or the GPU's name."""
    import torch

    return device if device == "cpu" else torch.cuda.get_device_name()


def pad_id(tokenizer) -> int:
    """The id padding uses: the tokenizer's pad token, else its eos (padded positions are masked either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def bos_ids(tokenizer) -> list[int]:
    """What starts every sequence: [bos] if the tokenizer has one, else nothing."""
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` without special tokens (callers place bos and eos themselves)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_many(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of every text, in one call into the Rust tokenizer: the ids are the same, and a stage's 8000
    examples take a third of the time they take one by one (a job's start-up)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [e.ids for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def pad_batch(
    sequences: Sequence[Sequence[int]],
    *,
    pad: int,
    side: str = "right",
    labels: Sequence[Sequence[int]] | None = None,
) -> dict:
    """Pad token-id sequences to the longest: `input_ids` and `attention_mask` tensors (and `labels`, padded with
    IGNORE_INDEX, when given). `side` is 'right' (training, scoring) or 'left' (generation)."""
    import torch

    if side not in ("left", "right"):
        raise ValueError(f"pad side must be 'left' or 'right', got {side!r}")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        out["labels"] = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
        if labels is not None:
            out["labels"][row, span] = torch.tensor(labels[row], dtype=torch.long)
    return out


def load_tokenizer(base: str):
    """The tokenizer of the base at `base` (what `from_pretrained` takes)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


def load_checkpoint(base: str, *, precision: str, quant, device: str, adapter: str | None = None):
    """(tokenizer, model): the base at `base` (what `from_pretrained` takes) in `precision`, with the frozen
    `adapter` (a PEFT folder) on top unless None. Training attaches its trainable adapter itself."""
    from quantreplay.quantize import dequantize_cpu_layers, load_base

    tokenizer = load_tokenizer(base)
    model = load_base(base, precision=precision, quant=quant, device=device)
    dequantize_cpu_layers(model, precision, quant=quant, device=device, training=False)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return tokenizer, model
