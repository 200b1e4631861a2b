"""Exporting a trained detector for deployment (``gaf export``): TorchScript or ONNX.

The exported graph is the network only — features in, raw outputs out — for one window of the
checkpoint's ``dataset.max_seq_len`` steps (``T``), the shape gaf itself evaluates by default (longer videos are
cut into overlapping windows, shorter ones padded). The graph's ``T`` is fixed: gaf's own whole-video inference
(``dataset.eval_max_seq_len`` above ``max_seq_len``) does not carry over, so a consumer cuts videos into windows
of ``T`` steps. Inputs and outputs, in order:

* ``features`` (B, C, T) float32 and ``mask`` (B, T) bool (True on real steps, False on padding);
* ``cls_logits`` (B, P, K): class logits of each of the ``P = Σ_l ceil(T / 2^l)`` pyramid points;
* ``offsets`` (B, P, 2): distances in steps from each point back to the start and on to the end (≥ 0);
* ``quality`` (B, P): quality logits; ``points`` (P,): each point's position in steps;
* ``point_mask`` (B, P) bool: points on real steps; ``attention`` (B, T): λ per step (zeros without GAF).

Decoding, as gaf does it (:meth:`gaf.models.gaf_detector.GAFDetector.predict_from_outputs` and
:func:`gaf.engine.evaluate.postprocess_video`): score = sigmoid(cls_logits) · sigmoid(quality)
(``model.detector.score``: ``product``; ``sqrt`` takes its square root, ``cls`` drops the quality),
zero on masked points; keep the best ``eval.pre_nms_top_k`` (point, class) pairs above
``eval.score_threshold``; segment = [point − left, point + right] clamped to [0, valid steps];
seconds = steps · ``feature_stride / fps`` + the window's start; then per class Gaussian Soft-NMS
(``eval.nms_sigma``) and the best ``eval.max_per_video``; with ``eval.voting_iou`` > 0, each kept segment's
boundaries then become the score · tIoU weighted mean of the same class's candidates overlapping it by at
least that tIoU (:func:`gaf.postprocess.vote_segments`). A class-agnostic model (``class_agnostic``: one
class, ``"action"``) gives proposals; gaf classes them with video-level class scores: each proposal becomes
one detection per top-``video_score_topk`` class of its video, scored ``p · s_c`` (``video_fusion``:
``afsd``) or ``sqrt(p · s_c)`` (``actionformer``) (:func:`gaf.engine.video_scores.fuse_video_scores`).
``gaf export`` writes these numbers beside the model (``FILE.json``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gaf.errors import ConfigError

__all__ = ["ExportableDetector", "export_detector", "FORMATS", "OUTPUT_NAMES"]

FORMATS = ("torchscript", "onnx")
OUTPUT_NAMES = ("cls_logits", "offsets", "quality", "points", "point_mask", "attention")


class ExportableDetector(nn.Module):
    """A :class:`gaf.models.gaf_detector.GAFDetector` as a function of two tensors returning a tuple of tensors
    (what tracing and ONNX need): the outputs of :data:`OUTPUT_NAMES`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if getattr(model, "needs_ground_truth", False):
            raise ConfigError("an oracle model (model.gaf.oracle: λ is the ground-truth action mask) cannot be "
                              "exported: it needs the ground truth at test time")
        self.model = model.eval()

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from gaf.models.gaf import step_attention

        out = self.model(features, mask)
        att = out["attention"]
        attention = step_attention(att) if att is not None else features.new_zeros(mask.shape)
        return (out["cls_logits"], out["offsets"], out["quality"], out["points"], out["point_mask"],
                attention * mask.to(attention.dtype))


