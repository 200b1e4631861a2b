"""Checkpoints are written atomically, load without pickle, and explain mismatches."""

from __future__ import annotations

import os

import pytest
import torch

from gaf.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from gaf.io import atomic_write_text
from gaf.errors import CheckpointError


def test_save_and_load_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "a.pt", {"model": model.state_dict(), "epoch": 3, "config": {"x": [1, 2]}})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["config"] == {"x": [1, 2]}
    fresh = torch.nn.Linear(3, 2)
    load_model_state(fresh, state["model"], str(path))
    assert torch.equal(fresh.weight, model.weight)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1})

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["latest.pt"]


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "gaf-checkpoint-v1", "model": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt: cannot read checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_or_empty_files_name_the_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_reported(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", {"model": {"w": torch.randn(1000)}, "epoch": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.pt: cannot read checkpoint"):
        load_checkpoint(path)


def test_foreign_state_dict_is_not_a_gaf_checkpoint(tmp_path):
    path = tmp_path / "raw.pt"
    torch.save({"weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="not a gaf checkpoint"):
        load_checkpoint(path)


def test_mismatched_model_lists_differing_keys():
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    dst = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2), torch.nn.ReLU())
    state = src.state_dict()
    state["extra.weight"] = torch.ones(1)
    with pytest.raises(CheckpointError) as info:
        load_model_state(dst, state, "ckpt.pt")
    msg = str(info.value)
    assert "ckpt.pt" in msg and "unexpected keys: extra.weight" in msg
    assert "0.weight: checkpoint (4, 3) vs model (5, 3)" in msg


def test_atomic_text_write_replaces_content(tmp_path):
    p = tmp_path / "out" / "x.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
