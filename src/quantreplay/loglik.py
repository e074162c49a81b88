"""Log-likelihood of continuations given a context, reading each context once.

Multiple-choice scoring asks for log p(choice | prompt) for every choice of every question: k choices share one
prompt. The prompts of a batch of questions run through the decoder once, keeping their key/value cache; the
cache is repeated for each question's choices, and the choices run on top of it. The output head and the
log-softmax are applied only at the positions whose next token is scored (a 49,152-token vocabulary makes them
the bulk of the memory otherwise). The result equals a full forward of every prompt + choice sequence up to
float rounding (tested to 1e-5).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

from quantreplay import lm


def _cache_keyword(decoder) -> str:
    """The decoder's name for its key/value cache argument: 'cache' in current transformers, 'past_key_values'
    before (the GPU machines' images lag behind)."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _score_chunk(decoder, head, cache, prompt_out, prompts, lengths, rows, continuations, *, pad, device, keyword):
    """Log-likelihood sums of `continuations`, each after the prompt of batch row `rows[j]` whose decoder output and
    key/value cache are `prompt_out` and `cache` (reordered here, in place, to those rows)."""
    import torch

    choices = lm.pad_batch(continuations, pad=pad)
    cache.reorder_cache(rows.to(device))
    # The continuations continue their own context: positions from its true length, padding masked out.
    width = choices["input_ids"].shape[1]
    positions = lengths[rows][:, None] + torch.arange(width)[None, :]
    mask = torch.cat([prompts["attention_mask"][rows], choices["attention_mask"]], dim=1)
    with torch.no_grad():
        choice_out = decoder(input_ids=choices["input_ids"].to(device), attention_mask=mask.to(device),
                             position_ids=positions.to(device), use_cache=True, **{keyword: cache})  # fmt: skip
        # The hidden state that predicts each scored token: the context's last for the first token, then the
        # continuation's own up to its second-to-last.
        first = prompt_out.last_hidden_state[rows.to(device), (lengths[rows] - 1).to(device)]
        states, targets, owners = [], [], []
        for j, tokens in enumerate(continuations):
            states.append(torch.cat([first[j : j + 1], choice_out.last_hidden_state[j, : len(tokens) - 1]]))
            targets += tokens
            owners += [j] * len(tokens)
        logprobs = torch.log_softmax(head(torch.cat(states)).float(), dim=-1)
        scored = logprobs[torch.arange(len(targets)), torch.tensor(targets, device=logprobs.device)]
        sums = torch.zeros(len(continuations), dtype=scored.dtype, device=scored.device)
        sums.index_add_(0, torch.tensor(owners, device=scored.device), scored)
    return sums.tolist()


def choice_loglikelihoods(
    model, tokenizer, requests: Sequence[tuple[str, str]], *, batch_size: int, device: str
) -> list[float]:
    """Sum of log-probabilities of each continuation given its context, for (context, continuation) pairs.

    Context and continuation are tokenized separately, as in training, so the scored tokens are exactly those
    the model was trained to produce. Requests with the same context share one pass over it; `batch_size`
    contexts run at a time, longest first, so padding stays small and an out-of-memory shows on the first batch,
    and their continuations in chunks of `batch_size`, shortest first.
    """
    import torch

    contexts: dict[str, list[int]] = {}
    for i, (context, _) in enumerate(requests):
        contexts.setdefault(context, []).append(i)
    encoded = {
        c: lm.bos_ids(tokenizer) + ids for c, ids in zip(contexts, lm.encode_many(tokenizer, contexts), strict=True)
    }
    continuations = lm.encode_many(tokenizer, [continuation for _, continuation in requests])
    order = sorted(contexts, key=lambda c: -len(encoded[c]))
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    cache_keyword = _cache_keyword(decoder)
    pad = lm.pad_id(tokenizer)
    out = [0.0] * len(requests)
    for start in range(0, len(order), batch_size):
        batch_contexts = order[start : start + batch_size]
        prompts = lm.pad_batch([encoded[c] for c in batch_contexts], pad=pad)
        lengths = torch.tensor([len(encoded[c]) for c in batch_contexts])
        with torch.no_grad():
            prompt_out = decoder(**{k: v.to(device) for k, v in prompts.items()}, use_cache=True)
        prompt_cache = _returned_cache(prompt_out)
        # The batch's requests, shortest continuation first, in chunks of `batch_size`: long and short choices
        # (PIQA's solutions beside ARC's one-word answers) do not pad each other.
        members = sorted(
            ((row, i) for row, c in enumerate(batch_contexts) for i in contexts[c]),
            key=lambda m: len(continuations[m[1]]),
        )
        for first_member in range(0, len(members), batch_size):
            chunk = members[first_member : first_member + batch_size]
            rows = torch.tensor([row for row, _ in chunk])
            cache = prompt_cache if len(members) <= batch_size else copy.deepcopy(prompt_cache)
            tokens = [continuations[i] for _, i in chunk]
            totals = _score_chunk(decoder, head, cache, prompt_out, prompts, lengths, rows, tokens, pad=pad,
                                  device=device, keyword=cache_keyword)  # fmt: skip
            for (_, i), total in zip(chunk, totals, strict=True):
                out[i] = total
    return out
