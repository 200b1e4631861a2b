"""Benchmark: the masked group norm on padded windows — fused kernel per valid length vs masked sums.

    .venv/bin/python bench/norm.py [--batch 8] [--channels 128] [--repeats 30]

Every conv block of the AFSD-style detector ends in
:class:`gaf.models.blocks.MaskedGroupNorm`, and a training batch's windows are
padded at the end to the longest one (a prefix of valid steps each). Times one
forward + backward of one norm per pyramid level (T = 512 halved five times),
``--batch`` windows of which all but the first are padded to 3/4 of T, with:

* ``masked sums``: statistics from mask-weighted sums (``_masked_norm``, any
  mask; what every padded batch took before);
* ``gaf``: :meth:`MaskedGroupNorm.forward` — the fused ``group_norm`` kernel
  once per run of equal valid lengths (prefix masks), the masked sums otherwise;
* ``fused, no padding``: ``group_norm`` on unpadded windows of the same shape,
  the floor.

The cases run interleaved, median of ``--repeats``; the table gives ms and the
ratio of the masked sums' time to each case's. It also checks that ``gaf`` and
the masked sums agree (max abs difference of outputs and input gradients <
1e-4; exit status 1 otherwise). Torch on 2 threads; under a minute. Run it as
``gaf demo`` trains, with OpenMP's default wait policy: under
``OMP_WAIT_POLICY=PASSIVE`` every op pays a thread wake-up and the per-length
path's extra small ops make it slower than the masked sums at T <= 128.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaf.models.blocks import MaskedGroupNorm  # noqa: E402

LEVELS = (512, 256, 128, 64, 32, 16)


def _cases(norm: MaskedGroupNorm) -> dict:
    def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return norm._masked_norm(x, mask.reshape(x.shape[0], x.shape[-1]).to(x.dtype))

    return {"masked sums": masked, "gaf": norm, "fused, no padding": lambda x, mask: norm(x, torch.ones_like(mask))}


def _step(fn, x: torch.Tensor, mask: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    y = fn(x, mask)
    (y * upstream).sum().backward()
    return y.detach(), x.grad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="windows per batch (default 8: stage segment's two passes of 4)")
    parser.add_argument("--channels", type=int, default=128, help="channels (default 128: demo's embed_dim)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    norm = MaskedGroupNorm(args.channels)
    cases = _cases(norm)
    times = {name: {T: [] for T in LEVELS} for name in cases}
    worst = 0.0
    for T in LEVELS:
        x = torch.randn(args.batch, args.channels, T)
        mask = torch.ones(args.batch, 1, T)
        mask[1:, :, T * 3 // 4:] = 0
        upstream = torch.randn_like(x)
        ref_y, ref_g = _step(cases["masked sums"], x, mask, upstream)
        y, g = _step(cases["gaf"], x, mask, upstream)
        worst = max(worst, float((y - ref_y).abs().max()), float((g - ref_g).abs().max()))
        for _ in range(3):
            for fn in cases.values():
                _step(fn, x, mask, upstream)
        for _ in range(args.repeats):
            for name, fn in cases.items():
                tic = time.perf_counter()
                _step(fn, x, mask, upstream)
                times[name][T].append(time.perf_counter() - tic)
    med = {name: {T: statistics.median(v) * 1e3 for T, v in per.items()} for name, per in times.items()}
    names = list(cases)
    print(f"MaskedGroupNorm forward + backward, batch {args.batch} x {args.channels} channels, "
          f"{args.batch - 1} of {args.batch} windows padded to 3/4, torch {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (ms; x = masked sums' time / this)")
    print(f"{'T':>6}" + "".join(f"{n:>26}" for n in names))
    for T in LEVELS + ("all",):
        row = {n: (sum(med[n].values()) if T == "all" else med[n][T]) for n in names}
        base = row["masked sums"]
        print(f"{T:>6}" + "".join(f"{row[n]:>17.2f} ({base / row[n]:4.2f}x)" for n in names))
    print(f"max |gaf - masked sums| (outputs, input gradients): {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
