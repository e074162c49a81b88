"""The toy base: a small Llama built here from nothing, offline, on a CPU, in minutes.

A byte-level BPE tokenizer is trained on the pretraining corpus and the task rows (`train_tokenizer`), then a
Llama is pretrained on the corpus with a short, fully seeded causal-LM run (`build_toy_base`). The corpus is the
synthetic world's narrative text (`quantreplay.data.builtin.pretraining_corpus`); `toy_spec` reads the
architecture and recipe from a model's config section.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from quantreplay.bases import BASE_JSON, write_record
from quantreplay.io import package_versions, read_parquet, sha256_texts, staging_dir
from quantreplay.schedule import lr_at
from quantreplay.settings import SettingError, Settings, non_negative, parse, positive, setting

if TYPE_CHECKING:
    # Annotation only: transformers takes seconds to import, so it is imported where it is used.
    from transformers import PreTrainedTokenizerFast

PRETRAIN_JSON = "pretrain.json"
# The packages whose versions pretrain.json records.
VERSIONED_PACKAGES = ("torch", "transformers", "tokenizers")

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
# Order fixes the ids: unk 0, bos 1, eos 2, pad 3 (Llama's 0/1/2 convention plus a pad).
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD)
# Byte-level BPE starts from all 256 byte symbols; the special tokens come on top.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)

# Cosine decay ends at a tenth of the peak rate (the nanoGPT / Chinchilla convention).
MIN_LR_RATIO = 0.1
# GPT-3's / nanoGPT's Adam betas: a shorter second-moment memory is steadier for short LM pretraining.
ADAM_BETAS = (0.9, 0.95)
# Global gradient-norm clip, as in most LM pretraining recipes; keeps the first high-lr steps from blowing up.
GRAD_CLIP = 1.0
# Log (and time) the loss this often; every step is still recorded in pretrain.json.
LOG_EVERY = 10
# Llama's default RMSNorm epsilon, appropriate for fp32 training.
RMS_NORM_EPS = 1e-5


# Keys of a toy model's config that shape its corpus rather than its ToySpec.
@dataclass(frozen=True)
class ToySpec(Settings):
    """Architecture, corpus and pretraining recipe of a toy Llama base (config `models.<name>.toy`; `seed` comes
    from `data.seed`).

    `hidden_size` splits evenly into `num_heads` heads of even width (rotary embeddings rotate pairs of
    dimensions), `num_heads` into `num_kv_heads` groups (grouped-query attention), `seq_len` fits in
    `max_position_embeddings`, and `warmup_steps` lies within `pretrain_steps`.
    """

    vocab_size: int = setting(
        2048, lambda v: v >= MIN_VOCAB_SIZE, f"at least {MIN_VOCAB_SIZE} (256 bytes + special tokens)"
    )
    hidden_size: int = setting(192, positive, "positive")
    intermediate_size: int = setting(512, positive, "positive")
    num_layers: int = setting(4, positive, "positive")
    num_heads: int = setting(6, positive, "positive")
    num_kv_heads: int = setting(2, positive, "positive")
    max_position_embeddings: int = setting(512, positive, "positive")
    corpus_documents: int = setting(20000, positive, "positive")
    pretrain_steps: int = setting(400, positive, "positive")
    batch_size: int = setting(32, positive, "positive")
    seq_len: int = setting(128, positive, "positive")
    lr: float = setting(0.003, positive, "positive")
    warmup_steps: int = setting(40, non_negative, "non-negative")
    weight_decay: float = setting(0.1, non_negative, "non-negative")
    seed: int = setting(0, non_negative, "non-negative")

    def _check_fields(self) -> None:
        if self.hidden_size % self.num_heads:
            raise SettingError("hidden_size", f"{self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise SettingError(
                "hidden_size",
                f"{self.hidden_size} / num_heads={self.num_heads} gives an odd head width; rotary embeddings need "
                "an even one",
            )
        if self.num_heads % self.num_kv_heads:
            raise SettingError("num_heads", f"{self.num_heads} is not divisible by num_kv_heads={self.num_kv_heads}")
        if self.seq_len > self.max_position_embeddings:
            raise SettingError(
                "seq_len", f"{self.seq_len} exceeds max_position_embeddings={self.max_position_embeddings}"
            )
        if self.warmup_steps > self.pretrain_steps:
            raise SettingError("warmup_steps", f"{self.warmup_steps} exceeds pretrain_steps={self.pretrain_steps}")


def toy_spec(toy: dict, *, seed: int, key: str = "toy") -> ToySpec:
    """The ToySpec of a toy model's config section at config key `key`; raises SettingError naming the key."""
    return parse(ToySpec, {**toy, "seed": seed}, key)


