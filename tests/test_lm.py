"""The LM plumbing that training and evaluation share: padding on either side, special-token ids."""

import pytest
import torch

from quantreplay.lm import IGNORE_INDEX, bos_ids, pad_batch, pad_id


def test_padding_on_the_right_keeps_labels_in_step():
    batch = pad_batch([[5, 6, 7], [8]], pad=0, labels=[[IGNORE_INDEX, 6, 7], [8]])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["input_ids"].dtype == torch.long


def test_padding_on_the_left_ends_every_row_at_the_last_column():
    batch = pad_batch([[5, 6, 7], [8]], pad=9, side="left")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [9, 9, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert "labels" not in batch
    with pytest.raises(ValueError, match="pad side"):
        pad_batch([[1]], pad=0, side="middle")


def test_pad_falls_back_to_eos_and_bos_may_be_absent(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    assert pad_id(tokenizer) == tokenizer.pad_token_id != tokenizer.eos_token_id
    assert bos_ids(tokenizer) == [tokenizer.bos_token_id]
    # SmolLM2's and GPT-2's tokenizers have no pad token, some none for bos either.
    tokenizer.pad_token, tokenizer.bos_token = None, None
    assert pad_id(tokenizer) == tokenizer.eos_token_id and bos_ids(tokenizer) == []


def test_encoding_many_texts_at_once_gives_each_texts_ids(tiny_base, tiny_task_files):
    import polars as pl
    from transformers import AutoTokenizer

    from quantreplay.lm import encode, encode_many

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    rows = pl.read_parquet(tiny_task_files["arithmetic/train"])
    texts = [*rows["prompt"], *rows["target"], "", "  two  spaces\n\tand a tab", "ünïcödé 123"]
    assert encode_many(tokenizer, texts) == [encode(tokenizer, t) for t in texts]
