"""Continual-learning metrics on hand-computed R matrices."""

import math

import pytest

from quantreplay.metrics import cl_metrics, family_matrix

# After stage 0 (base), 1 (nlu), 2 (math), 3 (code); columns nlu, math, code.
R = [
    [0.30, 0.00, 0.00],
    [0.80, 0.05, 0.00],
    [0.50, 0.60, 0.10],
    [0.40, 0.30, 0.70],
]


def test_forward_retention_bwt_forgetting_average():
    m = cl_metrics(R)
    assert m["forward"] == {1: 0.80, 2: 0.60, 3: 0.70}
    # Each stage's forward accuracy minus the untrained base's on the same family.
    assert m["gain"] == {1: pytest.approx(0.50), 2: pytest.approx(0.60), 3: pytest.approx(0.70)}
    assert m["retention"] == {"2/1": 0.50, "3/1": 0.40, "3/2": 0.30}
    assert m["retention_relative"]["3/1"] == pytest.approx(0.5)
    assert m["retention_relative"]["3/2"] == pytest.approx(0.5)
    # ((0.40 - 0.80) + (0.30 - 0.60)) / 2
    assert m["bwt"] == pytest.approx(-0.35)
    # nlu: max(0.30, 0.80, 0.50) - 0.40; math: max(0.00, 0.05, 0.60) - 0.30
    assert m["forgetting"] == {1: pytest.approx(0.40), 2: pytest.approx(0.30)}
    assert m["average_accuracy"] == pytest.approx((0.40 + 0.30 + 0.70) / 3)


def test_backward_transfer_is_positive_when_an_earlier_family_improves():
    m = cl_metrics([[0.0, 0.0], [0.9, 0.1], [0.95, 0.8]])
    # Improving on an earlier family is negative forgetting, as the definition gives.
    assert m["bwt"] == pytest.approx(0.05) and m["forgetting"] == {1: pytest.approx(-0.05)}


def test_relative_retention_of_an_unlearned_family_is_nan():
    m = cl_metrics([[0.0, 0.0], [0.0, 0.0], [0.0, 0.5]])
    assert math.isnan(m["retention_relative"]["2/1"])


def test_single_stage_has_no_bwt():
    m = cl_metrics([[0.2], [0.9]])
    assert m["forward"] == {1: 0.9} and math.isnan(m["bwt"]) and m["forgetting"] == {}


def test_family_matrix_averages_tasks_and_skips_untrained_families():
    families = {"boolq": "nlu", "piqa": "nlu", "gsm": "math", "extra": "code"}
    scores = [
        {"boolq": 0.5, "piqa": 0.7, "gsm": 0.0, "extra": 0.1},
        {"boolq": 0.9, "piqa": 0.7, "gsm": 0.2, "extra": 0},
    ]
    assert family_matrix(scores, families, ["nlu", "math"]) == [[0.6, 0.0], [0.8, 0.2]]
    with pytest.raises(ValueError, match="family 'vision'"):
        family_matrix(scores, families, ["nlu", "vision"])


def test_bad_matrix_shape():
    with pytest.raises(ValueError, match="T \\+ 1 rows"):
        cl_metrics([[0.1, 0.2], [0.3]])


def test_forgetting_table_and_cli(tmp_path, capsys):
    import json

    from quantreplay.metrics import forgetting_table, main, write_cell_metrics

    files = []
    for k, values in enumerate(([0.3, 0.0, 0.0], [0.8, 0.05, 0.0], [0.5, 0.6, 0.1], [0.4, 0.3, 0.7])):
        path = tmp_path / f"s{k}.json"
        tasks = {"a": {"family": "nlu", "value": values[0]}, "b": {"family": "math", "value": values[1]},
                 "c": {"family": "code", "value": values[2]}}  # fmt: skip
        path.write_text(json.dumps({"tasks": tasks}))
        files.append(str(path))
    cell = {"model": "toy", "precision": "nf4", "seed": "0", "buffer": "0"}
    out = tmp_path / "m.json"
    metrics = write_cell_metrics(score_files=files, stages=["nlu", "math", "code"], output=str(out), cell=cell)
    assert metrics["R"] == R and json.loads(out.read_text())["bwt"] == pytest.approx(-0.35)
    (row,) = forgetting_table([str(out)])
    assert row["drop_points"] == pytest.approx(40.0)
    main([str(out)])
    assert "40.0" in capsys.readouterr().out
