"""End-to-end detection: I3D on frames → Mixed_4f / Mixed_5c maps → GAF + detector (paper §IV-B).

Pipeline::

    frames (B, 3, L, H, W) in [-1, 1]
      └─ I3D.extract_endpoints ─▶ Mixed_4f (B, 832, L/4, H/16, W/16)   Mixed_5c (B, 1024, L/8, H/32, W/32)
           spatial mean ─▶ (B, 832, T')                               (B, 1024, T'/2)
                                                                      linear upsampling in time ─▶ (B, 1024, T')
      merge: "concat"  ─▶ F (B, 1856, T')
             "average" ─▶ (P4(Mixed_4f) + P5(Mixed_5c)) / 2, P = 1×1 conv to ``proj_dim`` ─▶ F (B, proj_dim, T')
      └─ GAFDetector (gaf.models.gaf_detector) on F, with the paper's two-stage losses

``T' = ceil(L / 4)``: one feature step per 4 frames (Mixed_4f's temporal
stride; Mixed_5c's is 8). A 256-frame clip of 96×96 crops (the paper's
setting) gives ``T' = 64`` steps; ``segments`` handed to :meth:`E2EDetector.losses`
are in these steps, relative to the clip (frame ``f`` of the clip lies at
step ``f / 4``).

The model keeps :class:`~gaf.models.gaf_detector.GAFDetector`'s interface with frames
in place of features, so a loop written for the detector drives it:
``forward(frames, mask)``, ``losses(frames, mask, segments, labels, *, stage,
progress)``, ``stage_parameters(stage)``, ``predict_from_outputs``,
``fuse_outputs``, ``predict``. ``mask (B, T')`` marks valid steps (None: all).

Stages (Fig. 2):

* ``"frame"``: Frame-GAF's ``L_CVAE`` on the backbone's features, computed
  without gradients with the backbone in eval mode (its batch-norm statistics
  stay put); only Frame-GAF learns.
* ``"segment"``: the detector losses (``L_ai + L_nai + L_clf + L_R``);
  gradients flow through the merge into the backbone, which belongs to this
  stage (trained end to end) unless ``freeze_backbone``.

Training and evaluation
-----------------------
``gaf train configs/thumos14_e2e.yaml`` trains it with the usual two-stage
engine on frame clips (:class:`gaf.data.e2e_frames.FrameClipDataset`: 256-frame
clips decoded at 25 fps, 96×96 crops, instances in the clip's 4-frame
steps); :mod:`gaf.engine.factory` picks this model and that dataset when the
config has ``e2e`` and ``frames`` sections instead of ``model`` and
``dataset``. ``gaf eval`` and ``gaf detect`` take its checkpoints (``gaf
detect`` then decodes frames itself; no feature extraction). Tested at tiny
sizes in ``tests/models/test_models_e2e.py`` and ``tests/engine/test_engine_e2e.py``; on
a CPU it is slow (use a GPU for THUMOS14).

Example
-------
>>> import torch
>>> from gaf.models.e2e import E2EConfig, E2EDetector
>>> model = E2EDetector(E2EConfig(), num_classes=3, clip_len=32)   # doctest: +SKIP
>>> out = model(torch.randn(1, 3, 32, 32, 32))                      # doctest: +SKIP
>>> out["cls_logits"].shape  # (B, P, K): P points of the pyramid over T' = 8 steps  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from gaf.config import AT_LEAST_ONE, ranged
from gaf.errors import ConfigError
from gaf.models.gaf_detector import GAFDetector, ModelConfig, build_model
from gaf.models.blocks import BackboneHost, stage_parameters

__all__ = ["E2EConfig", "E2EDetector", "build_e2e_detector", "ENDPOINTS", "FRAMES_PER_STEP"]

ENDPOINTS = ("Mixed_4f", "Mixed_5c")
ENDPOINT_CHANNELS = {"Mixed_4f": 832, "Mixed_5c": 1024}
FRAMES_PER_STEP = 4  # Mixed_4f's temporal stride: one feature step per 4 input frames


@dataclass
class E2EConfig:
    """Backbone and merge settings of the end-to-end detector; ``detector`` is the GAF + detector config."""

    stream: Literal["rgb", "flow"] = "rgb"  # I3D input: 3 (RGB) or 2 (flow) channels
    backbone_weights: str | None = None  # I3D state dict (.pt); None = random init
    freeze_backbone: bool = False  # True: the backbone is a fixed feature extractor
    freeze_bn: bool = True  # keep the backbone's BatchNorm statistics fixed while fine-tuning
    merge: Literal["concat", "average"] = "concat"  # how Mixed_4f and Mixed_5c become F
    proj_dim: int = ranged(512, AT_LEAST_ONE)  # merge "average": width of the two 1×1 projections
    detector: ModelConfig = field(default_factory=ModelConfig)


class E2EDetector(BackboneHost):
    """I3D (``Mixed_4f`` + ``Mixed_5c``) → merged ``F (B, C, T')`` → :class:`GAFDetector`.

    ``num_classes`` (K) action classes; ``clip_len``: frames per training
    clip, which sets the detector's ``max_seq_len = ceil(clip_len / 4)``
    steps.
    """

    def __init__(self, cfg: E2EConfig, num_classes: int, clip_len: int, *, pretrained: bool = True) -> None:
        super().__init__()
        from gaf.models.backbones.i3d import build_i3d

        if clip_len < FRAMES_PER_STEP:
            raise ConfigError(f"E2EDetector: clip_len must be >= {FRAMES_PER_STEP} frames, got {clip_len}")
        if cfg.merge == "average" and cfg.proj_dim < 1:
            raise ConfigError(f"model.proj_dim: must be >= 1 for merge 'average', got {cfg.proj_dim}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.clip_len = clip_len
        # pretrained=False: the caller loads a whole checkpoint next (no backbone file needed).
        self.backbone = build_i3d(cfg.stream, cfg.backbone_weights if pretrained else None,
                                  final_endpoint="Mixed_5c", warn_untrained=pretrained)
        if cfg.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        if cfg.merge == "average":
            self.proj = nn.ModuleDict({name: nn.Conv1d(ENDPOINT_CHANNELS[name], cfg.proj_dim, 1)
                                       for name in ENDPOINTS})
            self.feature_dim = cfg.proj_dim
        else:
            self.proj = None
            self.feature_dim = sum(ENDPOINT_CHANNELS.values())
        self.max_seq_len = math.ceil(clip_len / FRAMES_PER_STEP)
        self.detector: GAFDetector = build_model(cfg.detector, self.feature_dim, num_classes, self.max_seq_len)

    # ------------------------------------------------------------------ features
    @staticmethod
    def num_steps(num_frames: int) -> int:
        """Feature steps ``T'`` of a clip of ``num_frames`` frames (Mixed_4f's length)."""
        return math.ceil(num_frames / FRAMES_PER_STEP)

    def _merge(self, maps: dict[str, torch.Tensor]) -> torch.Tensor:
        f4 = maps["Mixed_4f"].mean(dim=(3, 4))  # (B, 832, T')
        f5 = maps["Mixed_5c"].mean(dim=(3, 4))  # (B, 1024, ceil(T' / 2))
        if f5.shape[-1] != f4.shape[-1]:
            f5 = F.interpolate(f5, size=f4.shape[-1], mode="linear", align_corners=False)
        if self.proj is None:
            return torch.cat([f4, f5], 1)
        return 0.5 * (self.proj["Mixed_4f"](f4) + self.proj["Mixed_5c"](f5))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, C_in, L, H, W)`` in [-1, 1] → merged features ``F (B, feature_dim, ceil(L / 4))``.

        Gradients reach the backbone unless it is frozen (then it runs in
        eval mode without gradients).
        """
        if frames.dim() != 5:
            raise ValueError(f"E2EDetector takes frames (B, C, L, H, W), got shape {tuple(frames.shape)}")
        if self.cfg.freeze_backbone:
            self.backbone.eval()
            with torch.no_grad():
                maps = self.backbone.extract_endpoints(frames, ENDPOINTS)
        else:
            maps = self.backbone.extract_endpoints(frames, ENDPOINTS)
        return self._merge(maps)

    def _mask(self, feats: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return torch.ones(feats.shape[0], feats.shape[-1], dtype=torch.bool, device=feats.device)
        if mask.shape != (feats.shape[0], feats.shape[-1]):
            raise ValueError(f"mask must be (B, T') = {(feats.shape[0], feats.shape[-1])} feature steps, "
                             f"got {tuple(mask.shape)}")
        return mask.bool()

    # ------------------------------------------------------------------ forward
    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Frames ``(B, C_in, L, H, W)`` → :meth:`GAFDetector.forward`'s outputs over ``T' = ceil(L / 4)`` steps."""
        feats = self.features(frames)
        return self.detector(feats, self._mask(feats, mask))

    # ------------------------------------------------------------------ training
    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """``"frame"``: Frame-GAF's; ``"segment"``: the rest (backbone included unless frozen). No overlap."""
        frozen = list(self.backbone.parameters()) if self.cfg.freeze_backbone else []
        return stage_parameters(self, stage, self.detector.stage_parameters("frame"), frozen)

    def losses(self, frames: torch.Tensor, mask: torch.Tensor | None, segments: Sequence[torch.Tensor],
               labels: Sequence[torch.Tensor], *, stage: str, progress: float = 0.0) -> dict[str, torch.Tensor]:
        """Loss terms of one batch of clips for ``stage``; ``"total"`` is what to minimise.

        ``segments``: per clip ``(N_i, 2)`` in feature steps of the clip
        (``frame / 4``); ``labels``: ``(N_i,)``; ``progress`` in [0, 1]
        ramps ``L_R``. In stage ``"frame"`` the backbone runs without
        gradients in eval mode.
        """
        if stage == "frame":
            was_training = self.backbone.training
            self.backbone.eval()
            with torch.no_grad():
                feats = self.features(frames)
            self.backbone.train(was_training and not self.cfg.freeze_backbone)
        elif stage == "segment":
            feats = self.features(frames)
        else:
            raise ValueError(f"stage must be 'frame' or 'segment', got {stage!r}")
        return self.detector.losses(feats, self._mask(feats, mask), segments, labels, stage=stage,
                                    progress=progress)

    # ------------------------------------------------------------------ inference
    fuse_outputs = staticmethod(GAFDetector.fuse_outputs)

    def predict_from_outputs(self, outputs: dict, mask: torch.Tensor, *, pre_nms_top_k: int = 2000,
                             score_threshold: float = 0.001) -> list[dict[str, torch.Tensor | None]]:
        """Candidates per clip (segments in feature steps of the clip); see :meth:`GAFDetector.predict_from_outputs`."""
        return self.detector.predict_from_outputs(outputs, mask, pre_nms_top_k=pre_nms_top_k,
                                                  score_threshold=score_threshold)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, mask: torch.Tensor | None = None, *, pre_nms_top_k: int = 2000,
                score_threshold: float = 0.001) -> list[dict[str, torch.Tensor | None]]:
        """:meth:`forward` + :meth:`predict_from_outputs`."""
        out = self(frames, mask)
        return self.predict_from_outputs(out, out["mask"], pre_nms_top_k=pre_nms_top_k,
                                         score_threshold=score_threshold)


def build_e2e_detector(cfg: E2EConfig, num_classes: int, clip_len: int, *, pretrained: bool = True) -> E2EDetector:
    """The end-to-end detector of ``cfg`` for ``num_classes`` classes and clips of ``clip_len`` frames.

    ``pretrained=False`` skips ``cfg.backbone_weights`` (for loading a trained checkpoint).
    """
    if num_classes < 1:
        raise ConfigError(f"build_e2e_detector: need num_classes >= 1, got {num_classes}")
    return E2EDetector(cfg, num_classes, clip_len, pretrained=pretrained)
