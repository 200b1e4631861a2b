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
import torch.nn.functional as F
from torch.func import functional_call

from gaf import losses as L
from gaf.config import AT_LEAST_ONE, NON_NEGATIVE, ODD, ranged
from gaf.errors import ConfigError
from gaf.models.blocks import Conv1d, ConvBlock
from gaf.models.noise import randn_like

__all__ = [
    "GAFConfig",
    "GAFOutput",
    "SegmentGAF",
    "FrameGAF",
    "GenerativeFusion",
    "GAF",
    "multi_hot",
    "action_mask",
    "as_channels",
    "step_attention",
    "latent_dim",
    "TemporalSelfAttention",
    "WindowSelfAttention",
    "LinearSelfAttention",
]


@dataclass
class GAFConfig:
    """Settings of the GAF module (Frame-GAF CVAE and Segment-GAF attention)."""

    enabled: bool = True  # False: the plain detector (AFSD baseline, Table IV row 1)
    # lambda per step (B, T) ("scalar"), or per channel and step (B, C, T) as the official code ("channel");
    # with "channel" the CVAE latent is C-dimensional with prior N(lambda_c,t, 1) (latent_dim is ignored)
    attention: Literal["scalar", "channel"] = "scalar"
    # the attention head's temporal reach: its convs alone ("local", a few steps), convs then masked
    # multi-head self-attention over the whole window ("global", segment-level context; cost quadratic in T),
    # over the context_window steps centred on each step ("window": the same attention, cost linear in T),
    # or linear attention over the whole window ("linear": softmax's exp(q.k) replaced by
    # (elu(q)+1).(elu(k)+1), every step still sees every step, cost linear in T)
    context: Literal["local", "global", "window", "linear"] = "global"
    context_heads: int = ranged(4, AT_LEAST_ONE)  # heads of the self-attention (must divide attention_dim)
    context_window: int = ranged(129, ODD)  # steps each step attends to with context="window" (odd: centred)
    attention_dim: int = ranged(128, AT_LEAST_ONE)  # width of the attention head's temporal convs
    attention_layers: int = ranged(2, NON_NEGATIVE)  # temporal conv layers before the output layer
    attention_kernel: int = ranged(3, ODD)
    reduce_dim: int = ranged(64, AT_LEAST_ONE)  # channels after theta (1x1 conv), Eq. 8
    hidden_dim: int = ranged(128, AT_LEAST_ONE)  # width of the fc layers of encoder / decoder / fusion
    latent_dim: int = ranged(16, AT_LEAST_ONE)  # z_t dimensions
    fusion: Literal["generative", "attention"] = "generative"  # Eq. 16, or F' = F*lambda
    fusion_latent: Literal["posterior", "prior"] = "posterior"  # Z used by the fusion
    # Eq. 10's f_fpm "averages two layers as the input of the detector": F' = (F + enhanced) / 2
    # ("average"), the enhanced features alone ("enhanced": F' = F*lambda [+ Eq. 16 term]), or the
    # enhanced features of F*lambda / mean(lambda) ("normalized", the official F*lambda / sum(lambda) up to
    # the count of valid entries, which keeps F's scale).
    output: Literal["average", "enhanced", "normalized"] = "average"
    rep_sample_latent: bool = True  # L_R: z ~ prior N(lambda, I) in training (Eq. 15, L = 1)
    sample_latent_at_test: bool = False
    # lambda = the ground-truth action mask in training and at test: an upper bound on what any attention
    # can add. For measurement only (needs ground truth at test; gaf detect refuses such a model).
    oracle: bool = False

    def __post_init__(self) -> None:
        if self.context != "local" and self.attention_dim % self.context_heads:
            raise ConfigError(f"model.gaf.context_heads: {self.context_heads} must divide model.gaf.attention_dim "
                              f"({self.attention_dim}) for the {self.context} context")
        if self.context_window < 1 or self.context_window % 2 == 0:
            raise ConfigError(f"model.gaf.context_window: must be an odd number >= 1 (a window centred on each step), "
                              f"got {self.context_window}")


@dataclass
class GAFOutput:
    """What :meth:`GAF.forward` returns (shapes for input ``(B, C, T)``)."""

    features: torch.Tensor  # F' (B, C, T), zero on padding
    attention: torch.Tensor  # lambda (B, T) ("scalar") or (B, C, T) ("channel") in [0, 1], zero on padding
    f_ai: torch.Tensor  # (B, C) attention-pooled action feature (Eq. 11)
    f_nai: torch.Tensor  # (B, C) (1 - attention)-pooled background feature
    logits_ai: torch.Tensor | None  # (B, K + 1) classifier logits of f_ai (None without classes)
    logits_nai: torch.Tensor | None  # (B, K + 1)
    latent: torch.Tensor | None  # Z (B, D, T) used by the fusion (None for fusion="attention")
    recon: torch.Tensor | None = None  # f^ (B, C, T) Frame-GAF reconstruction (if asked)
    mu: torch.Tensor | None = None  # (B, D, T) encoder mean
    logvar: torch.Tensor | None = None  # (B, D, T) encoder log-variance