def tokenizer_texts(paths: Sequence[str]) -> list[str]:
    """Prompt and target of every row in the given task parquets, the text a toy tokenizer must cover."""
    texts: list[str] = []
    for path in paths:
        frame = read_parquet(path, columns=["prompt", "target"])
        texts += [p + t for p, t in zip(frame["prompt"], frame["target"], strict=True)]
    return texts


def train_tokenizer(texts: Iterable[str], *, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it for transformers.

    Digits are split one by one before the byte-level step, so every number is a sequence of single-digit
    tokens (arithmetic needs a consistent digit representation). Byte-level BPE round-trips any text, code
    indentation and newlines included. Special tokens: `<unk>` 0, `<s>` (bos) 1, `</s>` (eos) 2, `<pad>` 3.
    The tokenizer adds no special tokens by itself (as GPT-2's and SmolLM2's do not); callers place bos/eos.
    The result may hold fewer than `vocab_size` tokens when the texts offer fewer merges. Training is
    deterministic: the same texts in the same order give the same tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + special tokens), got {vocab_size}"
        )
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("train_tokenizer: no non-empty texts to train on")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            # No prefix space: a leading space would not survive decoding, breaking the round trip.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes from the start, so text unseen in training still encodes without <unk>.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        # Cleanup would drop spaces before punctuation and break round-tripping of code.
        clean_up_tokenization_spaces=False,
    )


