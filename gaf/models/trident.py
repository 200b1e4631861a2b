"""The Trident head: boundaries as relative probability distributions over a point's neighbourhood.

Written from the TriDet paper (Shi et al., CVPR 2023). Instead of regressing a
distance directly, each side of a point's segment is a distribution over
``bins + 1`` candidate distances ``d = 0 .. bins`` (in steps of the point's
pyramid level). The logit of distance ``d`` for the start of point ``t`` is

    ``start_response[t - d] + centre_left[t, d]``

— the *start head*'s response at the candidate step (how much that step looks
like a start, a property of the step) plus the *centre head*'s relative score
from the point (how far this point believes its start is); the end side reads
``end_response[t + d]``. The predicted distance is the expectation of the
softmax over ``d``, so a sharp boundary anywhere in the neighbourhood pulls
every point's estimate to it, and the offset stays differentiable for the
(G)IoU loss.

Deviations, on purpose: the start / end responses are class-agnostic (one
channel; TriDet has one per class), so the decoded offsets stay one pair per
point for every head downstream — refinement, quality, GAF's two stages,
export — and memory does not grow with ActivityNet's 200 classes. The
boundary towers read detached pyramid features, as TriDet's do. A candidate
step beyond the sequence (or on padding) has response 0, the value a lone
sequence is padded with — so a window gives the same distances alone or padded
inside a batch.

Shapes: responses ``(B, T)``, centre logits ``(B, T, 2, bins + 1)``, distances
``(B, T, 2)`` in level steps (multiply by the level's stride for feature steps).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gaf.models.blocks import Conv1d, ConvBlock

__all__ = ["neighbour_responses", "trident_distances", "TridentHead"]


def neighbour_responses(response: torch.Tensor, bins: int, side: str) -> torch.Tensor:
    """``response (B, T)`` -> ``(B, T, bins + 1)``: column ``d`` holds ``response[t - d]`` (``side="start"``)
    or ``response[t + d]`` (``side="end"``), 0 beyond the sequence."""
    T = response.shape[-1]
    if side == "start":
        padded = F.pad(response, (bins, 0))
        return torch.stack([padded[:, bins - d:bins - d + T] for d in range(bins + 1)], -1)
    if side == "end":
        padded = F.pad(response, (0, bins))
        return torch.stack([padded[:, d:d + T] for d in range(bins + 1)], -1)
    raise ValueError(f"side: {side!r} is not 'start' or 'end'")


def trident_distances(centre: torch.Tensor, start_response: torch.Tensor, end_response: torch.Tensor
                      ) -> torch.Tensor:
    """Expected (left, right) distances ``(B, T, 2)`` in level steps, each in ``[0, bins]``.

    ``centre (B, T, 2, bins + 1)``: the centre head's logits per side and
    distance; ``start_response / end_response (B, T)``: the boundary heads'
    responses per step.
    """
    bins = centre.shape[-1] - 1
    left = torch.softmax(neighbour_responses(start_response, bins, "start") + centre[:, :, 0], dim=-1)
    right = torch.softmax(neighbour_responses(end_response, bins, "end") + centre[:, :, 1], dim=-1)
    d = torch.arange(bins + 1, device=centre.device, dtype=centre.dtype)
    return torch.stack([(left * d).sum(-1), (right * d).sum(-1)], -1)


class TridentHead(nn.Module):
    """Start and end boundary towers plus the centre head of one pyramid level (shared across levels).

    ``forward(feat (B, E, T), reg_feat (B, E, T), mask (B, 1, T) float)`` -> distances ``(B, 2, T)``
    (left, right) in level steps. ``feat`` is the level's pyramid feature (read detached by the boundary
    towers); ``reg_feat`` the output of the detector's regression tower (read by the centre head).
    """

    def __init__(self, dim: int, kernel: int, layers: int, bins: int, norm: str = "group") -> None:
        super().__init__()
        self.bins = bins
        self.start_tower = nn.ModuleList([ConvBlock(dim, dim, kernel, norm=norm) for _ in range(layers)])
        self.end_tower = nn.ModuleList([ConvBlock(dim, dim, kernel, norm=norm) for _ in range(layers)])
        self.start_out = Conv1d(dim, 1, kernel, padding=kernel // 2)
        self.end_out = Conv1d(dim, 1, kernel, padding=kernel // 2)
        self.centre = Conv1d(dim, 2 * (bins + 1), kernel, padding=kernel // 2)
        for head in (self.start_out, self.end_out, self.centre):  # start from uniform distributions
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def _response(self, tower: nn.ModuleList, out: nn.Conv1d, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for blk in tower:
            h, _ = blk(h, mask)
        return (out(h) * mask)[:, 0]

    def forward(self, feat: torch.Tensor, reg_feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = feat.detach() * mask
        start = self._response(self.start_tower, self.start_out, h, mask)
        end = self._response(self.end_tower, self.end_out, h, mask)
        B, _, T = reg_feat.shape
        centre = self.centre(reg_feat).view(B, 2, self.bins + 1, T).permute(0, 3, 1, 2)  # (B, T, 2, bins + 1)
        return trident_distances(centre, start, end).transpose(1, 2)
