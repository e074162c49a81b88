"""Scoring on a real (tiny) model: batching and padding change nothing, and every family's scorer runs."""

import json

import polars as pl
import pytest
from transformers import AutoTokenizer

from quantreplay.bases import resolve_base
from quantreplay.data.sources import prepare_split
from quantreplay.evaluate import (
    EvalSettings,
    code_passes,
    drop_partial_batch,
    evaluate_checkpoint,
    generate,
    score_code,
    score_math,
    score_multiple_choice,
    subsample,
)
from quantreplay.extract import truncate_at_stop
from quantreplay.quantize import QuantConfig, load_base
from quantreplay.settings import parse


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_base):
    path = resolve_base(tiny_base)
    model = load_base(path, precision="fp32", quant=QuantConfig(), device="cpu")
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def test_greedy_generation_ignores_batching_and_left_padding(model_and_tokenizer, tiny_task_files):
    model, tok = model_and_tokenizer
    prompts = pl.read_parquet(tiny_task_files["arithmetic/test"])["prompt"].to_list()[:5] + ["Question: hi\nAnswer:"]
    alone = generate(model, tok, prompts, max_new_tokens=12, stops=["\nQuestion:"], batch_size=1, device="cpu")
    batched = generate(model, tok, prompts, max_new_tokens=12, stops=["\nQuestion:"], batch_size=6, device="cpu")
    assert alone == batched


def test_a_stop_string_ends_a_completion_only_inside_the_completion(model_and_tokenizer):
    """A prompt that ends in a newline, and a stop string made of that newline and the completion's first
    character: the completion runs on (transformers' `stop_strings` matched across the prompt's end and ended
    it after one token). And each row stops on its own: the row whose completion holds a stop ends there, the other
    runs to its budget."""
    model, tok = model_and_tokenizer
    prompts = ["def two():\n", "x\n"]

    def complete(texts, stops, batch_size=1):
        return [c[0] for c in generate(model, tok, texts, max_new_tokens=12, stops=stops, batch_size=batch_size,
                                       device="cpu")]  # fmt: skip

    free = complete(prompts, [])
    assert all(len(text) >= 4 for text in free), free
    straddling = "\n" + free[0][0]
    assert straddling not in free[0]
    assert complete(prompts[:1], [straddling]) == free[:1]
    first_row_stop = free[0][1:3]
    assert first_row_stop not in free[1], free
    assert complete(prompts, [first_row_stop], batch_size=2) == [truncate_at_stop(free[0], [first_row_stop]), free[1]]


def test_code_scoring_runs_completions_against_tests(model_and_tokenizer):
    model, tok = model_and_tokenizer
    frame = pl.DataFrame(
        {
            "id": ["c-0"],
            "task": ["pyfunc"],
            "family": ["code"],
            "prompt": ["def two():\n"],
            "target": ["    return 2\n"],
            "tests": ["assert two() == 2\n"],
            "entry_point": ["two"],
            "code_prefix": ["def two():\n"],
        }
    )
    scored = score_code(model, tok, frame, EvalSettings(max_new_tokens={"nlu": 1, "math": 1, "code": 4}), "cpu")
    # A model of a few thousand parameters does not write `return 2`: its completion fails the tests.
    assert scored["passed"].to_list() == [0] and scored["correct"].to_list() == [0.0]


def test_code_scoring_counts_a_correct_completion_and_only_that(tmp_path):
    # Real builtin problems, their reference solutions as the completions of the first, wrong ones elsewhere.
    params = {"dataset": "pyfunc", "family": "code", "seed": 0, "source": "builtin", "train_size": 4,
              "test_size": 3, "n_creatures": 10}  # fmt: skip
    frame = prepare_split(task="pyfunc", split="test", params=params, output=tmp_path / "pyfunc.parquet")
    completions = [
        [frame["target"][0]],
        ["    return None\n"],
        ["    import os\n    os._exit(0)\n", frame["target"][2]],
    ]
    passed = code_passes(completions, frame, EvalSettings())
    # The third: exiting before the tests run is no pass, the reference solution beside it is one.
    assert passed == [1, 0, 1]


