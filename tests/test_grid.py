"""The grid: cells, the path table every rule and file list uses, checkpoint names, the figure list."""

import re

import pytest

from quantreplay import grid
from quantreplay.plots import _buffer_order

CONFIG = {
    "models": {"toy": {}},
    "precisions": ["fp16", "nf4"],
    "seeds": [0, 1],
    "buffers": [0, 0.001],
    "buffer_counts": [5],
    "stages": ["nlu", "math", "code"],
    "analysis": {"reference_precision": None},
}


def test_every_path_pattern_is_formatted_from_the_table():
    assert grid.path("data", task="boolq", split="test") == "results/data/boolq/test.parquet"
    assert (
        grid.pattern("adapter", checkpoint="first") == "results/train/{model}/{precision}/seed{seed}/{stage}/adapter"
    )
    later = grid.pattern("train_report", checkpoint="later")
    assert later == "results/train/{model}/{precision}/seed{seed}/buf{buffer}/{stage}/train.json"
    assert grid.pattern("r_matrix", ext="svg").endswith("seed{seed}/buf{buffer}.svg")
    # Logs mirror outputs under logs/.
    for key in [k for k in grid.PATHS if k.endswith("_log")]:
        assert grid.PATHS[key].startswith("logs/") and grid.PATHS[key].endswith(".log")


def test_checkpoint_names_point_at_their_adapters():
    assert grid.checkpoint_name(CONFIG) == "base"
    assert grid.checkpoint_name(CONFIG, seed=1, buffer="0.001", stage="nlu") == "seed1/nlu"
    assert grid.checkpoint_name(CONFIG, seed=1, buffer="0.001", stage="math") == "seed1/buf0.001/math"
    assert grid.checkpoint_adapter("toy", "nf4", "base") is None
    assert (
        grid.checkpoint_adapter("toy", "nf4", "seed1/buf0.001/math")
        == "results/train/toy/nf4/seed1/buf0.001/math/adapter"
    )
    regex = re.compile(f"^(?:{grid.checkpoint_regex(CONFIG['stages'])})$")
    for name in ("base", "seed0/nlu", "seed12/bufn5/code", "seed0/buf0.001/math"):
        assert regex.match(name), name
    for name in ("seed0/vision", "seed0/buf0/x/math", "nlu", "seedx/nlu"):
        assert not regex.match(name), name


def test_the_grid_lists_each_job_once():
    buffers = grid.buffer_labels(CONFIG)
    assert buffers == ["0", "0.001", "n5"]
    cells = grid.cells(CONFIG)
    assert len(cells) == 2 * 2 * 3 and cells[0] == {"model": "toy", "precision": "fp16", "buffer": "0", "seed": "0"}
    train = grid.train_outputs(CONFIG)
    # Stage 1 once per precision and seed, the two later stages per buffer.
    assert len(train) == len(set(train)) == 2 * 2 * (1 + 3 * 2)
    first = grid.first_stage_reports(CONFIG)
    assert first == [p for p in train if "/buf" not in p] and len(first) == 4
    scores = grid.eval_outputs(CONFIG)
    assert len(scores) == 2 * (1 + 2 * (1 + 3 * 2)) and scores[0] == "results/eval/toy/fp16/base/scores.json"
    assert grid.eval_outputs(CONFIG, "predictions")[0] == "results/eval/toy/fp16/base/predictions.parquet"


def test_a_cells_checkpoints_run_from_the_base_through_its_stages():
    files = grid.cell_checkpoint_files(CONFIG, "scores", model="toy", precision="nf4", seed="1", buffer="n5")
    assert files == [
        "results/eval/toy/nf4/base/scores.json",
        "results/eval/toy/nf4/seed1/nlu/scores.json",
        "results/eval/toy/nf4/seed1/bufn5/math/scores.json",
        "results/eval/toy/nf4/seed1/bufn5/code/scores.json",
    ]
    everything = grid.grid_checkpoint_files(CONFIG, "predictions")
    assert len(everything) == len(grid.cells(CONFIG)) * 4 and everything[4:8] == [
        f.replace("scores.json", "predictions.parquet")
        for f in grid.cell_checkpoint_files(CONFIG, "scores", **grid.cells(CONFIG)[1])
    ]
    assert grid.metrics_outputs(CONFIG)[1] == "results/metrics/toy/fp16/seed0/buf0.001.json"


def test_reference_precision():
    assert grid.reference_precision(["fp16", "int8", "nf4"], None) == "fp16"
    assert grid.reference_precision(["bf16", "fp32", "nf4"], None) == "fp32"
    assert grid.reference_precision(["int8", "nf4"], None) is None
    assert grid.reference_precision(["bf16", "nf4"], "nf4") == "nf4"
    with pytest.raises(ValueError, match="'fp32' is not one of the precisions"):
        grid.reference_precision(["fp16", "nf4"], "fp32")
    assert grid.analysis_params(CONFIG) == {"reference_precision": "fp16"}


def test_figure_list_follows_the_stages_and_buffers_sort_by_value():
    config = {"stages": ["nlu", "math"], "precisions": ["fp16", "nf4"], "analysis": {"reference_precision": None}}
    assert "heatmap_retention" in grid.plot_names(config) and "difference_by_buffer" in grid.plot_names(config)
    assert "heatmap_retention" not in grid.plot_names({**config, "stages": ["nlu"]})
    assert "difference_by_buffer" not in grid.plot_names({**config, "precisions": ["int8", "nf4"]})
    # The figure that answers the question comes first; the report keeps this order.
    assert grid.figure_outputs(config, "svg")[0] == "results/plots/retention_by_buffer.svg"
    assert grid.plot_names({**config, "stages": ["nlu"]})[0] == "heatmap_final_forward"
    assert _buffer_order(["0.1", "0", "n5", "0.001", "1", "n2"]) == ["0", "0.001", "0.1", "1", "n2", "n5"]


def test_params_are_canonical():
    assert list(grid.canonical({"b": 1, "a": {"d": 2, "c": 3}})) == ["a", "b"]
    config = {**CONFIG, "lora": {"r": 8}, "quantization": {}, "evaluation": {"seed": 0},
              "training": {"lr": 1.0, "stages": {"math": {"lr": 0.5}}}}  # fmt: skip
    assert grid.train_params(config, "math")["stage"] == {"lr": 0.5}
    assert grid.train_params(config, "nlu")["stage"] == {"lr": 1.0}
    assert grid.eval_params(config) == {"evaluation": {"seed": 0}, "quantization": {}}