def multi_hot(labels: Sequence[torch.Tensor] | torch.Tensor, num_classes: int, device=None) -> torch.Tensor:
    """``(B, K)`` float multi-hot of the classes present, from per-video label lists."""
    if isinstance(labels, torch.Tensor) and labels.dim() == 2:
        return labels.float()
    out = torch.zeros(len(labels), num_classes, device=device)
    for b, lab in enumerate(labels):
        if len(lab):
            out[b, lab.to(out.device).long()] = 1.0
    return out


def as_channels(attention: torch.Tensor) -> torch.Tensor:
    """``lambda (B, T)`` -> ``(B, 1, T)``; ``(B, C, T)`` unchanged: broadcasts against ``F (B, C, T)``."""
    return attention[:, None, :] if attention.dim() == 2 else attention


def step_attention(attention: torch.Tensor) -> torch.Tensor:
    """One value per step: ``(B, T)`` as is, ``(B, C, T)`` averaged over channels."""
    return attention if attention.dim() == 2 else attention.mean(1)


def action_mask(segments: Sequence[torch.Tensor], length: int, device=None) -> torch.Tensor:
    """``(B, T)`` float: 1 where step ``t``'s centre ``t + 0.5`` lies in a segment, from per-window ``(N_i, 2)`` steps."""
    out = torch.zeros(len(segments), length, device=device)
    centres = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    for b, seg in enumerate(segments):
        seg = seg.reshape(-1, 2).to(device=device, dtype=torch.float32)
        if seg.shape[0]:
            inside = (centres[None, :] >= seg[:, :1]) & (centres[None, :] <= seg[:, 1:])
            out[b] = inside.any(0).float()
    return out


def _check_heads(dim: int, heads: int) -> None:
    """The context attentions' one condition on their heads: at least one, dividing the width."""
    if heads < 1 or dim % heads:
        raise ConfigError(f"model.gaf.context_heads: {heads} must be >= 1 and divide attention_dim ({dim})")


class TemporalSelfAttention(nn.Module):
    """Pre-LN masked multi-head self-attention over time with a residual: ``(B, D, T)`` -> ``(B, D, T)``.

    Padded steps are masked out as keys, so valid steps' outputs do not
    depend on padding; the output is zero on padding.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.norm = nn.LayerNorm(dim)
        # no projection biases: the key bias has a zero gradient (softmax is shift-invariant), which Adam would
        # turn into steps of +-lr along float noise; the LayerNorm's shift already gives q and v an offset
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, D, T)``, ``mask (B, T)`` bool -> ``(B, D, T)``."""
        h = self.norm(x.transpose(1, 2))
        y, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
        return (x + y.transpose(1, 2)) * mask[:, None, :].to(x.dtype)


