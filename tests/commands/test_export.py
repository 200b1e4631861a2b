"""gaf export: TorchScript and ONNX detectors that give the eager model's outputs (within 1e-5), for the
default GAF, channel attention, the plain detector, the transformer pyramid, the SGP pyramid with the
Trident head, the max-pooling pyramid and GAF's windowed context, padded and unpadded
windows, any batch size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gaf.cli import main
from gaf.config import to_dict
from gaf.engine.checkpoint import save_checkpoint
from gaf.engine.experiment import load_experiment
from gaf.engine.factory import build_detector
from gaf.engine.loading import load_detector
from gaf.export import OUTPUT_NAMES, ExportableDetector

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = [f"class{k}" for k in range(5)]
T = 128


def _checkpoint(path: Path, overrides: list[str]) -> Path:
    """A randomly initialised detector of the demo config (small), saved as gaf train saves one."""
    cfg = load_experiment("demo", [f"dataset.max_seq_len={T}", "model.detector.num_levels=4", *overrides])
    torch.manual_seed(0)
    model = build_detector(cfg, {"in_dim": 64, "num_classes": len(LABELS)}, pretrained=False)
    return save_checkpoint(path, {"model": model.state_dict(), "config": to_dict(cfg),
                                  "meta": {"in_dim": 64, "num_classes": len(LABELS), "labels": LABELS}})


def _inputs(batch: int, padded: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 64, T, generator=g)
    mask = torch.ones(batch, T, dtype=torch.bool)
    if padded:
        mask[-1, T - 37:] = False
    return x, mask


VARIANTS = {"default": [], "channel": ["model.gaf.attention=channel"], "plain": ["model.gaf.enabled=false"],
            "transformer": ["model.detector.backbone=transformer"],
            "sgp_trident": ["model.detector.backbone=sgp", "model.detector.boundary_head=trident"],
            "maxpool": ["model.detector.backbone=maxpool"],
            "window_context": ["model.gaf.context=window", "model.gaf.context_window=33"]}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_torchscript_matches_the_eager_model(variant: str, tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt", VARIANTS[variant])
    out = tmp_path / "detector.ts"
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    exported = torch.jit.load(str(out))
    eager = ExportableDetector(load_detector(ckpt)[0])
    for batch, padded, seed in ((1, False, 1), (3, True, 2), (2, False, 3)):
        x, mask = _inputs(batch, padded, seed)
        with torch.no_grad():
            want, got = eager(x, mask), exported(x, mask)
        for name, w, g in zip(OUTPUT_NAMES, want, got):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, msg=lambda m: f"{variant} {name}: {m}")
    if variant == "plain":
        assert float(want[-1].abs().max()) == 0.0  # no attention branch: λ output is zeros
    settings = json.loads((tmp_path / "detector.ts.json").read_text())
    assert settings["labels"] == LABELS and settings["window_steps"] == T and settings["in_dim"] == 64
    assert settings["step_seconds"] == pytest.approx(4 / 30) and settings["outputs"] == list(OUTPUT_NAMES)


@pytest.mark.parametrize("variant", ["default", "transformer", "sgp_trident", "maxpool", "window_context"])
def test_onnx_matches_the_eager_model_in_onnxruntime(variant: str, tmp_path: Path) -> None:
    import onnxruntime as ort  # in gaf's test extra: a missing one fails here
    ckpt = _checkpoint(tmp_path / "model.pt", VARIANTS[variant])
    out = tmp_path / "detector.onnx"
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    eager = ExportableDetector(load_detector(ckpt)[0])
    for batch, padded, seed in ((1, False, 4), (2, True, 5)):
        x, mask = _inputs(batch, padded, seed)
        with torch.no_grad():
            want = eager(x, mask)
        got = session.run(None, {"features": x.numpy(), "mask": mask.numpy()})
        for name, w, g in zip(OUTPUT_NAMES, want, got):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_export_refuses_what_it_cannot_export(tmp_path: Path, capsys) -> None:
    oracle = _checkpoint(tmp_path / "oracle.pt", ["model.gaf.oracle=true"])
    assert main(["export", "--ckpt", str(oracle), "--out", str(tmp_path / "o.ts")]) == 2
    assert "oracle" in capsys.readouterr().err and not (tmp_path / "o.ts").exists()
    assert main(["export", "--ckpt", str(oracle), "--out", str(oracle)]) == 2  # would overwrite its input
    assert oracle.stat().st_size > 0
