"""ActivityNet-style fixed-length resizing: dataset.resize_length / resize_mode (gaf.data.features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make
from gaf.data.features import DatasetConfig, FeatureDataset, resample_average
from gaf.errors import ConfigError
from gaf.postprocess import item_steps_to_seconds


def resized(tmp_path, raw: list[float], length: int, mode: str | None) -> list[float]:
    """The one-channel features ``raw`` (T steps) of a 10 s video, as the dataset resizes them to ``length``
    (``mode`` None: ``dataset.resize_mode`` left at its default)."""
    videos = {"v": {"subset": "test", "duration": 10.0, "array": np.asarray(raw, dtype=np.float32)[:, None]}}
    modes = {} if mode is None else {"resize_mode": mode}
    cfg = make(tmp_path / f"{mode}_{len(raw)}_{length}", videos, dim=1, resize_length=length, max_seq_len=length,
               **modes)
    item = FeatureDataset(cfg, "test", training=False)[0]
    assert item["features"].shape == (1, length) and item["features"].dtype == torch.float32
    return item["features"][0].tolist()


def test_linear_mode_is_actionformers_interpolation(tmp_path):
    # output step i reads the input at src = (i + 0.5) * T / L - 0.5, clamped to [0, T - 1]
    ramp = [0.0, 1.0, 2.0, 3.0]
    # L = 2: src = 0.5, 2.5
    assert resized(tmp_path, ramp, 2, "linear") == pytest.approx([0.5, 2.5])
    # L = 8: src = 0.5 i - 0.25 = -0.25 (-> 0), 0.25, 0.75, ..., 2.75, 3.25 (-> 3)
    assert resized(tmp_path, ramp, 8, "linear") == pytest.approx([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    assert resized(tmp_path, ramp, 8, None) == resized(tmp_path, ramp, 8, "linear")  # the default


def test_average_mode_takes_the_mean_of_each_bin(tmp_path):
    # T = 6 -> L = 3: bins of 2 steps, the mean of each pair
    assert resized(tmp_path, [0.0, 2.0, 4.0, 10.0, 20.0, 30.0], 3, "average") == pytest.approx([1.0, 7.0, 25.0])
    # T = 4 -> L = 3: bins of 4/3 steps, [0, 4/3), [4/3, 8/3), [8/3, 4); partial steps weighted by their overlap
    x = [0.0, 3.0, 6.0, 12.0]
    expected = [(0.0 * 1 + 3.0 / 3) / (4 / 3),  # all of step 0, a third of step 1
                (3.0 * 2 / 3 + 6.0 * 2 / 3) / (4 / 3),  # two thirds of steps 1 and 2
                (6.0 / 3 + 12.0 * 1) / (4 / 3)]  # a third of step 2, all of step 3
    assert expected == pytest.approx([0.75, 4.5, 10.5])
    assert resized(tmp_path, x, 3, "average") == pytest.approx(expected)
    # L > T repeats the raw steps: T = 2 -> L = 4; a bin straddling two steps mixes them (T = 2 -> L = 3)
    assert resized(tmp_path, [5.0, 9.0], 4, "average") == pytest.approx([5.0, 5.0, 9.0, 9.0])
    assert resized(tmp_path, [5.0, 9.0], 3, "average") == pytest.approx([5.0, (5.0 / 3 + 9.0 / 3) / (2 / 3), 9.0])
    # L = T leaves the features as they are
    assert resized(tmp_path, x, 4, "average") == pytest.approx(x)


def test_average_resampling_keeps_the_mean_over_time():
    x = np.random.default_rng(0).normal(size=(3, 37)).astype(np.float32)
    for length in (1, 5, 36, 37, 100):
        y = resample_average(x, length)
        assert y.shape == (3, length) and y.dtype == np.float32
        assert np.allclose(y.mean(axis=1), x.mean(axis=1), atol=1e-5)
    assert np.allclose(resample_average(x, 1)[:, 0], x.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "average"])
def test_resized_ground_truth_is_in_steps_and_maps_back_to_seconds(tmp_path, mode):
    # 100 s resized to 10 steps: step_seconds 10, step 0 centred at 5 s; x steps <-> 5 + 10 x seconds
    videos = {"v": {"subset": "test", "steps": 37, "duration": 100.0, "segments": [(25.0, 75.0, "Jump")]}}
    cfg = make(tmp_path, videos, resize_length=10, resize_mode=mode, max_seq_len=10)
    item = FeatureDataset(cfg, "test", training=False)[0]
    meta = item["meta"]
    assert meta["step_seconds"] == pytest.approx(10.0) and meta["time_offset"] == pytest.approx(5.0)
    assert meta["num_steps"] == 10 and meta["duration"] == 100.0
    assert item["segments"].shape == (1, 2)
    assert item["segments"][0].tolist() == pytest.approx([25 / 10 - 0.5, 75 / 10 - 0.5])
    seconds = item_steps_to_seconds(item["segments"], meta["step_seconds"], meta["time_offset"])
    assert seconds[0].tolist() == pytest.approx([25.0, 75.0])


def test_a_bad_resize_mode_is_a_config_error(tmp_path):
    videos = {"v": {"subset": "test", "steps": 4, "duration": 10.0}}
    with pytest.raises(ConfigError, match=r"dataset\.resize_mode.*'linear', 'average'.*'area'"):
        make(tmp_path / "yaml", videos, resize_length=8, resize_mode="area")  # as a config file gives it
    with pytest.raises(ConfigError, match=r"dataset\.resize_mode.*'linear', 'average'.*'nearest'"):
        DatasetConfig(annotation_file="a.json", feature_dir="f", resize_length=8, resize_mode="nearest")
    with pytest.raises(ConfigError, match=r"dataset\.resize_mode: average needs dataset\.resize_length"):
        DatasetConfig(annotation_file="a.json", feature_dir="f", resize_mode="average")