def test_subsample_is_seeded_and_ordered(tiny_task_files):
    frame = pl.read_parquet(tiny_task_files["boolq/train"])
    a = subsample(frame, max_examples=10, seed=0)
    assert a.equals(subsample(frame, max_examples=10, seed=0)) and a.height == 10
    assert a["id"].to_list() == sorted(a["id"].to_list())
    assert subsample(frame, max_examples=None, seed=0).equals(frame)


def test_evaluate_checkpoint_writes_scores_and_predictions(tiny_base, tiny_task_files, tmp_path):
    tests = [tiny_task_files[f"{t}/test"] for t in ("boolq", "piqa", "arithmetic")]
    report = evaluate_checkpoint(
        base=resolve_base(tiny_base), precision="nf4", adapter=None, test_files=tests,
        settings=EvalSettings(max_examples=6, max_new_tokens={"nlu": 2, "math": 8, "code": 8}), quant=QuantConfig(),
        predictions_out=str(tmp_path / "p.parquet"), scores_out=str(tmp_path / "s.json"), cell={"precision": "nf4"},
        threads=1, log=lambda s: None,
    )  # fmt: skip
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["tasks"] == report["tasks"]
    assert {t: s["metric"] for t, s in saved["tasks"].items()} == {
        "boolq": "acc", "piqa": "acc", "arithmetic": "exact_match"
    }  # fmt: skip
    predictions = pl.read_parquet(tmp_path / "p.parquet")
    assert predictions.height == 18 and set(predictions["task"]) == {"boolq", "piqa", "arithmetic"}


def test_each_family_keeps_its_own_number_of_test_examples(tiny_base, tiny_task_files, tmp_path):
    tests = [tiny_task_files[f"{t}/test"] for t in ("boolq", "piqa", "arithmetic")]
    settings = parse(EvalSettings, {"max_examples": {"nlu": 5, "math": 2, "code": None},
                                    "max_new_tokens": {"nlu": 2, "math": 8, "code": 8}}, "evaluation")  # fmt: skip
    report = evaluate_checkpoint(
        base=resolve_base(tiny_base), precision="fp32", adapter=None, test_files=tests, settings=settings,
        quant=QuantConfig(), predictions_out=str(tmp_path / "p.parquet"), scores_out=str(tmp_path / "s.json"),
        cell={"precision": "fp32"}, threads=1, log=lambda s: None,
    )  # fmt: skip
    assert {t: s["n"] for t, s in report["tasks"].items()} == {"boolq": 5, "piqa": 5, "arithmetic": 2}
    # The same seeded examples as a single cap of that size: a family's cap only says how many.
    boolq = pl.read_parquet(tiny_task_files["boolq/test"])
    kept = pl.read_parquet(tmp_path / "p.parquet").filter(pl.col("task") == "boolq")["id"].to_list()
    assert kept == subsample(boolq, max_examples=5, seed=settings.seed)["id"].to_list()


def test_settings_name_bad_values():
    with pytest.raises(ValueError, match="^mc_mode: must be one of loglik, generate, label_word, got 'vote'$"):
        EvalSettings(mc_mode="vote")
    with pytest.raises(ValueError, match=r"^evaluation\.pass_k: must lie in \[1, code_samples=2\], got \[5\]$"):
        parse(EvalSettings, {"code_samples": 2, "pass_k": [5]}, "evaluation")
    with pytest.raises(ValueError, match=r"^evaluation\.max_new_tokens: must be a positive budget for each of"):
        parse(EvalSettings, {"max_new_tokens": {"nlu": 4}}, "evaluation")
    # A family left out would score its whole test split (1319 GSM8K problems): every family is named.
    too_few = ({"nlu": 64, "math": 32}, {"nlu": 64, "math": 0, "code": 32}, {"nlu": 1, "math": 1, "code": 1, "x": 1})
    for caps in too_few:
        with pytest.raises(ValueError, match=r"^evaluation\.max_examples: must be positive, null, or a positive"):
            parse(EvalSettings, {"max_examples": caps}, "evaluation")
    with pytest.raises(ValueError, match=r"^evaluation\.max_examples: must be positive, null, or"):
        parse(EvalSettings, {"max_examples": 0}, "evaluation")


