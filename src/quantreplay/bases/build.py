"""The build_base step: one model's config section becomes its base folder, by the kind's module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def build_base(
    *, output: str, spec: dict, tokenizer_data: Sequence[str], threads: int, log: Callable[[str], None] = print
) -> dict:
    """The build_base step: build the base described by `spec` (one entry of config `models`, plus
    `corpus_seed`) into `output`.

    toy: pretrain a small Llama on the synthetic world's narrative corpus, with a tokenizer trained on that
    corpus and on the task rows in `tokenizer_data`. gguf: convert SmolLM2-135M. hub: record the source.
    The folder's manifest is written last. Returns the build's report.
    """
    from quantreplay.manifest import check_inputs, write_manifest

    check_inputs(tokenizer_data)
    report = _build(output=output, spec=spec, tokenizer_data=tokenizer_data, threads=threads, log=log)
    write_manifest(output)
    return report


def _build(*, output: str, spec: dict, tokenizer_data: Sequence[str], threads: int, log: Callable[[str], None]):
    kind = spec["kind"]
    if kind == "toy":
        from quantreplay.bases.toy import build_toy_base, tokenizer_texts, toy_spec
        from quantreplay.data.builtin import pretraining_corpus

        corpus = pretraining_corpus(seed=spec["corpus_seed"], n_documents=spec["toy"]["corpus_documents"])
        log(f"toy base: {len(corpus)} corpus documents, {len(tokenizer_data)} task files for the tokenizer")
        return build_toy_base(
            output,
            # The folder is results/base/<model>: errors name the config key models.<model>.toy.
            spec=toy_spec(spec["toy"], seed=spec["corpus_seed"], key=f"models.{Path(output).name}.toy"),
            corpus=corpus,
            tokenizer_texts=corpus + tokenizer_texts(tokenizer_data),
            threads=threads,
            log=log,
        )
    if kind == "gguf":
        from quantreplay.bases.gguf import convert_gguf

        return convert_gguf(output, log=log)
    if kind == "hub":
        from quantreplay.bases.hub import link_hub_base

        return link_hub_base(output, source=spec["source"])
    raise ValueError(f"unknown model kind {kind!r}")