def _pack_blocks(corpus: Sequence[str], tokenizer, *, seq_len: int):
    """Documents, each followed by eos, concatenated and cut into `[n_blocks, seq_len]` (remainder dropped)."""
    import torch

    encoded = tokenizer(list(corpus), add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for ids in encoded:
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    n_blocks = len(stream) // seq_len
    if n_blocks == 0:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than one block of seq_len={seq_len}")
    return torch.tensor(stream[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len), len(stream)


def _batch_order(n_blocks: int, *, batch_size: int, steps: int, generator) -> list:
    """Block indices per step: epochs of fresh seeded permutations laid end to end, cut into batches."""
    import torch

    need = batch_size * steps
    perms = [torch.randperm(n_blocks, generator=generator) for _ in range(math.ceil(need / n_blocks))]
    flat = torch.cat(perms)[:need]
    return list(flat.view(steps, batch_size))


def _optimizer(model, *, lr: float, weight_decay: float):
    import torch

    # Decay matrices only; norms (1-D) are left alone, as in nanoGPT. Tied embeddings appear once.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS)


def build_toy_base(
    out_dir: str | os.PathLike,
    *,
    spec: ToySpec,
    corpus: Sequence[str],
    tokenizer_texts: Sequence[str],
    threads: int,
    log: Callable[[str], None] = print,
) -> dict:
    """Train a tokenizer and pretrain a small Llama on `corpus`; save it as a transformers folder at `out_dir`.

    The tokenizer is trained on `tokenizer_texts` (`train_tokenizer`, `spec.vocab_size`). The model is a
    `LlamaForCausalLM` (rotary positions, SiLU MLP, RMSNorm, tied input/output embeddings) with the
    tokenizer's bos/eos/pad ids. Pretraining: documents joined with eos, packed into `spec.seq_len` blocks,
    batches drawn from seeded permutations of the blocks; AdamW with linear warmup and cosine decay
    (`quantreplay.schedule.lr_at`), gradient clipping at 1.0, fp32, `threads` torch threads.
    Everything is seeded from `spec.seed`, so two builds with the same inputs and thread count write
    byte-identical weights.

    The folder holds model.safetensors, config.json, the tokenizer, `pretrain.json` (spec, loss per step as
    [step, loss], tokens seen, timings, parameter count, versions, corpus sha256) and `base.json`
    ({"kind": "toy", "source": null}). Returns the content of pretrain.json.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    corpus = list(corpus)
    if not corpus:
        raise ValueError("build_toy_base: empty corpus")
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with staging_dir(out_dir) as tmp:
            log(f"training tokenizer on {len(tokenizer_texts)} texts (vocab_size={spec.vocab_size})")
            tokenizer = train_tokenizer(tokenizer_texts, vocab_size=spec.vocab_size)
            tokenizer.model_max_length = spec.max_position_embeddings
            blocks, corpus_tokens = _pack_blocks(corpus, tokenizer, seq_len=spec.seq_len)
            log(f"tokenizer: {len(tokenizer)} tokens; corpus: {corpus_tokens} tokens in {len(blocks)} blocks")

            config = LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=spec.hidden_size,
                intermediate_size=spec.intermediate_size,
                num_hidden_layers=spec.num_layers,
                num_attention_heads=spec.num_heads,
                num_key_value_heads=spec.num_kv_heads,
                max_position_embeddings=spec.max_position_embeddings,
                hidden_act="silu",
                rms_norm_eps=RMS_NORM_EPS,
                tie_word_embeddings=True,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                dtype="float32",
            )
            torch.manual_seed(spec.seed)
            model = LlamaForCausalLM(config)
            n_params = sum(p.numel() for p in model.parameters())
            log(f"model: {n_params:,} parameters")

            # A private generator: the data order does not depend on whatever else drew from the global RNG.
            generator = torch.Generator().manual_seed(spec.seed)
            order = _batch_order(
                len(blocks), batch_size=spec.batch_size, steps=spec.pretrain_steps, generator=generator
            )
            optimizer = _optimizer(model, lr=spec.lr, weight_decay=spec.weight_decay)
            min_lr = spec.lr * MIN_LR_RATIO
            model.train()
            curve: list[list[float]] = []
            step_ms: list[float] = []
            train_started = time.perf_counter()
            for step, idx in enumerate(order):
                t0 = time.perf_counter()
                lr = lr_at(
                    step,
                    lr=spec.lr,
                    warmup_steps=spec.warmup_steps,
                    total_steps=spec.pretrain_steps,
                    schedule="cosine",
                    min_lr=min_lr,
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = blocks[idx]
                loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_ms.append((time.perf_counter() - t0) * 1000)
                # Six decimals is far below step-to-step noise and keeps pretrain.json readable.
                curve.append([step, round(loss.item(), 6)])
                if step % LOG_EVERY == 0 or step == spec.pretrain_steps - 1:
                    log(
                        f"step {step:5d}/{spec.pretrain_steps} loss {loss.item():.4f} lr {lr:.2e} {step_ms[-1]:.0f} ms"
                    )
            train_seconds = time.perf_counter() - train_started
            tokens_seen = spec.pretrain_steps * spec.batch_size * spec.seq_len

            model.eval()
            model.generation_config.bos_token_id = tokenizer.bos_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            info = {
                "kind": "toy",
                "spec": asdict(spec),
                "vocab_size": len(tokenizer),
                "parameters": n_params,
                "threads": threads,
                "corpus_documents": len(corpus),
                "corpus_tokens": corpus_tokens,
                "corpus_sha256": sha256_texts(corpus),
                "tokenizer_texts_sha256": sha256_texts(tokenizer_texts),
                "blocks": len(blocks),
                "tokens_seen": tokens_seen,
                "epochs": tokens_seen / (len(blocks) * spec.seq_len),
                "loss_curve": curve,
                "train_seconds": train_seconds,
                "tokens_per_second": tokens_seen / train_seconds,
                "ms_per_step_median": statistics.median(step_ms),
                "versions": package_versions(VERSIONED_PACKAGES),
            }
            info["wall_seconds"] = time.perf_counter() - started
            write_record(tmp / PRETRAIN_JSON, info)
            write_record(tmp / BASE_JSON, {"kind": "toy", "source": None})
    finally:
        torch.set_num_threads(previous_threads)
    log(f"saved toy base to {out_dir} in {info['wall_seconds']:.1f} s")
    return info