def _example(in_dim: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A traced example with padding (so the masked code paths are the ones recorded: they give the same
    results on unpadded input)."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(1, in_dim, length, generator=g)
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, length - max(1, length // 8):] = False
    return features, mask


def decoding_settings(cfg: Any, labels: list[str], in_dim: int) -> dict[str, Any]:
    """What a consumer needs to turn the raw outputs into detections in seconds (module docstring)."""
    from gaf.engine.video_scores import DEFAULT_TOPK

    ds, ev = cfg.dataset, cfg.eval
    fps = float(ds.fps) if ds.fps is not None else 30.0
    return {"inputs": {"features": "(B, C, T) float32", "mask": "(B, T) bool"}, "outputs": list(OUTPUT_NAMES),
            "window_steps": int(ds.max_seq_len), "in_dim": in_dim, "labels": labels,
            "score": cfg.model.detector.score, "pre_nms_top_k": ev.pre_nms_top_k,
            "score_threshold": ev.score_threshold, "nms": ev.nms, "nms_sigma": ev.nms_sigma, "nms_iou": ev.nms_iou,
            "min_score": ev.min_score, "max_per_video": ev.max_per_video, "voting_iou": ev.voting_iou,
            "class_agnostic_nms": ev.class_agnostic_nms, "class_agnostic": bool(ds.class_agnostic),
            "video_fusion": ev.video_fusion,
            "video_score_topk": ev.video_score_topk or DEFAULT_TOPK[ev.video_fusion],
            "fps": fps, "feature_stride": int(ds.feature_stride), "num_frames": int(ds.num_frames),
            "step_seconds": ds.feature_stride / fps,
            "step_centre_seconds": "(t * feature_stride + num_frames / 2) / fps",
            "window_overlap": ds.eval_window_overlap}


def export_detector(ckpt: str | os.PathLike[str], out: str | os.PathLike[str], *, fmt: str = "torchscript"
                    ) -> tuple[Path, Path]:
    """Write the detector of ``ckpt`` as ``fmt`` (torchscript | onnx) to ``out`` and its decoding settings to
    ``out`` + ``.json``; returns both paths. The model reads windows of the checkpoint's
    ``dataset.max_seq_len`` steps (module docstring)."""
    from gaf.engine.checkpoint import load_checkpoint
    from gaf.engine.loading import load_detector
    from gaf.io import atomic_write_bytes, atomic_write_json

    if fmt not in FORMATS:
        raise ConfigError(f"--format: one of {', '.join(FORMATS)}, got {fmt!r}")
    state = load_checkpoint(ckpt)
    if (state.get("config") or {}).get("task") == "recognition":
        raise ConfigError(f"{ckpt}: a recognition checkpoint; gaf export exports temporal detectors")
    if (state.get("config") or {}).get("e2e") is not None:
        raise ConfigError(f"{ckpt}: an end-to-end (I3D + detector) checkpoint; gaf export exports detectors on "
                          "features (export the I3D separately: gaf weights)")
    meta = state.get("meta") or {}
    model, cfg = load_detector(ckpt, device="cpu", state=state)  # the checkpoint is read once
    del state
    wrapper = ExportableDetector(model)
    in_dim, length = int(meta["in_dim"]), int(cfg.dataset.max_seq_len)
    features, mask = _example(in_dim, length)
    out = Path(out)
    import io

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "torchscript":
            traced = torch.jit.trace(wrapper, (features, mask), check_trace=False)
            torch.jit.save(traced, buffer)
        else:
            _onnx_export(wrapper, (features, mask), buffer)
    path = atomic_write_bytes(out, buffer.getvalue())
    settings = decoding_settings(cfg, [str(x) for x in meta.get("labels") or []], in_dim)
    settings.update({"format": fmt, "checkpoint": str(ckpt)})
    side = atomic_write_json(out.with_name(out.name + ".json"), settings)
    return path, side


def _onnx_export(module: nn.Module, args: tuple[torch.Tensor, ...], buffer: Any) -> None:
    """ONNX through torch's TorchScript-based exporter (needs the ``onnx`` package: ``pip install
    'gaf[export]'``)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("--format onnx needs the onnx package: pip install 'gaf[export]' (or pip install onnx)"
                          ) from None
    # The TorchScript-based exporter (dynamo=False): it needs only onnx and is exact (tests/commands/test_export.py);
    # the torch.export-based default would add onnxscript and its dependencies to gaf[export].
    warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
    torch.onnx.export(module, args, buffer, input_names=["features", "mask"], output_names=list(OUTPUT_NAMES),
                      opset_version=17, dynamic_axes={"features": {0: "batch"}, "mask": {0: "batch"}},
                      dynamo=False)

