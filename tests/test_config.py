"""gaf.config: typed configs from YAML with errors that name the key path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from gaf.config import apply_overrides, from_dict, load_yaml, to_dict
from gaf.errors import ConfigError


@dataclass
class Inner:
    dim: int = 8
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    path: str
    inner: Inner = field(default_factory=Inner)
    tious: list[float] = field(default_factory=lambda: [0.5])
    channels: list[int] | None = None
    flag: bool = False


def test_from_dict_builds_nested_dataclasses_with_defaults():
    cfg = from_dict(Outer, {"path": "x", "inner": {"dim": 3}, "tious": [0.3, 1]})
    assert cfg == Outer(path="x", inner=Inner(dim=3), tious=[0.3, 1.0])
    assert isinstance(cfg.tious[1], float)


def test_round_trip_through_plain_data():
    cfg = Outer(path="p", inner=Inner(2, 0.1, "b"), channels=[0, 4], flag=True)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"path": "x", "inner": {"dims": 3}}, "cfg.inner: unknown key(s) 'dims'; valid keys: dim, mode, rate"),
        ({"path": "x", "inner": {"dim": "big"}}, "cfg.inner.dim: expected an integer, got 'big'"),
        ({"path": "x", "inner": {"mode": "c"}}, "cfg.inner.mode: must be one of 'a', 'b', got 'c'"),
        ({"path": "x", "flag": "yes"}, "cfg.flag: expected true or false"),
        ({"path": "x", "tious": 0.5}, "cfg.tious: expected a list"),
        ({"path": "x", "tious": [0.5, "a"]}, "cfg.tious[1]: expected a number"),
        ({}, "cfg.path: required field is missing"),
        ({"path": "x", "inner": 3}, "cfg.inner: expected a section"),
    ],
)
def test_bad_values_name_the_key_path(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data, where="cfg")
    assert message in str(info.value)


def test_overrides_parse_yaml_values_and_create_sections():
    data = {"inner": {"dim": 1}}
    apply_overrides(data, ["inner.dim=4", "inner.rate=1e-3", "tious=[0.3,0.7]", "flag=true", "path=/a=b"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.dim == 4 and cfg.inner.rate == pytest.approx(1e-3)
    assert cfg.tious == [0.3, 0.7] and cfg.flag is True and cfg.path == "/a=b"


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.epochs"])


def test_load_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+ invalid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(tmp_path / "list.yaml")
