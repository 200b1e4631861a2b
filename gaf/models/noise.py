"""Gaussian noise keyed by sample, so a sample draws the same noise whatever batch or process it is in.

Frame-GAF's CVAE samples ``z = mu + eps * sigma`` in training (and the prior
``N(lambda, I)`` for ``L_R``). With the global RNG, ``eps`` of a sample would
depend on which other samples share its batch and on the process that runs
it, so two processes with half a batch each could never take the step one
process takes on the whole batch. The training loop therefore gives every
item a seed (from the run seed, epoch, stage and dataset index) and runs the
step inside :func:`sample_seeds`; :func:`randn_like` then draws row ``b``
from sample ``b``'s own generator. Outside that block it is
:func:`torch.randn_like`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

__all__ = ["randn_like", "sample_seeds", "item_seed"]

_GENERATORS: list[torch.Generator] | None = None


def item_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer ``keys`` (e.g. run seed, epoch, stage, dataset index)."""
    h = 0x9E3779B97F4A7C15
    for k in keys:
        h ^= (int(k) + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


@contextmanager
def sample_seeds(seeds: Sequence[int] | None) -> Iterator[None]:
    """Within this block, row ``b`` of every :func:`randn_like` comes from a generator seeded with ``seeds[b]``.

    Successive draws advance each row's generator, so one sample's draws are
    a fixed sequence. ``None`` leaves the global RNG in charge.
    """
    global _GENERATORS
    previous = _GENERATORS
    _GENERATORS = None if seeds is None else [torch.Generator().manual_seed(int(s)) for s in seeds]
    try:
        yield
    finally:
        _GENERATORS = previous


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` ``(B, ...)``: per-sample generators inside :func:`sample_seeds`."""
    gens = _GENERATORS
    if gens is None:
        return torch.randn_like(x)
    if x.shape[0] != len(gens):
        raise ValueError(f"randn_like: a batch of {x.shape[0]} rows inside sample_seeds of {len(gens)} samples")
    rows = [torch.randn(tuple(x.shape[1:]), generator=g, dtype=torch.float32) for g in gens]
    return torch.stack(rows).to(device=x.device, dtype=x.dtype)