class WindowSelfAttention(nn.Module):
    """:class:`TemporalSelfAttention` restricted to the ``window`` steps centred on each step (``window // 2``
    either side): ``(B, D, T)`` -> ``(B, D, T)``, cost and memory linear in ``T``.

    Keys outside the video or on padding are masked out, so a valid step's output depends only on the valid
    steps within its reach: the same value for a video alone, in a padded batch, or in any window of it that
    holds that reach. The output is zero on padding.
    """

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        _check_heads(dim, heads)
        if window < 1 or window % 2 == 0:
            raise ConfigError(f"model.gaf.context_window: must be an odd number >= 1, got {window}")
        self.heads, self.half = heads, window // 2
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # no biases, as TemporalSelfAttention's
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, D, T)``, ``mask (B, T)`` bool -> ``(B, D, T)``."""
        B, D, T = x.shape
        H, w = self.heads, self.half
        b = max(w, 16)  # queries per block: each block attends to its b + 2w keys through one batched product
        n = -(-T // b)
        q, k, v = self.qkv(self.norm(x.transpose(1, 2))).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q = F.pad(q, (0, 0, 0, n * b - T)).reshape(B, H, n, b, D // H)
        # each block's keys / values: steps [block start - w, block end + w) of the sequence padded by w (left)
        # and w + n*b - T (right), gathered (an index, not unfold: ONNX exports it), (B, H, n, b + 2w, D/H)
        j = torch.arange(b + 2 * w, device=x.device)[None, :]
        index = (torch.arange(n, device=x.device)[:, None] * b + j).reshape(-1)  # (n * (b + 2w),)
        k, v = (F.pad(t, (0, 0, w, w + n * b - T))[:, :, index].reshape(B, H, n, b + 2 * w, D // H) for t in (k, v))
        valid = F.pad(mask, (w, w + n * b - T))[:, index].reshape(B, n, b + 2 * w)
        i = torch.arange(b, device=x.device)[:, None]
        band = (j >= i) & (j <= i + 2 * w)  # key j of a block within w steps of its query i: (b, b + 2w)
        keep = band & valid[:, None, :, None, :]  # (B, 1, n, b, b + 2w)
        # a finite fill, not -inf: a padded query far from any valid step sees only masked keys (no NaN; zeroed)
        bias = torch.zeros(keep.shape, dtype=q.dtype, device=x.device).masked_fill_(~keep, torch.finfo(q.dtype).min)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, n, b, D/H)
        y = y.reshape(B, H, n * b, D // H)[:, :, :T].transpose(1, 2).reshape(B, T, D)
        return (x + self.proj(y).transpose(1, 2)) * mask[:, None, :].to(x.dtype)


class LinearSelfAttention(nn.Module):
    """Pre-LN masked multi-head *linear* attention over time with a residual: ``(B, D, T)`` -> ``(B, D, T)``.

    Kernelised attention (Katharopoulos et al., 2020): the weight of key ``s`` for query ``t`` is
    ``phi(q_t) . phi(k_s)`` normalised over the valid ``s``, ``phi(x) = elu(x) + 1 > 0``, so each step still
    sees the whole window, as :class:`TemporalSelfAttention`, but the ``T x T`` weights are never formed:
    ``y_t = phi(q_t) (sum_s phi(k_s) v_s^T) / (phi(q_t) . sum_s phi(k_s))``, cost and memory linear in ``T``.
    Padded steps are left out of both sums, so valid steps' outputs do not depend on padding; the output is
    zero on padding.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # no biases, as TemporalSelfAttention's
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, D, T)``, ``mask (B, T)`` bool -> ``(B, D, T)``."""
        B, D, T = x.shape
        H = self.heads
        m = mask.to(x.dtype)
        q, k, v = self.qkv(self.norm(x.transpose(1, 2))).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q = F.elu(q) + 1.0  # (B, H, T, D/H)
        k = (F.elu(k) + 1.0) * m[:, None, :, None]  # padded keys weigh nothing
        kv = k.transpose(2, 3) @ v  # (B, H, D/H, D/H): sum_s phi(k_s) v_s^T
        norm = q @ k.sum(2, keepdim=True).transpose(2, 3)  # (B, H, T, 1): phi(q_t) . sum_s phi(k_s)
        y = (q @ kv) / norm.clamp(min=1e-6)
        y = y.transpose(1, 2).reshape(B, T, D)
        return (x + self.proj(y).transpose(1, 2)) * m[:, None, :]


CONTEXTS = {"global": lambda dim, cfg: TemporalSelfAttention(dim, cfg.context_heads),
            "window": lambda dim, cfg: WindowSelfAttention(dim, cfg.context_heads, cfg.context_window),
            "linear": lambda dim, cfg: LinearSelfAttention(dim, cfg.context_heads)}


class SegmentGAF(nn.Module):
    """Attention head, attention pooling (Eq. 11) and the ``K + 1`` classifier (Eq. 12).

    The head: ``attention_layers`` masked temporal convs (+ masked
    self-attention over the window with ``context="global"``, over
    ``context_window`` steps around each step with ``"window"``, linear attention over the window with
    ``"linear"``), then a 1x1
    conv to 1 channel (``attention="scalar"``) or ``C`` channels
    (``"channel"``) and a sigmoid.
    """

    def __init__(self, in_channels: int, cfg: GAFConfig, num_classes: int | None = None) -> None:
        super().__init__()
        layers, c = [], in_channels
        for _ in range(cfg.attention_layers):
            layers.append(ConvBlock(c, cfg.attention_dim, cfg.attention_kernel))
            c = cfg.attention_dim
        self.layers = nn.ModuleList(layers)
        self.context = CONTEXTS[cfg.context](c, cfg) if cfg.context in CONTEXTS else None
        self.out = Conv1d(c, in_channels if cfg.attention == "channel" else 1, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        self.classifier = nn.Linear(in_channels, num_classes + 1) if num_classes else None

    def attention(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``features (B, C, T)``, ``mask (B, T)`` -> ``lambda`` in [0, 1], 0 on padding:
        ``(B, T)`` (scalar) or ``(B, C, T)`` (channel)."""
        m = mask[:, None, :].to(features.dtype)
        x = features * m
        for layer in self.layers:
            x, _ = layer(x, m)
        if self.context is not None:
            x = self.context(x, mask.bool())
        lam = torch.sigmoid(self.out(x)) * m
        return lam[:, 0] if lam.shape[1] == 1 else lam

    @staticmethod
    def pool(features: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 11 over valid steps: ``f_ai = sum_t lambda f / sum_t lambda``, ``f_nai`` with ``1 - lambda``.

        ``attention`` ``(B, T)`` or ``(B, C, T)`` (then each channel is pooled
        with its own weights); returns two ``(B, C)``.
        """
        m = mask[:, None, :].to(features.dtype)
        lam = as_channels(attention)
        w_ai = lam * m
        w_nai = (1.0 - lam) * m
        f_ai = (features * w_ai).sum(-1) / (w_ai.sum(-1) + eps)
        f_nai = (features * w_nai).sum(-1) / (w_nai.sum(-1) + eps)
        return f_ai, f_nai


def _frozen(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """Call ``module`` with its parameters detached: gradients reach the inputs only (without autograd,
    e.g. at inference or when tracing for export, a plain call: the same values)."""
    if not torch.is_grad_enabled():
        return module(*args)
    params = {k: v.detach() for k, v in module.named_parameters()}
    return functional_call(module, params, args)


def _condition_dim(in_channels: int, cfg: GAFConfig) -> int:
    """Channels of the CVAE's condition lambda_t: 1 (scalar) or C (channel)."""
    return in_channels if cfg.attention == "channel" else 1


def latent_dim(in_channels: int, cfg: GAFConfig) -> int:
    """Size of z_t: ``cfg.latent_dim`` (scalar attention) or C (channel: one latent per channel)."""
    return in_channels if cfg.attention == "channel" else cfg.latent_dim


class _Encoder(nn.Module):
    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        self.theta = Conv1d(in_channels, cfg.reduce_dim, 1)  # Eq. 8 theta
        self.fc = nn.Sequential(Conv1d(cfg.reduce_dim + _condition_dim(in_channels, cfg), cfg.hidden_dim, 1),
                                nn.ReLU(), Conv1d(cfg.hidden_dim, 2 * latent_dim(in_channels, cfg), 1))

    def forward(self, features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.theta(features), as_channels(attention)], dim=1)
        return self.fc(h)  # (B, 2D, T): mu, logvar