def test_sampled_code_scoring_reports_pass_at_k(model_and_tokenizer):
    model, tok = model_and_tokenizer
    frame = pl.DataFrame(
        {"id": ["c-0", "c-1"], "task": ["pyfunc"] * 2, "family": ["code"] * 2, "prompt": ["def two():\n"] * 2,
         "target": ["    return 2\n"] * 2, "tests": ["assert two() == 2\n"] * 2, "entry_point": ["two"] * 2,
         "code_prefix": ["def two():\n", "def two():\n    return 2\n"]}
    )  # fmt: skip
    settings = EvalSettings(code_samples=3, pass_k=(1, 3), max_new_tokens={"nlu": 1, "math": 1, "code": 4})
    scored = score_code(model, tok, frame, settings, "cpu")
    assert {"pass@1", "pass@3"} <= set(scored.columns) and scored["passed"].to_list()[0] == 0
    # The second prefix already defines a correct function, and whatever the tiny model appends after it
    # (a few tokens of noise) decides each sample; pass@k is the unbiased estimate from those n = 3 samples.
    passed = scored["passed"].to_list()[1]
    assert scored["pass@3"].to_list()[1] == (1.0 if passed else 0.0)
    assert scored["pass@1"].to_list()[1] == pytest.approx(passed / 3)


@pytest.mark.parametrize(("rows", "batch_size", "kept"), [(23, 8, 16), (24, 8, 24), (8, 8, 8), (10, 3, 9)])
def test_drop_last_keeps_the_whole_batches_in_order(tiny_task_files, rows, batch_size, kept):
    frame = pl.concat([pl.read_parquet(tiny_task_files["boolq/train"])] * 2).head(rows)
    assert drop_partial_batch(frame, batch_size=batch_size).equals(frame.head(kept))


def test_drop_last_that_leaves_no_example_names_the_key(tiny_task_files):
    from quantreplay.errors import ConfigError

    frame = pl.read_parquet(tiny_task_files["boolq/test"]).head(5)
    with pytest.raises(ConfigError, match=r"^evaluation\.drop_last: task 'boolq' has 5 test examples, fewer than "):
        drop_partial_batch(frame, batch_size=8)


def test_drop_last_scores_whole_batches_only(tiny_base, tiny_task_files, tmp_path):
    # 10 test rows per task, batches of 4: the authors' loader scores 8 of each task, ours all 10.
    tests = [tiny_task_files[f"{t}/test"] for t in ("boolq", "arithmetic")]

    def scored(drop_last: bool) -> dict:
        settings = EvalSettings(batch_size=4, drop_last=drop_last, max_new_tokens={"nlu": 2, "math": 4, "code": 4})
        return evaluate_checkpoint(
            base=resolve_base(tiny_base), precision="fp32", adapter=None, test_files=tests, settings=settings,
            quant=QuantConfig(), predictions_out=str(tmp_path / f"{drop_last}.parquet"),
            scores_out=str(tmp_path / f"{drop_last}.json"), cell={}, threads=1, log=lambda s: None,
        )["tasks"]  # fmt: skip

    assert {t: s["n"] for t, s in scored(True).items()} == {"boolq": 8, "arithmetic": 8}
    assert {t: s["n"] for t, s in scored(False).items()} == {"boolq": 10, "arithmetic": 10}
    kept = pl.read_parquet(tmp_path / "True.parquet").filter(pl.col("task") == "boolq")["id"]
    assert kept.to_list() == pl.read_parquet(tests[0])["id"].head(8).to_list()


def test_sampled_decoding_is_reproducible_with_its_seed_and_differs_from_greedy(model_and_tokenizer, tiny_task_files):
    model, tok = model_and_tokenizer
    frame = pl.read_parquet(tiny_task_files["arithmetic/test"]).head(6)
    budget = {"nlu": 2, "math": 12, "code": 4}

    def outputs(**settings) -> list[str]:
        scored = score_math(model, tok, frame, EvalSettings(max_new_tokens=budget, batch_size=4, **settings), "cpu")
        return scored["output"].to_list()

    # The authors' sampling: temperature 0.6, top_k 50, top_p 0.9.
    authors = {"decoding": "sample", "temperature": 0.6, "top_k": 50, "top_p": 0.9}
    sampled = outputs(seed=3, **authors)
    assert outputs(seed=3, **authors) == sampled
    assert outputs(seed=4, **authors) != sampled
    greedy = outputs()
    assert sampled != greedy
    # Keeping only the most likely token samples the greedy answer: top_k reaches generate.
    assert outputs(decoding="sample", top_k=1, temperature=1.0) == greedy


