"""Inception-I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

The network inflates Inception-v1 to 3-D. Its module and parameter names
follow the layout of the widely shared PyTorch I3D checkpoints (pytorch-i3d's
``rgb_imagenet.pt`` / ``flow_imagenet.pt``, Kinetics-400, and the Charades
fine-tunes with 157 classes), so those state dicts load as they are::

    Conv3d_1a_7x7.conv3d.weight          (64, C_in, 7, 7, 7)
    Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}
    Mixed_3b.{b0,b1a,b1b,b2a,b2b,b3b}.conv3d.weight / .bn.*
    ...
    Mixed_5c.b3b.bn.running_var
    logits.conv3d.{weight,bias}           (num_classes, 1024, 1, 1, 1)

Convolutions and max-pools use TensorFlow "SAME" padding computed from the
input size at run time (the extra pixel at the end; zeros for convolutions,
−∞ for max-pools), as the original TF model does; batch norm has
``eps=1e-3``. :meth:`InceptionI3d.clip_logits` is DeepMind's clip-level head.

DeepMind's own Kinetics-400 checkpoint (Flax naming) is converted to this
layout by :mod:`gaf.models.backbones.i3d_weights` (``gaf weights``), into a
file that :func:`load_i3d_weights` reads like any other.

Inputs are clips ``(N, C, T, H, W)``: RGB (``C = 3``) in [-1, 1], or optical
flow (``C = 2``, x then y) clipped to ±20 px and scaled to [-1, 1]. The
temporal stride is 8 and the spatial stride 32: a 16×224×224 clip gives a
Mixed_5c map of 2×7×7.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from gaf.errors import CheckpointError, ConfigError

__all__ = ["InceptionI3d", "Unit3D", "InceptionModule", "load_i3d_weights", "load_i3d_state", "read_i3d_file",
           "build_i3d", "VALID_ENDPOINTS"]

log = logging.getLogger("gaf")

Triple = tuple[int, int, int]

VALID_ENDPOINTS: tuple[str, ...] = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
    "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)

# Inception blocks: input channels and the six branch widths
# (b0 1×1, b1a 1×1 → b1b 3×3, b2a 1×1 → b2b 3×3, b3b 1×1 after the 3×3 max-pool).
_MIXED: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
_POOLS: dict[str, tuple[Triple, Triple]] = {  # kernel, stride
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}


def _same_pad(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """Pad ``x (N, C, T, H, W)`` with ``value`` so a ``kernel``/``stride`` op gives ``ceil(size / stride)``."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        rem = size % s
        total = max(k - (s if rem == 0 else rem), 0)
        pads += [total // 2, total - total // 2]  # TF puts the odd pixel at the end
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d ("SAME" padding) → BatchNorm3d → ReLU; ``conv3d`` and ``bn`` as in the checkpoints."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), *, batch_norm: bool = True, bias: bool = False,
                 activation: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.activation else x


class MaxPool3dSame(nn.Module):
    """3-D max-pool with TF "SAME" padding: padded cells are −∞, so they never win (any input sign)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride, -math.inf), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: ``b0``, ``b1a→b1b``, ``b2a→b2b``, pool→``b3b``."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """Inception-I3D up to ``final_endpoint``, with an optional ``logits`` head.

    ``in_channels``: 3 (RGB) or 2 (flow). ``num_classes``: size of the
    ``logits`` head (400 Kinetics, 157 Charades); None builds no head. The
    head exists only when ``final_endpoint == "Mixed_5c"``. ``dropout``: drop
    probability before the head. Endpoints are direct children named as in
    :data:`VALID_ENDPOINTS`.
    """

    def __init__(self, in_channels: int = 3, num_classes: int | None = 400, final_endpoint: str = "Mixed_5c",
                 dropout: float = 0.5) -> None:
        super().__init__()
        if final_endpoint not in VALID_ENDPOINTS:
            raise ValueError(f"final_endpoint {final_endpoint!r}: expected one of {', '.join(VALID_ENDPOINTS)}")
        self.in_channels = in_channels
        self.final_endpoint = final_endpoint
        self.endpoints: list[str] = list(VALID_ENDPOINTS[: VALID_ENDPOINTS.index(final_endpoint) + 1])
        channels = in_channels
        for name in self.endpoints:
            if name == "Conv3d_1a_7x7":
                module: nn.Module = Unit3D(channels, 64, (7, 7, 7), (2, 2, 2))
                channels = 64
            elif name == "Conv3d_2b_1x1":
                module = Unit3D(channels, 64)
            elif name == "Conv3d_2c_3x3":
                module, channels = Unit3D(channels, 192, (3, 3, 3)), 192
            elif name in _POOLS:
                module = MaxPool3dSame(*_POOLS[name])
            else:
                cin, widths = _MIXED[name]
                module = InceptionModule(cin, widths)
                channels = module.out_channels
            self.add_module(name, module)
        self.feature_dim = channels
        self.num_classes = num_classes if final_endpoint == "Mixed_5c" else None
        self.dropout = nn.Dropout(dropout)
        self.logits = (Unit3D(channels, self.num_classes, batch_norm=False, bias=True, activation=False)
                       if self.num_classes else None)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convolutions, so activations keep their scale through an untrained network."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if self.logits is not None:
            nn.init.normal_(self.logits.conv3d.weight, std=0.01)
            nn.init.zeros_(self.logits.conv3d.bias)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"I3D expects clips (N, {self.in_channels}, T, H, W), got shape {tuple(x.shape)}")

    def extract_endpoints(self, x: torch.Tensor, names: Sequence[str] = ("Mixed_4f", "Mixed_5c")
                          ) -> dict[str, torch.Tensor]:
        """Full 5-D maps ``(N, C_e, T_e, H_e, W_e)`` of the endpoints ``names`` (for end-to-end training)."""
        self._check(x)
        unknown = [n for n in names if n not in self.endpoints]
        if unknown:
            raise ValueError(f"endpoint(s) {unknown} not in this model (built up to {self.final_endpoint})")
        wanted, last = set(names), max(self.endpoints.index(n) for n in names)
        out: dict[str, torch.Tensor] = {}
        for name in self.endpoints[: last + 1]:
            x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(N, C, T, H, W)`` → the final endpoint averaged over space, ``(N, feature_dim, T')``.

        ``feature_dim`` is 1024 for Mixed_5c; ``T' = ceil(T / 8)``.
        """
        return self.forward_map(x).mean(dim=(3, 4))

    def forward_map(self, x: torch.Tensor, *, wrap: Callable[[list[str]], Iterable[str]] = iter) -> torch.Tensor:
        """Clips ``(N, C, T, H, W)`` → the final endpoint's map ``(N, feature_dim, T', H', W')``.

        ``wrap`` wraps the list of endpoint names run in order (e.g. in a
        progress bar, for one long clip).
        """
        self._check(x)
        for name in wrap(self.endpoints):
            x = getattr(self, name)(x)
        return x

    def _head(self) -> Unit3D:
        if self.logits is None:
            raise RuntimeError("this I3D has no logits head (num_classes=None or final_endpoint before Mixed_5c)")
        return self.logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-time-step class logits ``(N, num_classes, T')`` (space averaged, then the 1×1×1 head)."""
        head = self._head()
        feats = self.forward_features(x)
        return head(self.dropout(feats[..., None, None]))[..., 0, 0]

    def clip_logits(self, x: torch.Tensor, *, wrap: Callable[[list[str]], Iterable[str]] = iter) -> torch.Tensor:
        """Clip-level class logits ``(N, num_classes)``, computed as DeepMind's I3D does.

        The Mixed_5c map ``(N, 1024, T', H', W')`` (``T' = ceil(T / 8)``) is
        average-pooled with a (2, 7, 7) window, stride 1, no padding (a map
        smaller than the window is pooled whole), then dropout and the 1×1×1
        logits conv, and the logits are averaged over what is left: for a
        224×224 clip, ``T' − 1`` time positions, in which the first and last
        steps weigh half as much as the others. :meth:`forward` weighs every
        step alike; the two differ by up to ~1.4 logits on real clips.
        ``wrap`` as in :meth:`forward_map`.
        """
        head = self._head()
        fmap = self.forward_map(x, wrap=wrap)
        window = tuple(min(k, s) for k, s in zip((2, 7, 7), fmap.shape[2:]))
        pooled = F.avg_pool3d(fmap, window, stride=1)
        return head(self.dropout(pooled)).mean(dim=(2, 3, 4))


# ---------------------------------------------------------------------- weights
def read_i3d_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an I3D weights file → ``(state_dict, metadata)``, with ``weights_only=True``.

    Accepts a raw state dict (pytorch-i3d's ``rgb_imagenet.pt``), or
    ``{"state_dict": ..., "meta": {...}}`` (gaf's own files, written by
    ``gaf weights``; ``meta`` holds ``source``, ``sha256``, ``labels``, ...;
    ``{}`` when absent). ``module.`` prefixes are stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: I3D weights file not found")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / non-torch files
        raise CheckpointError(f"{path}: cannot read I3D weights ({type(exc).__name__}: {str(exc)[:200]})") from None
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = dict(obj["meta"]) if isinstance(obj.get("meta"), Mapping) else {}
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not an I3D state dict (expected a mapping of tensors, "
                              "or {'state_dict': ...})")
    state = {}
    for key, value in obj.items():
        key = str(key)
        while key.startswith("module."):  # saved from DataParallel / DDP
            key = key[len("module."):]
        state[key] = value
    return state, meta


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
    log.warning(message)


def load_i3d_weights(model: InceptionI3d, path: str | os.PathLike[str]) -> InceptionI3d:
    """Load a pytorch-i3d-layout state dict from ``path`` into ``model`` (in place; returned).

    Accepts a raw state dict or ``{"state_dict": ...}``, with or without
    ``module.`` prefixes; loaded with ``weights_only=True``. Keys of
    endpoints deeper than the model's ``final_endpoint`` are ignored, and so
    are missing ``num_batches_tracked`` buffers (old checkpoints predate
    them). The ``logits`` head is loaded when it fits; a head of another
    class count (or none) is skipped with a warning. Any other missing key,
    unexpected key or shape mismatch raises :class:`CheckpointError` listing
    them.
    """
    state, _ = read_i3d_file(path)
    return load_i3d_state(model, state, source=str(path))


def load_i3d_state(model: InceptionI3d, state: Mapping[str, torch.Tensor], *, source: str) -> InceptionI3d:
    """Load a pytorch-i3d-layout ``state`` into ``model`` with the checks of :func:`load_i3d_weights`;
    ``source`` names the file in messages."""
    path = source
    own = model.state_dict()
    not_built = set(VALID_ENDPOINTS) - set(model.endpoints)
    load: dict[str, torch.Tensor] = {}
    missing, unexpected, mismatched, logits_skipped = [], [], [], []
    for key, value in state.items():
        head = key.split(".", 1)[0]
        if head in not_built:
            continue
        if head == "logits" and (model.logits is None or key not in own or own[key].shape != value.shape):
            logits_skipped.append(key)
            continue
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            mismatched.append(f"{key} (file {tuple(value.shape)}, model {tuple(own[key].shape)})")
        else:
            load[key] = value
    for key in own:
        if key in state or key.endswith("num_batches_tracked"):
            continue
        if key.startswith("logits."):
            logits_skipped.append(key)
        else:
            missing.append(key)
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{path}: does not fit InceptionI3d(in_channels={model.in_channels}, "
                              f"final_endpoint={model.final_endpoint!r}): " + "; ".join(problems))
    if logits_skipped and model.logits is not None:
        _warn(f"{path}: logits head not loaded (checkpoint classes differ from num_classes="
              f"{model.num_classes} or the file has no head); it stays randomly initialised")
    model.load_state_dict(load, strict=False)
    return model


def build_i3d(stream: str = "rgb", weights: str | os.PathLike[str] | None = None, *,
              num_classes: int | None = None, final_endpoint: str = "Mixed_5c",
              warn_untrained: bool = True) -> InceptionI3d:
    """An I3D for ``stream`` ``"rgb"`` (3 channels) or ``"flow"`` (2), with ``weights`` loaded.

    No head by default (a feature extractor; a checkpoint's logits are then
    ignored). Without ``weights`` the network is randomly initialised and a
    loud warning says its features are those of an untrained network (unless
    ``warn_untrained=False``: the caller loads trained weights next). The
    model is returned in train mode; call ``.eval()`` to extract features.
    """
    if stream not in ("rgb", "flow"):
        raise ConfigError(f"I3D stream {stream!r}: expected 'rgb' or 'flow'")
    model = InceptionI3d(in_channels=3 if stream == "rgb" else 2, num_classes=num_classes,
                         final_endpoint=final_endpoint)
    if weights:
        load_i3d_weights(model, weights)
        log.info("I3D %s: loaded weights from %s", stream, weights)
    elif warn_untrained:
        _warn(f"I3D {stream}: no backbone weights given: features come from an UNTRAINED, randomly "
              "initialised network (get pretrained RGB weights with `gaf weights i3d-kinetics400 --out W.pt`, "
              "then pass --backbone-weights W.pt; pytorch-i3d's rgb_imagenet.pt / flow_imagenet.pt work too)")
    return model


