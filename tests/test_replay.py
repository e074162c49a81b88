"""Replay buffers: sizes, per-task stratification, determinism, and only training rows in a mix."""

import polars as pl
import pytest

from quantreplay.replay import Buffer, mix_stage, sample_replay


def _task(name: str, n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"{name}-train-{i}" for i in range(n)], "task": name, "prompt": "p", "target": "t"})


@pytest.mark.parametrize(
    ("buffer", "n", "size"),
    [
        (Buffer(fraction=0), 1000, 0),
        (Buffer(fraction=0.001), 1000, 1),
        (Buffer(fraction=0.001), 10, 1),  # max(1, round(0.01)): a non-zero buffer is never empty
        (Buffer(fraction=0.005), 1000, 5),
        (Buffer(fraction=0.2), 1000, 200),
        (Buffer(fraction=1), 37, 37),
        (Buffer(count=5), 1000, 5),
        (Buffer(count=50), 20, 20),
    ],
)
def test_buffer_size(buffer, n, size):
    assert buffer.size(n) == size


@pytest.mark.parametrize("label", ["0", "0.001", "0.005", "0.1", "0.2", "1", "1e-05", "n5"])
def test_labels_round_trip(label):
    assert Buffer.parse(label).label == label


def test_fraction_labels_are_lossless():
    for b in (0, 0.0, 0.001, 0.1, 0.2, 1, 1.0, 0.125, 1e-5):
        assert float(Buffer(fraction=b).label) == b
    assert Buffer(fraction=0.0).label == "0" and Buffer(fraction=1.0).label == "1"


def test_bad_buffers_name_the_value():
    with pytest.raises(ValueError, match="1.5"):
        Buffer(fraction=1.5)
    with pytest.raises(ValueError, match="'ten'"):
        Buffer.parse("ten")
    with pytest.raises(ValueError, match="count"):
        Buffer(count=0)


def test_mix_is_stratified_seeded_and_only_from_its_inputs():
    new = [_task("math", 300)]
    earlier = [_task("boolq", 1000), _task("piqa", 500)]
    mix = mix_stage(new=new, earlier=earlier, buffer=Buffer(fraction=0.05), seed=3)
    counts = dict(mix.group_by("task").len().iter_rows())
    assert counts == {"math": 300, "boolq": 50, "piqa": 25}
    assert mix.filter(pl.col("replay"))["task"].to_list().count("boolq") == 50
    assert not mix.filter(~pl.col("replay"))["task"].is_in(["boolq", "piqa"]).any()
    # Every row comes from the given (training) frames, none twice.
    given = set(pl.concat(new + earlier)["id"])
    assert set(mix["id"]) <= given and mix["id"].n_unique() == mix.height
    # Shuffled together: replayed rows are not all at one end.
    positions = [i for i, r in enumerate(mix["replay"]) if r]
    assert positions[0] < mix.height / 4 and positions[-1] > 3 * mix.height / 4
    again = mix_stage(new=new, earlier=earlier, buffer=Buffer(fraction=0.05), seed=3)
    assert again.equals(mix)
    other = mix_stage(new=new, earlier=earlier, buffer=Buffer(fraction=0.05), seed=4)
    assert set(other.filter(pl.col("replay"))["id"]) != set(mix.filter(pl.col("replay"))["id"])


def test_zero_buffer_gives_only_new_data():
    mix = mix_stage(new=[_task("math", 30)], earlier=[_task("boolq", 1000)], buffer=Buffer(fraction=0), seed=0)
    assert mix.height == 30 and not mix["replay"].any()


def test_same_task_same_buffer_replays_the_same_examples_at_every_stage():
    boolq = _task("boolq", 1000)
    a = sample_replay(boolq, buffer=Buffer(fraction=0.01), seed=0)
    b = sample_replay(boolq, buffer=Buffer(fraction=0.01), seed=0)
    assert a.equals(b) and a.height == 10


def test_absolute_count_buffer():
    mix = mix_stage(
        new=[_task("code", 10)], earlier=[_task("boolq", 100), _task("math", 3)], buffer=Buffer(count=5), seed=0
    )
    assert dict(mix.filter(pl.col("replay")).group_by("task").len().iter_rows()) == {"boolq": 5, "math": 3}


@pytest.mark.parametrize(("fraction", "n"), [(0.1, 40), (0.2, 1000), (0.001, 1000), (0.001, 999), (0.29, 100)])
def test_head_replay_takes_the_first_floor_b_n_rows(fraction, n):
    # The authors' `dataset[:int(n * frac)]`: the first rows in file order, floored (0.1 % of 999 rows is none;
    # 0.29 * 100 is 28.999... in floating point, and their code takes 28), whatever the seed.
    frame = _task("boolq", n)
    picked = sample_replay(frame, buffer=Buffer(fraction=fraction), seed=0, draw="head")
    assert picked["id"].to_list() == [f"boolq-train-{i}" for i in range(int(n * fraction))]
    assert sample_replay(frame, buffer=Buffer(fraction=fraction), seed=7, draw="head").equals(picked)
    assert sample_replay(frame, buffer=Buffer(count=3), seed=0, draw="head")["id"].to_list() == [
        f"boolq-train-{i}" for i in range(3)
    ]


def test_head_mix_replays_each_earlier_task_head_and_shuffles_with_the_seed():
    new, earlier = [_task("math", 30)], [_task("boolq", 100), _task("piqa", 55)]
    mix = mix_stage(new=new, earlier=earlier, buffer=Buffer(fraction=0.1), seed=0, draw="head")
    replayed = mix.filter(pl.col("replay"))
    assert sorted(replayed["id"]) == sorted([f"boolq-train-{i}" for i in range(10)] + [f"piqa-train-{i}" for i in
                                                                                       range(5)])  # fmt: skip
    uniform = mix_stage(new=new, earlier=earlier, buffer=Buffer(fraction=0.1), seed=0)
    # 5.5 rounds to 6 in the uniform draw and floors to 5 in the head draw.
    assert uniform.filter(pl.col("replay")).height == 16 and set(uniform["id"]) != set(mix["id"])


def test_replay_settings_name_the_key():
    from quantreplay.replay import ReplaySettings
    from quantreplay.settings import SettingError, parse

    assert parse(ReplaySettings, {}, "replay").draw == "uniform"
    with pytest.raises(SettingError, match=r"^replay\.draw: must be one of uniform, head, got 'first'$"):
        parse(ReplaySettings, {"draw": "first"}, "replay")


def test_write_mix_draws_as_the_settings_say(tmp_path):
    from quantreplay.io import write_parquet
    from quantreplay.manifest import write_manifest
    from quantreplay.replay import write_mix

    paths = {}
    for name, n in (("math", 20), ("boolq", 50)):
        paths[name] = str(tmp_path / f"{name}.parquet")
        write_parquet(_task(name, n), paths[name])
        write_manifest(paths[name])
    out = tmp_path / "mix.parquet"
    mixed = write_mix(new=[paths["math"]], earlier=[paths["boolq"]], buffer="0.1", seed=3, output=str(out),
                      settings={"draw": "head"}, log=lambda s: None)  # fmt: skip
    assert sorted(mixed.filter(pl.col("replay"))["id"]) == sorted(f"boolq-train-{i}" for i in range(5))
    assert pl.read_parquet(out).equals(mixed)
