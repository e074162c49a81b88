"""Tests of the toy base (quantreplay.bases.toy): tokenizer, spec, and seeded pretraining (real components,
seconds)."""

import os

# Read by huggingface_hub at import time; every load below also passes local_files_only=True, in case another
# test module imported transformers first.
os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses
import hashlib
import json
import math
import random

import pytest

from quantreplay.bases import resolve_base
from quantreplay.bases.toy import ToySpec, build_toy_base, tokenizer_texts, toy_spec, train_tokenizer

NAMES = ["Ann", "Bob", "Cyd", "Dee", "Eve", "Fin"]
THINGS = ["apples", "pens", "cards", "coins", "books"]
CODE = [
    "def add(a, b):\n    return a + b\n",
    "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
    "class Box:\n    def __init__(self, n):\n        self.n = n  # 42\n",
]


def synthetic_corpus(n: int, seed: int = 0) -> list[str]:
    """Short arithmetic sentences and a few code snippets: enough structure for the loss to fall fast."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 9)
        docs.append(f"{rng.choice(NAMES)} has {a} {rng.choice(THINGS)} and gives {b} away, so {a - b} are left.")
    return docs + CODE


# Small enough for 30 steps in a few seconds on 2 cores, big enough for a visible loss drop.
TINY = ToySpec(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    max_position_embeddings=64,
    pretrain_steps=30,
    batch_size=8,
    seq_len=32,
    lr=3e-3,
    warmup_steps=5,
    weight_decay=0.1,
    seed=0,
)


# ---------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(synthetic_corpus(300), vocab_size=400)


@pytest.mark.parametrize(
    "text",
    [
        "Bob has 12 apples and gives 3 away.",
        "def f(x):\n\tif x > 10:\n        return x * 2  \n\n    return -1\r\n",
        "  leading and trailing spaces  ",
        "unseen: é ü ß 中文 🙂 \x00 ~`!@#$%^&*()",
        "1234567890 + 0.5 = 1234567890.5\n#### 42",
        "",
    ],
)
def test_tokenizer_round_trips(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_tokenizer_splits_digits_and_has_special_tokens(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("x=2024 and 99", add_special_tokens=False)["input_ids"])
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digit_tokens == ["2", "0", "2", "4", "9", "9"]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == (
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
    )
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}) == 4
    # The corpus offers enough merges to use most of the requested vocabulary, but never more.
    assert 300 < len(tokenizer) <= 400


def test_tokenizer_is_deterministic(tokenizer):
    again = train_tokenizer(synthetic_corpus(300), vocab_size=400)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


# ---------------------------------------------------------------- spec


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"hidden_size": 0}, ["hidden_size", "0"]),
        ({"num_layers": -2}, ["num_layers", "-2"]),
        ({"batch_size": 2.5}, ["batch_size", "2.5"]),
        ({"vocab_size": 100}, ["vocab_size", "100"]),
        ({"hidden_size": 30}, ["hidden_size: 30", "num_heads=4"]),
        ({"hidden_size": 36, "num_heads": 12, "num_kv_heads": 4}, ["hidden_size: 36", "odd"]),
        ({"num_kv_heads": 3}, ["num_kv_heads=3"]),
        ({"seq_len": 128}, ["seq_len: 128", "max_position_embeddings=64"]),
        ({"warmup_steps": 31}, ["warmup_steps: 31", "pretrain_steps=30"]),
        ({"warmup_steps": -1}, ["warmup_steps", "-1"]),
        ({"lr": 0.0}, ["lr", "0.0"]),
        ({"lr": "1e-3"}, ["lr", "'1e-3'"]),
        ({"lr": float("nan")}, ["lr", "nan"]),
        ({"weight_decay": -0.1}, ["weight_decay", "-0.1"]),
        ({"seed": -1}, ["seed", "-1"]),
    ],
)
def test_toyspec_rejects_bad_values(changes, needles):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(TINY, **changes)
    for needle in needles:
        assert needle in str(err.value)


def test_toy_spec_reads_a_config_section():
    section = {k: v for k, v in dataclasses.asdict(TINY).items() if k != "seed"}
    assert toy_spec({**section, "corpus_documents": 300}, seed=0) == dataclasses.replace(TINY, corpus_documents=300)
    with pytest.raises(ValueError, match=r"^models\.toy\.toy\.corpus_document: unknown key"):
        toy_spec({**section, "corpus_document": 300}, seed=0, key="models.toy.toy")
    # Keys left out take the spec's defaults, the default config's toy.
    assert toy_spec({}, seed=3) == ToySpec(seed=3) and ToySpec().hidden_size == 192


def test_tokenizer_texts_joins_prompt_and_target(tmp_path):
    import polars as pl

    paths = []
    for name, rows in (("a", [("Q: 1+1=", "2"), ("Hi ", "there")]), ("b", [("x", "y")])):
        paths.append(str(tmp_path / f"{name}.parquet"))
        pl.DataFrame(
            {"prompt": [p for p, _ in rows], "target": [t for _, t in rows], "id": ["1"] * len(rows)}
        ).write_parquet(paths[-1])
    assert tokenizer_texts(paths) == ["Q: 1+1=2", "Hi there", "xy"]


# ---------------------------------------------------------------- toy build


@pytest.fixture(scope="module")
def toy_builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    corpus = synthetic_corpus(400)
    infos = []
    for name in ("a", "b"):
        lines: list[str] = []
        info = build_toy_base(
            root / name, spec=TINY, corpus=corpus, tokenizer_texts=corpus, threads=2, log=lines.append
        )
        infos.append((root / name, info, lines))
    return infos


def test_toy_build_loads_offline_and_generates(toy_builds):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, info, lines = toy_builds[0]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["a", "b"], "no staging folders left behind"
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    assert model.config.vocab_size == len(tok) == info["vocab_size"]
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    code = "def add(a, b):\n    return a + b\n"
    assert tok.decode(tok(code, add_special_tokens=False)["input_ids"]) == code
    ids = tok("Bob has 12", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 5)
    assert json.loads((folder / "base.json").read_text()) == {"kind": "toy", "source": None}
    assert resolve_base(folder) == str(folder)
    assert any(line.startswith("step    10/") for line in lines)


def test_toy_pretraining_records_and_lowers_loss(toy_builds):
    folder, info, _ = toy_builds[0]
    saved = json.loads((folder / "pretrain.json").read_text())
    assert saved["spec"] == dataclasses.asdict(TINY)
    curve = saved["loss_curve"]
    assert [s for s, _ in curve] == list(range(TINY.pretrain_steps))
    first, last = [loss for _, loss in curve[:5]], [loss for _, loss in curve[-5:]]
    # Near log(vocab) at the start; the synthetic sentences are very predictable, so the drop is large.
    assert first[0] == pytest.approx(math.log(info["vocab_size"]), abs=0.5)
    assert sum(last) / 5 < sum(first) / 5 - 1.0
    assert saved["tokens_seen"] == TINY.pretrain_steps * TINY.batch_size * TINY.seq_len
    for key in ("wall_seconds", "tokens_per_second", "parameters", "corpus_sha256", "versions"):
        assert saved[key]
    assert (
        saved["corpus_sha256"]
        == hashlib.sha256(json.dumps(synthetic_corpus(400), ensure_ascii=False).encode()).hexdigest()
    )


def test_toy_build_is_byte_identical_for_same_seed(toy_builds):
    (a, info_a, _), (b, info_b, _) = toy_builds
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert info_a["loss_curve"] == info_b["loss_curve"]


def test_failed_build_leaves_nothing_and_keeps_nothing_stale(tmp_path):
    out = tmp_path / "base"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    # One 64-token block cannot be filled by two words: fails after the tokenizer is trained.
    spec = dataclasses.replace(TINY, seq_len=64)
    with pytest.raises(ValueError, match="seq_len=64"):
        build_toy_base(out, spec=spec, corpus=["hi there"], tokenizer_texts=["hi there"], threads=1, log=print)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]
    assert (out / "stale.txt").read_text() == "old"
