"""Multiple-choice log-likelihoods that read each prompt once equal a full forward of every prompt + choice."""

import polars as pl
import pytest
import torch
from transformers import AutoTokenizer

from quantreplay.bases import resolve_base
from quantreplay.lm import bos_ids, encode
from quantreplay.loglik import choice_loglikelihoods
from quantreplay.quantize import QuantConfig, load_base


def _direct(model, tokenizer, requests) -> list[float]:
    """The definition: one full forward of context + continuation per request, log-softmax over the vocabulary."""
    out = []
    for context, continuation in requests:
        ctx, cont = bos_ids(tokenizer) + encode(tokenizer, context), encode(tokenizer, continuation)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont])).logits[0].float(), dim=-1)
        out.append(sum(logprobs[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont)))
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8", "nf4"])
def test_shared_prompt_scoring_equals_a_full_forward_of_every_choice(tiny_base, tiny_task_files, precision):
    path = resolve_base(tiny_base)
    model = load_base(path, precision=precision, quant=QuantConfig(), device="cpu").eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    requests = []
    for task in ("boolq", "piqa"):
        rows = pl.read_parquet(tiny_task_files[f"{task}/test"])
        requests += [(p, c) for p, cs in zip(rows["prompt"], rows["choices"], strict=True) for c in cs]
    # A continuation of several tokens, and two contexts that are one prefix of the other.
    requests += [(requests[0][0], " and then something longer"), (requests[0][0][:-3], requests[0][1])]
    direct = _direct(model, tokenizer, requests)
    for batch_size in (1, 3, 32):
        shared = choice_loglikelihoods(model, tokenizer, requests, batch_size=batch_size, device="cpu")
        # float32 rounding of sums of ~100 log-probabilities: 2e-7 relative measured.
        assert shared == pytest.approx(direct, rel=1e-5, abs=1e-5), batch_size
