"""GAF: generative attention on frame- and segment-level feature semantics.

A plug-in module for any model that consumes temporal features
``F (B, C, T)`` (paper §III-B). It returns enhanced features ``F'`` of the
same shape, so it can sit in front of any 1-D detector or classifier.

Parts
-----
* :class:`SegmentGAF` (Eq. 10-12): temporal convs + GroupNorm + sigmoid give
  the attention ``lambda (B, T)`` in [0, 1] (0 on padding); attention-weighted
  pooling gives ``f_ai`` and ``f_nai`` (Eq. 11); a ``K + 1``-way classifier
  (column ``K`` = background) scores them. A window can hold several
  classes, so the classifier is multi-label (sigmoid per output, see
  :func:`gaf.losses.clf_loss`).
* :class:`FrameGAF` (Eq. 5-9): a conditional VAE per time step. ``theta`` (1x1
  conv) reduces channels; the encoder (1x1 "fc" layers) maps
  ``[theta(f_t), lambda_t]`` to ``mu, logvar``; the prior is
  ``N(lambda_t * 1, I)``; the decoder maps ``[z_t, lambda_t]`` through fc
  layers and ``theta'`` (1x1 conv back to C channels) to ``f^_t``. In eval
  mode ``z`` is the prior mean ``lambda_t * 1`` unless
  ``cfg.sample_latent_at_test``.
* :class:`GenerativeFusion` (Eq. 16), our reading:
  ``F' = F*lambda + theta'_f(fc_f([Z, theta_f(F*lambda)]))``. ``Z`` is the
  Frame-GAF encoder's posterior mean for ``(f_t, lambda_t)`` (deterministic in
  training and at test; ``fusion_latent="prior"`` uses ``lambda_t * 1``
  instead). The encoder is evaluated with *detached* parameters: Frame-GAF
  learns only from L_CVAE, while gradients still reach ``lambda`` through
  it. ``theta_f / fc_f / theta'_f`` are the fusion's own layers (their input
  is C-dimensional, unlike the decoder's scalar ``lambda``), trained with the
  detector; the last one starts at zero so ``F'`` starts as ``F*lambda``.
  ``fusion="attention"`` gives ``F' = F*lambda`` alone.
* Output (Eq. 10's ``f_fpm``, which "averages two layers as the input of the
  detector"): with ``output="average"`` (default) the module returns
  ``(F + F_enhanced) / 2``, keeping the background context a detector needs;
  ``output="enhanced"`` returns the enhanced features alone.

Losses (see :mod:`gaf.losses`): :meth:`GAF.cvae_loss` (Eq. 7, trains
Frame-GAF with ``lambda`` detached), :meth:`GAF.representation_loss`
(Eq. 15, through the *frozen* decoder: gradients reach ``lambda`` only),
:meth:`GAF.classification_loss` (Eq. 12).

Example
-------
>>> import torch
>>> from gaf.models.gaf import GAF, GAFConfig
>>> gaf = GAF(in_channels=64, cfg=GAFConfig(), num_classes=5)
>>> x, mask = torch.randn(2, 64, 100), torch.ones(2, 100, dtype=torch.bool)
>>> out = gaf(x, mask)
>>> out.features.shape, out.attention.shape        # F' feeds your detector
(torch.Size([2, 64, 100]), torch.Size([2, 100]))
>>> frame_loss = gaf.cvae_loss(x, mask, out.attention)["total"]          # stage 1
>>> seg_loss = gaf.classification_loss(out, [torch.tensor([1]), torch.tensor([0, 3])]) \\
...     + 0.5 * gaf.representation_loss(x, mask, out.attention)           # stage 2 (+ detector loss)

Train the two parameter groups alternately (:meth:`GAF.frame_parameters`,
:meth:`GAF.segment_parameters`), as in the paper's Fig. 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from gaf import losses as L
from gaf.models.noise import randn_like

__all__ = [
    "GAFConfig",
    "GAFOutput",
    "MaskedGroupNorm",
    "ConvBlock",
    "SegmentGAF",
    "FrameGAF",
    "GenerativeFusion",
    "GAF",
    "multi_hot",
    "stage_parameters",
]


@dataclass
class GAFConfig:
    """Settings of the GAF module (Frame-GAF CVAE and Segment-GAF attention)."""

    enabled: bool = True  # False: the plain detector (AFSD baseline, Table IV row 1)
    attention_dim: int = 128  # width of the attention head's temporal convs
    attention_layers: int = 2  # temporal conv layers before the 1-channel output
    attention_kernel: int = 3
    reduce_dim: int = 64  # channels after theta (1x1 conv), Eq. 8
    hidden_dim: int = 128  # width of the fc layers of encoder / decoder / fusion
    latent_dim: int = 16  # z_t dimensions
    fusion: Literal["generative", "attention"] = "generative"  # Eq. 16, or F' = F*lambda
    fusion_latent: Literal["posterior", "prior"] = "posterior"  # Z used by the fusion
    # Eq. 10's f_fpm "averages two layers as the input of the detector": F' = (F + enhanced) / 2
    # ("average"), or the enhanced features alone ("enhanced": F' = F*lambda [+ Eq. 16 term]).
    output: Literal["average", "enhanced"] = "average"
    rep_sample_latent: bool = True  # L_R: z ~ prior N(lambda, I) in training (Eq. 15, L = 1)
    sample_latent_at_test: bool = False


@dataclass
class GAFOutput:
    """What :meth:`GAF.forward` returns (shapes for input ``(B, C, T)``)."""

    features: torch.Tensor  # F' (B, C, T), zero on padding
    attention: torch.Tensor  # lambda (B, T) in [0, 1], zero on padding
    f_ai: torch.Tensor  # (B, C) attention-pooled action feature (Eq. 11)
    f_nai: torch.Tensor  # (B, C) (1 - attention)-pooled background feature
    logits_ai: torch.Tensor | None  # (B, K + 1) classifier logits of f_ai (None without classes)
    logits_nai: torch.Tensor | None  # (B, K + 1)
    latent: torch.Tensor | None  # Z (B, D, T) used by the fusion (None for fusion="attention")
    recon: torch.Tensor | None = None  # f^ (B, C, T) Frame-GAF reconstruction (if asked)
    mu: torch.Tensor | None = None  # (B, D, T) encoder mean
    logvar: torch.Tensor | None = None  # (B, D, T) encoder log-variance


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 2 or g == 1:
            return g
    return 1


class MaskedGroupNorm(nn.Module):
    """GroupNorm over valid steps only: ``(B, C, T)`` with mask ``(B, 1, T)``.

    Statistics ignore padded steps, so a sequence gives the same outputs
    alone or padded inside a batch. Output is zero on padding.
    """

    def __init__(self, channels: int, groups: int | None = None, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups = groups or _groups(channels)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.group_norm(x, self.groups, self.weight, self.bias, self.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T)``, ``mask (B, 1, T)`` (bool or float) -> ``(B, C, T)``."""
        B, C, T = x.shape
        m = mask.reshape(B, T).to(x.dtype)
        if bool(m.min() > 0):  # no padding: the fused kernel
            return self._norm(x)
        G = self.groups
        mm = m[:, :, None]
        s1 = torch.bmm(x, mm).reshape(B, G, C // G).sum(2)
        s2 = torch.bmm(x * x, mm).reshape(B, G, C // G).sum(2)
        n = (mm.sum(1) * (C // G)).clamp(min=1.0)
        mean = s1 / n
        rstd = torch.rsqrt((s2 / n - mean.pow(2)).clamp(min=0.0) + self.eps)
        scale = rstd.repeat_interleave(C // G, dim=1) * self.weight  # (B, C)
        shift = self.bias - mean.repeat_interleave(C // G, dim=1) * scale
        return torch.addcmul(shift[:, :, None], x, scale[:, :, None]) * m[:, None, :]


class ConvBlock(nn.Module):
    """Masked ``Conv1d -> MaskedGroupNorm -> ReLU``; stride 2 halves T (ceil)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = MaskedGroupNorm(cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, cin, T)`` zero on padding, ``mask (B, 1, T)`` float -> ``(B, cout, T'), (B, 1, T')``."""
        y = self.conv(x)
        if self.stride > 1:
            mask = mask[..., :: self.stride][..., : y.shape[-1]]
        return torch.relu(self.norm(y, mask)), mask


def multi_hot(labels: Sequence[torch.Tensor] | torch.Tensor, num_classes: int, device=None) -> torch.Tensor:
    """``(B, K)`` float multi-hot of the classes present, from per-video label lists."""
    if isinstance(labels, torch.Tensor) and labels.dim() == 2:
        return labels.float()
    out = torch.zeros(len(labels), num_classes, device=device)
    for b, lab in enumerate(labels):
        if len(lab):
            out[b, lab.to(out.device).long()] = 1.0
    return out


class SegmentGAF(nn.Module):
    """Attention head, attention pooling (Eq. 11) and the ``K + 1`` classifier (Eq. 12)."""

    def __init__(self, in_channels: int, cfg: GAFConfig, num_classes: int | None = None) -> None:
        super().__init__()
        layers, c = [], in_channels
        for _ in range(cfg.attention_layers):
            layers.append(ConvBlock(c, cfg.attention_dim, cfg.attention_kernel))
            c = cfg.attention_dim
        self.layers = nn.ModuleList(layers)
        self.out = nn.Conv1d(c, 1, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        self.classifier = nn.Linear(in_channels, num_classes + 1) if num_classes else None

    def attention(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``features (B, C, T)``, ``mask (B, T)`` -> ``lambda (B, T)`` in [0, 1], 0 on padding."""
        m = mask[:, None, :].to(features.dtype)
        x = features * m
        for layer in self.layers:
            x, _ = layer(x, m)
        return torch.sigmoid(self.out(x))[:, 0] * m[:, 0]

    @staticmethod
    def pool(features: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 11 over valid steps: ``f_ai = sum lambda f / sum lambda``, ``f_nai`` with ``1 - lambda``."""
        m = mask.to(features.dtype)
        w_ai = attention * m
        w_nai = (1.0 - attention) * m
        f_ai = torch.einsum("bct,bt->bc", features, w_ai) / (w_ai.sum(1, keepdim=True) + eps)
        f_nai = torch.einsum("bct,bt->bc", features, w_nai) / (w_nai.sum(1, keepdim=True) + eps)
        return f_ai, f_nai


def _frozen(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """Call ``module`` with its parameters detached: gradients reach the inputs only."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    return functional_call(module, params, args)


class _Encoder(nn.Module):
    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        self.theta = nn.Conv1d(in_channels, cfg.reduce_dim, 1)  # Eq. 8 theta
        self.fc = nn.Sequential(nn.Conv1d(cfg.reduce_dim + 1, cfg.hidden_dim, 1), nn.ReLU(),
                                nn.Conv1d(cfg.hidden_dim, 2 * cfg.latent_dim, 1))

    def forward(self, features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.theta(features), attention[:, None, :]], dim=1)
        return self.fc(h)  # (B, 2D, T): mu, logvar


class _Decoder(nn.Module):
    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Conv1d(cfg.latent_dim + 1, cfg.hidden_dim, 1), nn.ReLU(),
                                nn.Conv1d(cfg.hidden_dim, cfg.hidden_dim, 1), nn.ReLU())
        self.theta_prime = nn.Conv1d(cfg.hidden_dim, in_channels, 1)  # Eq. 9 theta'

    def forward(self, z: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return self.theta_prime(self.fc(torch.cat([z, attention[:, None, :]], dim=1)))


class FrameGAF(nn.Module):
    """Per-step conditional VAE ``p(f_t | lambda_t, z_t)`` with prior ``N(lambda_t * 1, I)``."""

    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _Encoder(in_channels, cfg)
        self.decoder = _Decoder(in_channels, cfg)

    def encode(self, features: torch.Tensor, attention: torch.Tensor, *, frozen: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, T), (B, T)`` -> ``mu, logvar`` each ``(B, D, T)`` (logvar clamped to [-10, 10])."""
        h = _frozen(self.encoder, features, attention) if frozen else self.encoder(features, attention)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, attention: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
        """``z (B, D, T)``, ``lambda (B, T)`` -> ``f^ (B, C, T)`` (Eq. 9)."""
        return _frozen(self.decoder, z, attention) if frozen else self.decoder(z, attention)

    def prior_latent(self, attention: torch.Tensor, sample: bool) -> torch.Tensor:
        """``z`` from the prior ``N(lambda * 1, I)``: its mean, or a reparameterised sample."""
        z = attention[:, None, :].expand(-1, self.cfg.latent_dim, -1)
        return z + randn_like(z) if sample else z

    def forward(self, features: torch.Tensor, attention: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``features``: ``(recon, mu, logvar)``.

        Training: ``z ~ q(z | f, lambda)`` (reparameterised). Eval: ``z`` is the
        prior mean ``lambda * 1`` (a prior sample if ``sample_latent_at_test``).
        """
        mu, logvar = self.encode(features, attention)
        if self.training:
            z = mu + randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = self.prior_latent(attention, self.cfg.sample_latent_at_test)
        return self.decode(z, attention), mu, logvar


class GenerativeFusion(nn.Module):
    """Eq. 16: ``F' = F*lambda + theta'_f(fc_f([Z, theta_f(F*lambda)]))`` (last layer zero-initialised)."""

    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        self.theta = nn.Conv1d(in_channels, cfg.reduce_dim, 1)
        self.fc = nn.Sequential(nn.Conv1d(cfg.reduce_dim + cfg.latent_dim, cfg.hidden_dim, 1), nn.ReLU())
        self.theta_prime = nn.Conv1d(cfg.hidden_dim, in_channels, 1)
        nn.init.zeros_(self.theta_prime.weight)
        nn.init.zeros_(self.theta_prime.bias)

    def forward(self, weighted: torch.Tensor, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``weighted = F*lambda (B, C, T)``, ``latent (B, D, T)``, ``mask (B, T)`` -> ``F' (B, C, T)``."""
        h = self.fc(torch.cat([latent, self.theta(weighted)], dim=1))
        return (weighted + self.theta_prime(h)) * mask[:, None, :].to(weighted.dtype)


class GAF(nn.Module):
    """The GAF plug-in: ``GAF(in_channels, cfg, num_classes)(features, mask) -> GAFOutput``.

    ``num_classes`` (K) sizes Segment-GAF's ``K + 1`` classifier; without it
    there is no classifier and no L_clf.
    """

    def __init__(self, in_channels: int, cfg: GAFConfig | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GAFConfig()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.segment = SegmentGAF(in_channels, cfg, num_classes)
        self.frame = FrameGAF(in_channels, cfg)
        self.fusion = GenerativeFusion(in_channels, cfg) if cfg.fusion == "generative" else None

    def frame_parameters(self) -> list[nn.Parameter]:
        """Frame-GAF (CVAE) parameters: trained by L_CVAE in stage "frame"."""
        return list(self.frame.parameters())

    def segment_parameters(self) -> list[nn.Parameter]:
        """Segment-GAF (attention head, classifier) and fusion parameters: stage "segment"."""
        params = list(self.segment.parameters())
        if self.fusion is not None:
            params += list(self.fusion.parameters())
        return params

    def forward(self, features: torch.Tensor, mask: torch.Tensor, *, reconstruct: bool = False) -> GAFOutput:
        """``features (B, C, T)``, ``mask (B, T)`` bool -> :class:`GAFOutput`.

        ``reconstruct=True`` also runs Frame-GAF on ``(F, lambda.detach())``
        and fills ``recon / mu / logvar``.
        """
        m = mask[:, None, :].to(features.dtype)
        features = features * m
        lam = self.segment.attention(features, mask)
        f_ai, f_nai = SegmentGAF.pool(features, lam, mask)
        logits_ai = logits_nai = None
        if self.segment.classifier is not None:
            logits_ai, logits_nai = self.segment.classifier(f_ai), self.segment.classifier(f_nai)
        weighted = features * lam[:, None, :]
        latent = None
        if self.fusion is not None:
            if self.cfg.fusion_latent == "posterior":
                latent, _ = self.frame.encode(features, lam, frozen=True)
            else:
                latent = self.frame.prior_latent(lam, sample=False)
            fused = self.fusion(weighted, latent, mask)
        else:
            fused = weighted
        if self.cfg.output == "average":
            fused = 0.5 * (features + fused)
        out = GAFOutput(fused, lam, f_ai, f_nai, logits_ai, logits_nai, latent)
        if reconstruct:
            out.recon, out.mu, out.logvar = self.frame(features, lam.detach())
        return out

    def cvae_loss(self, features: torch.Tensor, mask: torch.Tensor, attention: torch.Tensor | None = None,
                  *, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """L_CVAE (Eq. 7) of Frame-GAF given ``lambda`` (detached; computed here if not given).

        Returns ``{"total", "recon", "kl"}``; gradients reach Frame-GAF only.
        """
        features = features * mask[:, None, :].to(features.dtype)
        if attention is None:
            with torch.no_grad():
                attention = self.segment.attention(features, mask)
        lam = attention.detach()
        mu, logvar = self.frame.encode(features, lam)
        z = mu + randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.frame.decode(z, lam)
        total, rec, kl = L.cvae_loss(recon, features, mu, logvar, lam, mask, beta=beta)
        return {"total": total, "recon": rec, "kl": kl}

    def representation_loss(self, features: torch.Tensor, mask: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """L_R (Eq. 15): ``||f_t - f_psi(lambda_t, z_t)||^2`` through the frozen decoder.

        ``z_t`` comes from the prior ``N(lambda_t * 1, I)`` (one sample in
        training if ``cfg.rep_sample_latent``, else its mean). Gradients reach
        ``attention`` (hence Segment-GAF); the decoder's parameters get none.
        """
        features = features * mask[:, None, :].to(features.dtype)
        z = self.frame.prior_latent(attention, sample=self.training and self.cfg.rep_sample_latent)
        recon = self.frame.decode(z, attention, frozen=True)
        return L.representation_loss(recon, features, mask)

    def classification_loss(self, out: GAFOutput, labels: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """L_clf (Eq. 12) from ``out.logits_ai / logits_nai`` and per-video labels (list of ``(N_i,)``) or ``(B, K)``."""
        if out.logits_ai is None or out.logits_nai is None or self.num_classes is None:
            raise ValueError("classification_loss needs GAF built with num_classes")
        present = multi_hot(labels, self.num_classes, device=out.logits_ai.device)
        return L.clf_loss(out.logits_ai, out.logits_nai, present)


def stage_parameters(model: nn.Module, stage: str, frame: Sequence[nn.Parameter],
                     frozen: Sequence[nn.Parameter] = ()) -> list[nn.Parameter]:
    """The parameters of ``model`` one training stage updates (the two-stage schedule, paper §IV-B).

    ``"frame"``: ``frame`` (Frame-GAF's CVAE); ``"segment"``: every other
    parameter of ``model`` except ``frozen`` (e.g. a frozen backbone). The
    two never overlap.
    """
    if stage == "frame":
        return list(frame)
    if stage == "segment":
        ids = {id(p) for p in frame} | {id(p) for p in frozen}
        return [p for p in model.parameters() if id(p) not in ids]
    raise ValueError(f"stage must be 'frame' or 'segment', got {stage!r}")
