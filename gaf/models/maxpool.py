"""A TemporalMaxer-class feature pyramid: parameter-free temporal max-pooling, nothing else.

Written from the TemporalMaxer paper (Tang et al., 2023, "TemporalMaxer:
Maximize Temporal Context with only Max Pooling for Temporal Action
Localization"). The paper keeps the projection in front of the pyramid and
the heads after it, and replaces every self-attention block of an
ActionFormer-class pyramid by a temporal max-pooling: level 0 is the
projection's output (here the detector's stride-1 conv stem), and each
further level is the previous one max-pooled over time (kernel 3, stride 2,
padding 1 in the paper; ``kernel`` here, padding ``kernel // 2``). The pyramid
has no learnable parameter; all learning happens in the stem and the heads.
Level ``l`` has ``ceil(T / 2**l)`` points, as every other pyramid of the
detector has.

Masked (:func:`~gaf.models.blocks.masked_downsample`): padded steps are
filled with ``-inf`` before pooling, so they never win a valid step's max;
output ``i`` is valid where input ``2i`` is (the mask of the other pyramids),
and a padded output is 0 (level 0's too). A window gives the same outputs alone or padded
inside a batch. Shapes: ``(B, E, T)`` features, ``(B, 1, T)`` float masks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gaf.errors import ConfigError
from gaf.models.blocks import masked_downsample

__all__ = ["MaxPoolPyramid"]


class MaxPoolPyramid(nn.Module):
    """``levels`` levels: the input, then ``levels - 1`` masked stride-2 max-pools of ``kernel`` steps (odd).

    ``forward(h (B, E, T), m (B, 1, T))`` -> per-level features ``[(B, E, T_l)]`` and masks ``[(B, 1, T_l)]``,
    level 0 first, ``T_l = ceil(T / 2**l)``. No parameters.
    """

    def __init__(self, levels: int, *, kernel: int = 3) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:  # a DetectorConfig built in Python skips the config file's check
            raise ConfigError(f"model.detector.maxpool_kernel: must be odd and >= 1, got {kernel}")
        self.levels, self.kernel = levels, kernel

    def forward(self, h: torch.Tensor, m: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        h = h.masked_fill(m <= 0, 0.0)  # level 0 too is 0 on padding, whatever the caller left there
        feats, masks = [h], [m]
        for _ in range(self.levels - 1):
            h, m = masked_downsample(h, m, kernel=self.kernel)
            feats.append(h)
            masks.append(m)
        return feats, masks
