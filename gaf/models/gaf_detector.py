"""The full model: GAF in front of the anchor-free detector, built from config.

``build_model(cfg: ModelConfig, in_dim, num_classes, max_seq_len) -> GAFDetector``.

Training follows the paper's two stages (Fig. 2), driven by the engine:

* ``losses(..., stage="frame")``: Frame-GAF's ``L_CVAE`` (Eq. 7) with
  ``lambda`` from Segment-GAF, detached.
* ``losses(..., stage="segment")``: ``ai * L_ai + nai * L_nai + clf * L_clf +
  rep * progress * L_R``:

  - ``L_ai``: detector losses on ``F'`` (the GAF-enhanced features) against
    the ground truth (Eq. 13, first term);
  - ``L_nai``: detector losses on ``F * (1 - lambda)`` against the
    *complement intervals* of the window (the background before, between
    and after the instances; Eq. 13, second term). Our reading: the class
    head has one extra output, channel ``K`` = "background interval", used
    only here: the complement intervals are its positives (class target
    one-hot at ``K``, offsets regressed to the interval), and the K action
    classes are negatives at every point (coarse outputs: this half of the
    batch skips boundary refinement). ``predict`` never reads channel K.
    If ``lambda`` leaks action evidence into ``F * (1 - lambda)`` the action
    classes fire and are penalised; if ``lambda`` also covers background, the
    background intervals cannot be found. Both push ``lambda`` towards the
    instances.
  - ``L_clf`` (Eq. 12) on the attention-pooled f_ai / f_nai;
  - ``L_R`` (Eq. 15) through the frozen decoder, ramped by training progress.

With ``gaf.enabled = False`` the model is the plain detector (the AFSD
baseline): stage "segment" is the detector loss, stage "frame" returns 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn as nn

from gaf.config import NON_NEGATIVE, POSITIVE, UNIT, ranged
from gaf.models.detection_losses import detection_losses
from gaf.models.detector import AnchorFreeDetector, DetectorConfig
from gaf import losses as L
from gaf.losses import attention_bce  # L_att, shared with the recognizer
from gaf.models.blocks import stage_parameters
from gaf.models.gaf import GAF, GAFConfig, action_mask, as_channels, step_attention
from gaf.postprocess import decode_offsets

__all__ = ["LossConfig", "ModelConfig", "GAFDetector", "build_model", "complement_segments", "batch_attention",
           "batch_outputs"]


@dataclass
class LossConfig:
    """Loss weights (all switchable to 0) and loss settings."""

    cls: float = ranged(1.0, NON_NEGATIVE)  # focal loss on class logits
    focal_alpha: float = ranged(0.25, UNIT)
    focal_gamma: float = ranged(2.0, NON_NEGATIVE)
    reg: float = ranged(1.0, NON_NEGATIVE)  # (G|D)IoU loss on offsets
    reg_mode: Literal["giou", "diou", "iou"] = "giou"
    quality: float = ranged(1.0, NON_NEGATIVE)  # BCE on the quality logit
    saliency: float = ranged(0.5, NON_NEGATIVE)  # start / end saliency BCE
    saliency_pos_weight: float = ranged(5.0, POSITIVE)
    refine: float = ranged(1.0, NON_NEGATIVE)  # refined class + offsets
    ai: float = ranged(1.0, NON_NEGATIVE)  # L_ai: detector on F'
    nai: float = ranged(0.5, NON_NEGATIVE)  # L_nai: the detector on F*(1-lambda), weight (official: 35 with nai_form=background)
    # what L_nai asks of the detector on F*(1-lambda): find the complement intervals (the background before,
    # between and after the instances) on an extra class channel, with regression ("complement"), or find no
    # action anywhere: every action class a focal-loss negative, no extra channel, no regression
    # ("background", the official code's)
    nai_form: Literal["complement", "background"] = "complement"
    clf: float = ranged(0.1, NON_NEGATIVE)  # alpha of Eq. 14 (L_clf); 0 builds no classifier head (the official code has none)
    clf_prior: bool = True  # start the L_clf head's bias at the class prior (False: p = 0.5 for every output)
    # L_att (ours, not in the paper): BCE of lambda against the ground-truth action mask of the window, a direct
    # actionness signal for Segment-GAF (the paper trains lambda only through L_d and L_R). On by default: over 3
    # paired seeds it gives the healthiest lambda and the best GAF on both embedded benchmarks
    # (docs/benchmark.md); 0 = the paper's losses
    att: float = ranged(1.0, NON_NEGATIVE)
    cvae: float = ranged(1.0, NON_NEGATIVE)  # L_CVAE (stage "frame")
    cvae_beta: float = ranged(1.0, NON_NEGATIVE)  # beta of Eq. 7
    rep: float = ranged(0.5, NON_NEGATIVE)  # L_R max weight; weight = rep * training progress (official 0.5 * epoch / max_epoch)


@dataclass
class ModelConfig:
    gaf: GAFConfig = field(default_factory=GAFConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def complement_segments(segments: torch.Tensor, length: float, min_length: float = 1.0) -> torch.Tensor:
    """Background intervals of a window: ``[0, length]`` minus the union of ``segments (N, 2)``.

    Returns ``(M, 2)`` steps, intervals shorter than ``min_length`` dropped.
    """
    seg = segments.reshape(-1, 2).clamp(0, length)
    if seg.shape[0] == 0:
        out = segments.new_tensor([[0.0, float(length)]])
    else:
        order = torch.argsort(seg[:, 0])
        s, e = seg[order, 0], seg[order, 1]
        ends = torch.cummax(e, 0).values
        starts = torch.cat([s.new_zeros(1), ends])
        stops = torch.cat([s, s.new_tensor([float(length)])])
        out = torch.stack([starts, stops], 1)
    return out[out[:, 1] - out[:, 0] >= min_length]


def _logit(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


class GAFDetector(nn.Module):
    """GAF (optional) + :class:`AnchorFreeDetector` with the paper's two-stage losses."""

    def __init__(self, in_dim: int, num_classes: int, max_seq_len: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.max_seq_len = max_seq_len  # the training crop (steps); evaluation may feed longer whole videos
        # the L_clf head exists only when L_clf is on (model.loss.clf: 0 is the official form: no head)
        self.gaf = GAF(in_dim, cfg.gaf, num_classes if cfg.loss.clf > 0 else None) if cfg.gaf.enabled else None
        # the background-interval channel of L_nai's complement form
        extra = 1 if self.gaf is not None and cfg.loss.nai > 0 and cfg.loss.nai_form == "complement" else 0
        self.detector = AnchorFreeDetector(in_dim, num_classes + extra, cfg.detector)

    # ------------------------------------------------------------------ forward
    @property
    def needs_ground_truth(self) -> bool:
        """True for an oracle model (λ = the ground-truth action mask): it cannot run on unlabelled video."""
        return self.gaf is not None and self.cfg.gaf.oracle

    def forward(self, features: torch.Tensor, mask: torch.Tensor, action_mask: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | None]:
        """``features (B, C, T)``, ``mask (B, T)`` -> dict with ``cls_logits (B, P, K)``,
        ``offsets (B, P, 2)`` (steps >= 0, refined), ``quality (B, P)`` logits, ``points (P,)``,
        ``strides (P,)``, ``point_mask (B, P)``, ``attention`` λ (``(B, T)``, or ``(B, C, T)`` with
        channel attention) or None, ``mask (B, T)``. ``action_mask (B, T)``: the ground truth an oracle
        model (``model.gaf.oracle``) uses as λ."""
        mask = mask.bool()
        attention = None
        x = features
        if self.gaf is not None:
            g = self.gaf(features, mask, oracle=action_mask)
            x, attention = g.features, g.attention
        out = self.detector(x, mask)
        K = self.num_classes
        return {"cls_logits": out["cls_logits"][..., :K], "offsets": out["offsets"], "quality": out["quality"],
                "points": out["points"], "strides": out["strides"], "point_mask": out["point_mask"],
                "attention": attention, "mask": mask}

    def attention(self, features: torch.Tensor, mask: torch.Tensor, action_mask: torch.Tensor | None = None
                  ) -> torch.Tensor | None:
        """λ alone, as :meth:`forward` returns it under ``attention`` (``(B, T)``, or ``(B, C, T)`` with channel
        attention; None without GAF), without running the detector: what the attention-health probe reads."""
        if self.gaf is None:
            return None
        mask = mask.bool()
        return self.gaf.attention(features * mask[:, None, :].to(features.dtype), mask, action_mask)

    # ------------------------------------------------------------------ training
    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """``"frame"``: Frame-GAF's parameters; ``"segment"``: all others (no overlap, none missing)."""
        return stage_parameters(self, stage, self.gaf.frame_parameters() if self.gaf is not None else [])

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The L_clf head's parameters (empty without one): ``train.clf_lr`` applies to them."""
        head = self.gaf.segment.classifier if self.gaf is not None else None
        return list(head.parameters()) if head is not None else []

    def _detector_terms(self, out: dict, mask: torch.Tensor, segments: Sequence[torch.Tensor],
                        labels: Sequence[torch.Tensor], num_scored: int, saliency: bool,
                        stats: dict | None = None) -> dict[str, torch.Tensor]:
        d = self.cfg.detector
        return detection_losses(out, mask, segments, labels, num_scored=num_scored, radius=d.center_sample_radius,
                                weights=self.cfg.loss, quality_target=d.quality_target,
                                saliency_sigma=d.saliency_sigma, use_saliency=saliency, stats=stats)

    def losses(self, features: torch.Tensor, mask: torch.Tensor, segments: Sequence[torch.Tensor],
               labels: Sequence[torch.Tensor], *, stage: str, progress: float = 0.0) -> dict[str, torch.Tensor]:
        """Loss terms of one batch for ``stage`` ("frame" | "segment"); ``"total"`` is what to minimise.

        ``segments``: per window ``(N_i, 2)`` steps; ``labels``: ``(N_i,)``;
        ``progress``: fraction of training done, in [0, 1] (ramps L_R).
        """
        lc = self.cfg.loss
        mask = mask.bool()
        zero = features.new_zeros(())
        if stage == "frame":
            if self.gaf is None or lc.cvae == 0:
                return {"total": zero}
            d = self.gaf.cvae_loss(features, mask, beta=lc.cvae_beta, oracle=self._oracle(segments, mask))
            return {"total": lc.cvae * d["total"], "cvae": d["total"], "cvae_recon": d["recon"], "cvae_kl": d["kl"]}
        if stage != "segment":
            raise ValueError(f"stage must be 'frame' or 'segment', got {stage!r}")
        logged, weighted, _ = self.segment_terms(features, mask, segments, labels, progress=progress)
        return {"total": sum(weighted.values(), zero), **logged}

    def _oracle(self, segments: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor | None:
        if not self.needs_ground_truth:
            return None
        return action_mask(segments, mask.shape[1], device=mask.device)

    def segment_terms(self, features: torch.Tensor, mask: torch.Tensor, segments: Sequence[torch.Tensor],
                      labels: Sequence[torch.Tensor], *, progress: float = 0.0
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor | None]:
        """Stage "segment" of one batch: ``(logged, weighted, attention)``.

        ``logged``: every term as reported (``ai`` and its parts, ``nai``,
        ``clf``, ``att``, ``rep``, unweighted); ``weighted``: the terms that sum
        to the total, each times its weight (``ai``, ``nai``, ``clf``, ``att``, ``rep``; the
        detector's terms alone without GAF); ``attention``: λ of the batch
        (None without GAF), in the graph, so each weighted term's gradient on
        λ can be taken (:func:`gaf.engine.health.attention_gradients`).
        """
        lc = self.cfg.loss
        mask = mask.bool()
        zero = features.new_zeros(())
        K = self.num_classes
        if self.gaf is None:
            out = self.detector(features, mask)
            terms = self._detector_terms(out, mask, segments, labels, K, True)
            return dict(terms), dict(terms), None

        B = features.shape[0]
        g = self.gaf(features, mask, oracle=self._oracle(segments, mask))
        lam = as_channels(g.attention)
        x = g.features
        use_nai = lc.nai > 0
        if use_nai:
            background = features * mask[:, None, :].to(features.dtype) * (1.0 - lam)
            x = torch.cat([x, background], 0)
        both = self.detector(x, torch.cat([mask, mask], 0) if use_nai else mask, refine_first=B)
        ai_out = {k: (v[:B] if k not in ("points", "strides", "ranges") else v) for k, v in both.items()}
        stats: dict = {}
        ai_terms = self._detector_terms(ai_out, mask, segments, labels, K, True, stats)
        logged: dict[str, torch.Tensor] = {f"ai_{k}": v for k, v in ai_terms.items()}
        logged["ai"] = sum(ai_terms.values(), zero)
        weighted = {"ai": lc.ai * logged["ai"]}
        if use_nai:
            # the background half is scored on the coarse outputs (no refinement: it only trains lambda and,
            # in the complement form, the background-interval channel)
            nai_out = {k: (v[B:] if k not in ("points", "strides", "ranges") else v) for k, v in both.items()
                       if not k.startswith("coarse_")}
            if lc.nai_form == "complement":
                lengths = mask.sum(1)
                comp = [complement_segments(s.to(x.dtype), float(n)) for s, n in zip(segments, lengths)]
                comp_labels = [torch.full((c.shape[0],), K, dtype=torch.long, device=x.device) for c in comp]
                logged["nai"] = sum(self._detector_terms(nai_out, mask, comp, comp_labels, K + 1, False).values(),
                                    zero)
            else:  # "background" (official): every action class is a negative at every point of F*(1-lambda)
                valid = nai_out["point_mask"]
                logits = nai_out["cls_logits"][valid][:, :K]
                logged["nai"] = lc.cls * L.sigmoid_focal_loss(
                    logits, torch.zeros_like(logits), alpha=lc.focal_alpha, gamma=lc.focal_gamma) / stats["num_pos"]
            weighted["nai"] = lc.nai * logged["nai"]
        if lc.clf > 0 and self.gaf.segment.classifier is not None:
            logged["clf"] = self.gaf.classification_loss(g, labels)
            weighted["clf"] = lc.clf * logged["clf"]
        if lc.att > 0 and not self.cfg.gaf.oracle:
            truth = action_mask(segments, mask.shape[1], device=mask.device)
            logged["att"] = attention_bce(g.attention, truth, mask)
            weighted["att"] = lc.att * logged["att"]
        if lc.rep > 0:
            logged["rep"] = self.gaf.representation_loss(features, mask, g.attention)
            weighted["rep"] = lc.rep * float(min(max(progress, 0.0), 1.0)) * logged["rep"]
        return logged, weighted, g.attention

    # ------------------------------------------------------------------ inference
    @staticmethod
    def fuse_outputs(outputs: Sequence[dict]) -> dict:
        """Average several models' :meth:`forward` outputs (RGB + flow streams, §IV-B).

        Class and quality *probabilities*, offsets and attention are averaged;
        logits are returned as the logit of the averaged probability.
        """
        if len(outputs) == 1:
            return dict(outputs[0])
        first = outputs[0]
        for o in outputs[1:]:
            if o["cls_logits"].shape != first["cls_logits"].shape:
                raise ValueError("fuse_outputs: models disagree on (B, P, K); fuse models of the same config")
        n = float(len(outputs))
        fused = dict(first)
        fused["cls_logits"] = _logit(sum(torch.sigmoid(o["cls_logits"]) for o in outputs) / n)
        fused["quality"] = _logit(sum(torch.sigmoid(o["quality"]) for o in outputs) / n)
        fused["offsets"] = sum(o["offsets"] for o in outputs) / n
        atts = [o["attention"] for o in outputs if o.get("attention") is not None]
        fused["attention"] = sum(atts) / len(atts) if atts else None
        return fused

    def predict_from_outputs(self, outputs: dict, mask: torch.Tensor, *, pre_nms_top_k: int = 2000,
                             score_threshold: float = 0.001) -> list[dict[str, torch.Tensor | None]]:
        """Candidates per window from (possibly fused) :meth:`forward` outputs.

        Returns one dict per window: ``segments (N, 2)`` float steps relative
        to the window (clamped to ``[0, valid length]``), ``scores (N,)``,
        ``labels (N,)`` long, ``attention (T_valid,)`` or None. Candidates are
        (point, class) pairs on valid points with score above the threshold,
        the best ``pre_nms_top_k``; no NMS. ``attention`` is λ per step
        (channel attention: its mean over channels).
        """
        mode = self.cfg.detector.score
        probs = torch.sigmoid(outputs["cls_logits"].float())
        if mode != "cls":
            probs = probs * torch.sigmoid(outputs["quality"].float())[..., None]
            if mode == "sqrt":
                probs = probs.sqrt()
        points, offsets = outputs["points"].float(), outputs["offsets"].float()
        mask = mask.bool()
        K = probs.shape[-1]
        results = []
        for b in range(probs.shape[0]):
            n = int(mask[b].long().cumsum(0).max()) if mask[b].any() else 0
            valid = outputs["point_mask"][b]
            scores = torch.where(valid[:, None], probs[b], torch.zeros_like(probs[b])).flatten()
            keep = torch.nonzero(scores > score_threshold, as_tuple=True)[0]
            if keep.numel() > pre_nms_top_k:
                keep = keep[scores[keep].topk(pre_nms_top_k).indices]
            keep = keep[scores[keep].argsort(descending=True)]
            pidx, cls = keep // K, keep % K
            segments = decode_offsets(points[pidx], 1.0, offsets[b, pidx]).clamp(0, n)
            att = outputs.get("attention")
            results.append({"segments": segments, "scores": scores[keep],
                            "labels": cls.long(),
                            "attention": step_attention(att)[b, :n] if att is not None else None})
        return results

    @torch.no_grad()
    def predict(self, features: torch.Tensor, mask: torch.Tensor, *, pre_nms_top_k: int = 2000,
                score_threshold: float = 0.001) -> list[dict[str, torch.Tensor | None]]:
        """:meth:`forward` + :meth:`predict_from_outputs` (see there)."""
        return self.predict_from_outputs(self(features, mask), mask, pre_nms_top_k=pre_nms_top_k,
                                         score_threshold=score_threshold)


def _batch_inputs(model: nn.Module, batch: dict, device: torch.device | str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A collated batch's ``features``, ``mask`` and, for an oracle model (``needs_ground_truth``: λ = the
    ground-truth action mask), that mask built from its ``segments`` (else None), moved to ``device``."""
    features, mask = batch["features"].to(device), batch["mask"].to(device)
    oracle = action_mask(batch["segments"], mask.shape[1], device=device) \
        if getattr(model, "needs_ground_truth", False) else None
    return features, mask, oracle


def batch_attention(model: GAFDetector, batch: dict, device: torch.device | str) -> torch.Tensor | None:
    """``model.attention`` (λ, or None without GAF) on a collated batch moved to ``device``."""
    return model.attention(*_batch_inputs(model, batch, device))


def batch_outputs(model: nn.Module, batch: dict, device: torch.device | str) -> dict:
    """``model(features, mask)`` on a collated batch moved to ``device`` (an oracle model also gets the
    batch's action mask)."""
    features, mask, oracle = _batch_inputs(model, batch, device)
    return model(features, mask) if oracle is None else model(features, mask, oracle)


def build_model(cfg: ModelConfig, in_dim: int, num_classes: int, max_seq_len: int) -> GAFDetector:
    """The model for ``in_dim``-channel features, ``num_classes`` classes, windows up to ``max_seq_len`` steps."""
    if in_dim < 1 or num_classes < 1:
        from gaf.errors import ConfigError

        raise ConfigError(f"build_model: need in_dim >= 1 and num_classes >= 1, got {in_dim}, {num_classes}")
    return GAFDetector(in_dim, num_classes, max_seq_len, cfg)
