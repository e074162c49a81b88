"""The one settings mechanism: types, values and unknown keys rejected with the config key, defaults in the class."""

from dataclasses import dataclass

import pytest

from quantreplay.evaluate import EvalSettings
from quantreplay.intervals import AnalysisSettings
from quantreplay.quantize import QuantConfig
from quantreplay.settings import SettingError, Settings, one_of, parse, positive, setting
from quantreplay.train import LoraSettings, StageSettings


@dataclass(frozen=True)
class Sample(Settings):
    """A settings class as every module declares one."""

    steps: int = setting(3, positive, "positive")
    rate: float = setting(0.5, lambda v: 0 < v <= 1, "in (0, 1]")
    mode: str = setting("a", one_of("a", "b"), "a or b")
    cap: int | None = setting(None, positive, "positive or null")
    names: tuple[str, ...] = setting(("x",))
    budgets: dict = setting({"nlu": 1})

    def _check_fields(self) -> None:
        if self.cap is not None and self.cap < self.steps:
            raise SettingError("cap", f"must be at least steps={self.steps}, got {self.cap}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": 0}, "sample.steps: must be positive, got 0"),
        ({"steps": 2.5}, "sample.steps: must be an integer, got 2.5"),
        ({"steps": True}, "sample.steps: must be an integer, got True"),
        ({"rate": "0.1"}, "sample.rate: must be a finite number, got '0.1'"),
        ({"rate": float("nan")}, "sample.rate: must be a finite number, got nan"),
        ({"mode": "c"}, "sample.mode: must be a or b, got 'c'"),
        ({"cap": 0}, "sample.cap: must be positive or null, got 0"),
        ({"cap": 2}, "sample.cap: must be at least steps=3, got 2"),
        ({"names": [1]}, "sample.names: must be a list of strings, got [1]"),
        ({"stepz": 1}, "sample.stepz: unknown key; choose from steps, rate, mode, cap, names, budgets"),
    ],
)
def test_a_bad_value_names_its_config_key(values, message):
    with pytest.raises(SettingError) as info:
        parse(Sample, values, "sample")
    assert str(info.value) == message


def test_defaults_live_in_the_class_and_round_trip_through_a_config_section():
    sample = parse(Sample, {"names": ["y", "z"]}, "sample")
    assert sample.names == ("y", "z") and sample.steps == 3
    assert parse(Sample, sample.to_dict(), "sample") == sample
    # Mutable defaults are copies: one instance's dict is not another's.
    assert Sample().budgets is not Sample().budgets
    # Every settings class of the pipeline builds from an empty section, the config's defaults.
    for cls in (LoraSettings, StageSettings, QuantConfig, EvalSettings, AnalysisSettings):
        assert parse(cls, {}, "section") == cls() and parse(cls, cls().to_dict(), "section") == cls()