def test_sampling_filters_without_sampling_name_the_key():
    with pytest.raises(ValueError, match=r"^evaluation\.top_k: applies only to sampling"):
        parse(EvalSettings, {"top_k": 50}, "evaluation")
    with pytest.raises(ValueError, match=r"^evaluation\.top_p: must be in \(0, 1\] or null, got 1\.5$"):
        parse(EvalSettings, {"decoding": "sample", "top_p": 1.5}, "evaluation")
    assert parse(EvalSettings, {"code_samples": 5, "top_p": 0.9}, "evaluation").top_p == 0.9


def test_rouge1_code_scoring_compares_with_the_reference_and_runs_nothing(model_and_tokenizer, monkeypatch):
    import quantreplay.evaluate as evaluate
    from quantreplay.evaluate import task_score
    from quantreplay.extract import rouge1_f

    def no_run(*args, **kwargs):
        raise AssertionError("rouge1 scoring ran code")

    monkeypatch.setattr(evaluate, "count_passes", no_run)
    model, tok = model_and_tokenizer
    frame = pl.DataFrame(
        {"id": ["c-0", "c-1"], "task": ["pyfunc"] * 2, "family": ["code"] * 2, "prompt": ["def two():\n"] * 2,
         "target": ["    return 2\n", "    x = 1\n    return x\n"], "tests": ["assert two() == 2\n"] * 2,
         "entry_point": ["two"] * 2, "code_prefix": ["def two():\n"] * 2}
    )  # fmt: skip
    for samples in (1, 3):
        settings = EvalSettings(code_metric="rouge1", code_samples=samples,
                                max_new_tokens={"nlu": 1, "math": 1, "code": 6})  # fmt: skip
        scored = score_code(model, tok, frame, settings, "cpu")
        if samples == 1:
            # Greedy: each score is the ROUGE-1 F of the completion against its row's reference.
            expected = [rouge1_f(o, t) for o, t in zip(scored["output"], frame["target"], strict=True)]
            assert scored["correct"].to_list() == expected
        assert all(0 <= v <= 1 for v in scored["correct"])
        score = task_score("code", scored, settings)
        assert score["metric"] == "rouge1" and score["value"] == pytest.approx(sum(scored["correct"]) / 2)
    with pytest.raises(ValueError, match=r"^evaluation\.pass_k: is not reported with code_metric rouge1"):
        parse(EvalSettings, {"code_metric": "rouge1", "code_samples": 5, "pass_k": [1, 5]}, "evaluation")


def test_label_word_scoring_picks_the_choice_the_output_names(model_and_tokenizer, tiny_task_files, monkeypatch):
    import quantreplay.evaluate as evaluate

    model, tok = model_and_tokenizer
    frame = pl.read_parquet(tiny_task_files["piqa/test"]).head(4)
    settings = EvalSettings(mc_mode="label_word", max_new_tokens={"nlu": 4, "math": 1, "code": 1})
    scored = score_multiple_choice(model, tok, frame, settings, "cpu")
    # The tiny model names no label word: nothing is picked, everything is wrong.
    assert scored["prediction"].to_list() == [None] * 4 and not scored["correct"].any()
    # Outputs in the authors' format: the first label word decides; answer words are not piqa's.
    said = [" the correct answer is solution2", "solution1 or solution2", "answer1", "Solution1"]
    monkeypatch.setattr(evaluate, "generate", lambda *a, **k: [[o] for o in said])
    scored = score_multiple_choice(model, tok, frame, settings, "cpu")
    assert scored["prediction"].to_list() == [1, 0, None, None]
    assert scored["correct"].to_list() == [p == a for p, a in zip([1, 0, None, None], frame["answer"], strict=True)]