class _Decoder(nn.Module):
    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        d = latent_dim(in_channels, cfg) + _condition_dim(in_channels, cfg)
        self.fc = nn.Sequential(Conv1d(d, cfg.hidden_dim, 1), nn.ReLU(),
                                Conv1d(cfg.hidden_dim, cfg.hidden_dim, 1), nn.ReLU())
        self.theta_prime = Conv1d(cfg.hidden_dim, in_channels, 1)  # Eq. 9 theta'

    def forward(self, z: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return self.theta_prime(self.fc(torch.cat([z, as_channels(attention)], dim=1)))


class FrameGAF(nn.Module):
    """Per-step conditional VAE ``p(f_t | lambda_t, z_t)`` with prior ``N(lambda_t * 1, I)``.

    ``lambda_t`` is a scalar (prior mean ``lambda_t`` on every latent dim) or,
    with ``attention="channel"``, a C-vector (latent of size C, prior
    ``N(lambda_c,t, 1)`` per channel).
    """

    def __init__(self, in_channels: int, cfg: GAFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_dim = latent_dim(in_channels, cfg)
        self.encoder = _Encoder(in_channels, cfg)
        self.decoder = _Decoder(in_channels, cfg)

    def encode(self, features: torch.Tensor, attention: torch.Tensor, *, frozen: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, T), lambda`` -> ``mu, logvar`` each ``(B, D, T)`` (logvar clamped to [-10, 10])."""
        h = _frozen(self.encoder, features, attention) if frozen else self.encoder(features, attention)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, attention: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
        """``z (B, D, T)``, ``lambda`` -> ``f^ (B, C, T)`` (Eq. 9)."""
        return _frozen(self.decoder, z, attention) if frozen else self.decoder(z, attention)

    def prior_mean(self, attention: torch.Tensor) -> torch.Tensor:
        """The prior's mean ``(B, D, T)``: ``lambda_t`` on every dim (scalar) or ``lambda`` itself (channel)."""
        if attention.dim() == 3:
            return attention
        return attention[:, None, :].expand(-1, self.latent_dim, -1)

    def prior_latent(self, attention: torch.Tensor, sample: bool) -> torch.Tensor:
        """``z`` from the prior ``N(lambda, I)``: its mean, or a reparameterised sample."""
        z = self.prior_mean(attention)
        return z + randn_like(z) if sample else z

    def forward(self, features: torch.Tensor, attention: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``features``: ``(recon, mu, logvar)``.

        Training: ``z ~ q(z | f, lambda)`` (reparameterised). Eval: ``z`` is the
        prior mean (a prior sample if ``sample_latent_at_test``).
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
        self.theta = Conv1d(in_channels, cfg.reduce_dim, 1)
        self.fc = nn.Sequential(Conv1d(cfg.reduce_dim + latent_dim(in_channels, cfg), cfg.hidden_dim, 1),
                                nn.ReLU())
        self.theta_prime = Conv1d(cfg.hidden_dim, in_channels, 1)
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

    def attention(self, features: torch.Tensor, mask: torch.Tensor, oracle: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """λ for ``features (B, C, T)`` zero on padding: Segment-GAF's, or ``oracle (B, T)`` with ``cfg.oracle``."""
        if not self.cfg.oracle:
            return self.segment.attention(features, mask)
        if oracle is None:
            raise ValueError("GAF with model.gaf.oracle needs the ground-truth action mask (oracle=...)")
        lam = oracle.to(features.dtype) * mask.to(features.dtype)
        if self.cfg.attention == "channel":
            lam = lam[:, None, :].expand(-1, features.shape[1], -1)
        return lam

    def forward(self, features: torch.Tensor, mask: torch.Tensor, *, reconstruct: bool = False,
                oracle: torch.Tensor | None = None) -> GAFOutput:
        """``features (B, C, T)``, ``mask (B, T)`` bool -> :class:`GAFOutput`.

        ``reconstruct=True`` also runs Frame-GAF on ``(F, lambda.detach())``
        and fills ``recon / mu / logvar``. ``oracle (B, T)``: the
        ground-truth action mask, used as λ when ``cfg.oracle``.
        """
        m = mask[:, None, :].to(features.dtype)
        features = features * m
        lam = self.attention(features, mask, oracle)
        f_ai, f_nai = SegmentGAF.pool(features, lam, mask)
        logits_ai = logits_nai = None
        if self.segment.classifier is not None:
            logits_ai, logits_nai = self.segment.classifier(f_ai), self.segment.classifier(f_nai)
        lam_c = as_channels(lam)  # (B, 1 or C, T), zero on padding
        weighted = features * lam_c
        if self.cfg.output == "normalized":
            # the official F*lambda / sum(lambda), times the count of valid entries: F's scale is kept
            mean = lam_c.sum((1, 2)) / (m.sum((1, 2)) * lam_c.shape[1]).clamp(min=1.0)
            weighted = weighted / mean.clamp(min=1e-3)[:, None, None]
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
                  *, beta: float = 1.0, oracle: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """L_CVAE (Eq. 7) of Frame-GAF given ``lambda`` (detached; computed here if not given).

        Returns ``{"total", "recon", "kl"}``; gradients reach Frame-GAF only.
        """
        features = features * mask[:, None, :].to(features.dtype)
        if attention is None:
            with torch.no_grad():
                attention = self.attention(features, mask, oracle)
        lam = attention.detach()
        mu, logvar = self.frame.encode(features, lam)
        z = mu + randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.frame.decode(z, lam)
        total, rec, kl = L.cvae_loss(recon, features, mu, logvar, self.frame.prior_mean(lam), mask, beta=beta)
        return {"total": total, "recon": rec, "kl": kl}

    def representation_loss(self, features: torch.Tensor, mask: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """L_R (Eq. 15): ``||f_t - f_psi(lambda_t, z_t)||^2`` through the frozen decoder.

        ``z_t`` comes from the prior ``N(lambda_t, I)`` (one sample in
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

    @torch.no_grad()
    def init_class_prior(self, frequency: torch.Tensor) -> None:
        """Start the L_clf classifier at the class prior instead of p = 0.5 for every output.

        ``frequency (K,)``: the fraction of training windows holding each
        class. Half the classifier's inputs are f_nai (target 0 for every
        class, 1 for background), so class ``c`` starts at
        ``logit(frequency_c / 2)`` and background at ``logit(1/2) = 0``.
        """
        head = self.segment.classifier
        if head is None:
            return
        p = (frequency.to(head.bias.dtype).clamp(1e-4, 1.0) / 2).clamp(max=0.5)
        head.bias[:-1] = torch.log(p) - torch.log1p(-p)
        head.bias[-1] = 0.0
