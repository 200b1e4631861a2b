"""Action recognition with the GAF module (paper §IV, Table II).

Pipeline::

    frames (B, 3, T, H, W) ──I3D forward_features──▶ F (B, 1024, T')  ┐
    cached features (B, C, T) ─────────────────────────────────────────┴▶ GAF ──▶ λ (B, T)
        f_ai = Σ λ_t f_t / Σ λ_t  ──▶ GAF's (K + 1)-way classifier ──▶ logits of the K classes

Only Segment-GAF's attention and pooling feed the classifier: GAF's fused
output ``F'`` (Eq. 16) is what a *detector* consumes, so recognition configs
set ``gaf.fusion: attention`` (no fusion layers are built; with
``generative`` they are built but unused).

The classifier is Segment-GAF's own ``K + 1`` head (column ``K`` =
background). Recognition trains it with ``L_clf`` only (Eq. 12, footnote 2):
a clip holds exactly one action, so ``-log p(c | f_ai) - log p(0 | f_nai)``
is read as a *softmax* cross-entropy over the ``K + 1`` outputs
(``loss.clf_form: softmax``, the default): f_ai → its class, f_nai →
background. ``clf_form: sigmoid`` uses the detector's multi-label form
(:func:`gaf.losses.clf_loss`) instead. Scores for top-k are the softmax
(resp. sigmoid) probabilities of the K action classes for f_ai.

Two training stages, as for the detector (Fig. 2):

* ``losses(..., stage="frame")``: Frame-GAF's ``L_CVAE`` (Eq. 7) on the
  features with λ detached; only :meth:`Recognizer.stage_parameters`
  ``("frame")`` (Frame-GAF) learns.
* ``losses(..., stage="segment")``: ``clf * L_clf + rep * progress * L_R``
  (``L_R``, Eq. 15, through the frozen decoder; ``rep: 0`` turns it off)
  ``+ att * L_att`` (the detector's :func:`gaf.losses.attention_bce`: λ
  against the clips' ground-truth action steps, when the batch has them:
  ``dataset.source: annotations``); everything but Frame-GAF learns
  (backbone too, unless frozen).

``gaf.enabled: false`` is the baseline: masked average pooling over time,
dropout and a linear K-way classifier, trained with cross-entropy (stage
"segment" only).

Example
-------
>>> import torch
>>> from gaf.models.recognizer import Recognizer, RecognizerConfig
>>> model = Recognizer(RecognizerConfig(), num_classes=4, in_dim=32)
>>> x = torch.randn(2, 32, 16)                       # cached features (B, C, T)
>>> model(x)["logits"].shape
torch.Size([2, 4])
>>> loss = model.losses(x, torch.tensor([0, 3]), stage="segment")["total"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from gaf.config import NON_NEGATIVE, check, ranged
from gaf.errors import ConfigError
from gaf.losses import attention_bce
from gaf.models.blocks import BackboneHost, stage_parameters
from gaf.models.gaf import GAF, GAFConfig, SegmentGAF

__all__ = ["RecognitionLossConfig", "RecognizerConfig", "Recognizer"]

STAGES = ("frame", "segment")


@dataclass
class RecognitionLossConfig:
    """Loss weights of the recognizer (0 switches a term off)."""

    clf: float = ranged(1.0, NON_NEGATIVE)  # L_clf (Eq. 12): the only task loss of recognition (footnote 2)
    clf_form: Literal["softmax", "sigmoid"] = "softmax"  # single-label CE over K+1, or the multi-label BCE
    label_smoothing: float = ranged(0.0, check("in [0, 1)", lambda v: 0 <= v < 1))  # softmax form only
    cvae: float = ranged(1.0, NON_NEGATIVE)  # L_CVAE (stage "frame")
    cvae_beta: float = ranged(1.0, NON_NEGATIVE)  # beta of Eq. 7
    rep: float = ranged(0.5, NON_NEGATIVE)  # L_R max weight, ramped by training progress (0 = off)
    # L_att (ours, as the detector's): BCE of lambda against the clip's annotated action steps; needs
    # dataset.source: annotations (UCF101-style clips have no temporal labels). 0 = the paper's losses
    att: float = ranged(0.0, NON_NEGATIVE)


@dataclass
class RecognizerConfig:
    """Backbone, GAF and classifier settings of the recognizer."""

    backbone: Literal["none", "i3d"] = "none"  # none: inputs are feature sequences (B, C, T)
    backbone_weights: str | None = None  # I3D state-dict path (.pt / .pth); None = random init
    stream: Literal["rgb", "flow"] = "rgb"  # I3D input: 3 (RGB) or 2 (flow) channels
    freeze_backbone: bool = False  # True: the backbone is a fixed feature extractor
    freeze_bn: bool = True  # keep the backbone's BatchNorm statistics fixed while fine-tuning
    dropout: float = ranged(0.5, check("in [0, 1)", lambda v: 0 <= v < 1))  # on the pooled feature, before the classifier
    gaf: GAFConfig = field(default_factory=GAFConfig)  # set fusion: attention (F' is not used here)
    loss: RecognitionLossConfig = field(default_factory=RecognitionLossConfig)


class Recognizer(BackboneHost):
    """Clip classifier: optional backbone → GAF → classifier on the attention-pooled ``f_ai``.

    ``num_classes`` (K) action classes. ``in_dim``: channels of the input
    features when ``backbone == "none"`` (required then); with the I3D
    backbone the GAF sees its 1024-d features.
    """

    def __init__(self, cfg: RecognizerConfig, num_classes: int, in_dim: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone: nn.Module | None = None
        if cfg.backbone == "i3d":
            from gaf.models.backbones.i3d import build_i3d

            self.backbone = build_i3d(cfg.stream, cfg.backbone_weights)
            in_dim = 1024
            if cfg.freeze_backbone:
                for p in self.backbone.parameters():
                    p.requires_grad_(False)
        elif in_dim is None:
            raise ConfigError("model.backbone: 'none' reads feature sequences; in_dim (feature channels) is required")
        self.in_dim = int(in_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.gaf = GAF(self.in_dim, cfg.gaf, num_classes) if cfg.gaf.enabled else None
        self.classifier = nn.Linear(self.in_dim, num_classes) if self.gaf is None else None

    # ------------------------------------------------------------------ features
    def temporal_features(self, x: torch.Tensor, mask: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs → temporal feature map ``F (B, C, T')`` and its mask ``(B, T')`` (bool).

        ``x``: features ``(B, C, T)`` (``backbone: none``) or frames
        ``(B, 3, T, H, W)`` in [-1, 1] (``backbone: i3d``). ``mask (B, T)``
        marks valid feature steps (padding of short videos); frame clips
        have no padding.
        """
        if self.backbone is not None:
            if x.dim() != 5:
                raise ValueError(f"the I3D backbone takes frames (B, C, T, H, W), got shape {tuple(x.shape)}")
            if self.cfg.freeze_backbone:
                self.backbone.eval()
                with torch.no_grad():
                    feats = self.backbone.forward_features(x)
            else:
                feats = self.backbone.forward_features(x)
            return feats, torch.ones(feats.shape[0], feats.shape[-1], dtype=torch.bool, device=feats.device)
        if x.dim() != 3 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected features (B, {self.in_dim}, T), got shape {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones(x.shape[0], x.shape[-1], dtype=torch.bool, device=x.device)
        return x, mask.bool()

    def _baseline_pool(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(feats.dtype)
        return torch.einsum("bct,bt->bc", feats, m) / m.sum(1, keepdim=True).clamp(min=1.0)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Clip scores.

        Returns ``logits (B, K)`` (the K action columns for ``f_ai``; the
        baseline's linear logits), ``scores (B, K)`` probabilities (softmax
        over the ``K + 1`` outputs, background column dropped; sigmoid for
        ``clf_form: sigmoid``; softmax over K for the baseline) and
        ``attention (B, T')`` (None for the baseline).
        """
        feats, mask = self.temporal_features(x, mask)
        K = self.num_classes
        if self.gaf is None:
            logits = self.classifier(self.dropout(self._baseline_pool(feats, mask)))
            return {"logits": logits, "scores": logits.softmax(-1), "attention": None}
        lam, f_ai, _ = self._attend(feats, mask)
        full = self.gaf.segment.classifier(self.dropout(f_ai))  # (B, K + 1)
        if self.cfg.loss.clf_form == "sigmoid":
            scores = torch.sigmoid(full[:, :K])
        else:
            scores = full.softmax(-1)[:, :K]
        return {"logits": full[:, :K], "scores": scores, "attention": lam}

    def _attend(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment-GAF: ``lambda (B, T)``, ``f_ai``, ``f_nai`` (each ``(B, C)``, Eq. 11)."""
        feats = feats * mask[:, None, :].to(feats.dtype)
        lam = self.gaf.segment.attention(feats, mask)
        f_ai, f_nai = SegmentGAF.pool(feats, lam, mask)
        return lam, f_ai, f_nai

    # ------------------------------------------------------------------ training
    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """``"frame"``: Frame-GAF's parameters; ``"segment"``: all other trainable ones (no overlap)."""
        frozen = self.backbone.parameters() if self.backbone is not None and self.cfg.freeze_backbone else ()
        return stage_parameters(self, stage, self.gaf.frame_parameters() if self.gaf is not None else [],
                                list(frozen))

    def active_stages(self) -> list[str]:
        """The stages that train something: "frame" only with GAF and ``loss.cvae > 0``."""
        lc = self.cfg.loss
        return [s for s in STAGES if s == "segment" or (self.gaf is not None and lc.cvae > 0)]

    def losses(self, x: torch.Tensor, labels: torch.Tensor, *, stage: str, mask: torch.Tensor | None = None,
               progress: float = 0.0, action_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch for ``stage``; ``"total"`` is what to minimise.

        ``x``: features ``(B, C, T)`` or frames ``(B, 3, T, H, W)``;
        ``labels``: ``(B,)`` 0-based class ids; ``progress`` in [0, 1]
        ramps ``L_R``; ``action_mask (B, T')`` (1 on annotated action steps):
        the target of ``L_att`` (``loss.att > 0``, with GAF; no term without it).
        """
        lc = self.cfg.loss
        labels = labels.long()
        if stage == "frame":
            if self.gaf is None or lc.cvae == 0:
                return {"total": x.new_zeros(())}
            # the backbone does not learn in stage "frame" (eval mode: its BatchNorm statistics stay put)
            was_training = self.backbone.training if self.backbone is not None else False
            if self.backbone is not None:
                self.backbone.eval()
            with torch.no_grad():
                feats, mask = self.temporal_features(x, mask)
            if self.backbone is not None:
                self.backbone.train(was_training)
            d = self.gaf.cvae_loss(feats, mask, beta=lc.cvae_beta)
            return {"total": lc.cvae * d["total"], "cvae": d["total"], "cvae_recon": d["recon"],
                    "cvae_kl": d["kl"]}
        if stage != "segment":
            raise ValueError(f"stage must be 'frame' or 'segment', got {stage!r}")
        feats, mask = self.temporal_features(x, mask)
        if self.gaf is None:
            logits = self.classifier(self.dropout(self._baseline_pool(feats, mask)))
            ce = _batch_ce(logits, labels, lc.label_smoothing)
            return {"total": lc.clf * ce, "clf": ce}
        lam, f_ai, f_nai = self._attend(feats, mask)
        head = self.gaf.segment.classifier
        logits_ai, logits_nai = head(self.dropout(f_ai)), head(self.dropout(f_nai))
        K = self.num_classes
        if lc.clf_form == "sigmoid":
            from gaf.losses import clf_loss

            l_clf = clf_loss(logits_ai, logits_nai, F.one_hot(labels, K).to(logits_ai.dtype))
            l_ai = l_clf.detach()
        else:
            l_ai = _batch_ce(logits_ai, labels, lc.label_smoothing)
            background = torch.full_like(labels, K)
            l_clf = l_ai + _batch_ce(logits_nai, background, lc.label_smoothing)
        total = lc.clf * l_clf
        result = {"clf": l_clf, "clf_ai": l_ai}
        if lc.att > 0 and action_mask is not None:
            if action_mask.shape != mask.shape:
                raise ValueError(f"action_mask {tuple(action_mask.shape)} does not match the attention's steps "
                                 f"{tuple(mask.shape)}")
            result["att"] = attention_bce(lam, action_mask, mask)
            total = total + lc.att * result["att"]
        if lc.rep > 0:
            result["rep"] = self.gaf.representation_loss(feats, mask, lam)
            total = total + lc.rep * float(min(max(progress, 0.0), 1.0)) * result["rep"]
        return {"total": total, **result}


def _batch_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy averaged over the batch through :func:`gaf.losses.loss_normalizer` (exact under DDP)."""
    from gaf.losses import loss_normalizer

    ce = F.cross_entropy(logits, labels, label_smoothing=smoothing, reduction="sum")
    return ce / loss_normalizer(logits.shape[0], like=logits)
