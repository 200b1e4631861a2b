"""Benchmark: the full ``gaf extract`` pipeline vs the I3D forward alone, on a real clip.

    .venv/bin/python bench/extract.py [--video PATH] [--fps 30] [--window 16] [--stride 4]
                                      [--short-side 256] [--crop 224] [--batch-size 8] [--stream rgb|both]

On CPU with 2 threads (``torch.set_num_threads(2)``), and on CUDA when
available, it times in the same run:

* ``pipeline``: :func:`gaf.extraction.extract_features` on the clip (PyAV decode,
  resampling, resize + crop, windowing, batching, I3D, ``.npy`` +
  ``features.json`` writes) with an already built, untrained I3D (so the
  one-off model construction is not counted);
* ``forward``: the same I3D on the same windows, decoded and batched
  beforehand (``iter_clips``), forward only;
* ``decode``: :func:`gaf.data.video.iter_frames` alone (decode + resize + crop);
* with ``--stream both``: optical flow on the same frames (built-in, and TV-L1
  when OpenCV contrib is installed), and the two-stream pipeline.

Rates are sampled frames of the clip per second of wall time (each frame is in
``window / stride`` windows). ``ratio`` = pipeline time / forward time: the
cost of everything around the backbone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaf.data.flow import compute_flow, tvl1_available  # noqa: E402
from gaf.data.video import iter_clips, iter_frames  # noqa: E402
from gaf.extraction import ExtractConfig, extract_features  # noqa: E402
from gaf.models.backbones.i3d import InceptionI3d  # noqa: E402

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "v_Basketball_g01_c01.avi"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    tic = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - tic


def bench_device(args: argparse.Namespace, device: torch.device) -> list[tuple[str, int, float]]:
    """Rows ``(what, frames, seconds)`` on ``device``."""
    torch.manual_seed(0)
    models = {"rgb": InceptionI3d(3, num_classes=None).eval().to(device)}
    if args.stream == "both":
        models["flow"] = InceptionI3d(2, num_classes=None).eval().to(device)
    kw = dict(fps=args.fps, short_side=args.short_side, crop=args.crop)
    frames = np.stack(list(iter_frames(args.video, **kw)))
    n = len(frames)
    clips = list(iter_clips(args.video, window=args.window, stride=args.stride, batch_size=args.batch_size,
                            normalize=True, **kw))
    with torch.inference_mode():  # warm-up (CUDA context, cuDNN plans, allocator)
        models["rgb"].forward_features(clips[0].to(device))
    rows: list[tuple[str, int, float]] = []
    rows.append(("decode (iter_frames)", n, _timed(lambda: sum(1 for _ in iter_frames(args.video, **kw)), device)))

    def forward() -> None:
        with torch.inference_mode():
            for x in clips:
                models["rgb"].forward_features(x.to(device, non_blocking=True)).mean(-1).cpu()

    t_forward = _timed(forward, device)
    rows.append((f"forward I3D-rgb ({sum(len(c) for c in clips)} windows)", n, t_forward))

    cfg = ExtractConfig(stream="rgb", fps=args.fps, window=args.window, stride=args.stride,
                        short_side=args.short_side, crop=args.crop, batch_size=args.batch_size,
                        device=str(device), overwrite=True, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        t_pipe = _timed(lambda: extract_features([args.video], tmp, cfg, models={"rgb": models["rgb"]}), device)
    rows.append(("pipeline gaf extract rgb", n, t_pipe))

    if args.stream == "both":
        methods = ["builtin"] + (["tvl1"] if tvl1_available() and device.type == "cpu" else [])
        for method in methods:
            rows.append((f"flow {method} ({n - 1} pairs)", n, _timed(lambda: compute_flow(frames, method), device)))
        both = ExtractConfig(**{**cfg.__dict__, "stream": "both", "flow_method": "auto"})
        with tempfile.TemporaryDirectory() as tmp:
            t_both = _timed(lambda: extract_features([args.video], tmp, both, models=models), device)
        rows.append(("pipeline gaf extract rgb+flow", n, t_both))
    rows.append(("ratio pipeline / forward (rgb)", 0, t_pipe / t_forward))
    return rows


def print_table(title: str, rows: list[tuple[str, int, float]]) -> None:
    print(f"\n{title}")
    print(f"{'':38s} {'frames':>7s} {'seconds':>9s} {'frames/s':>9s}")
    for what, n, sec in rows:
        if what.startswith("ratio"):
            print(f"{what:38s} {'':>7s} {'':>9s} {sec:9.2f}x")
        else:
            print(f"{what:38s} {n:7d} {sec:9.2f} {n / sec:9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stream", choices=("rgb", "both"), default="rgb")
    parser.add_argument("--no-cuda", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*UNTRAINED.*")
    print(f"gaf extract benchmark: {args.video.name}, fps {args.fps}, window {args.window}, stride {args.stride}, "
          f"short side {args.short_side}, crop {args.crop}, batch {args.batch_size}; torch {torch.__version__}")
    torch.set_num_threads(2)
    print_table("CPU, 2 threads", bench_device(args, torch.device("cpu")))
    if torch.cuda.is_available() and not args.no_cuda:
        torch.backends.cudnn.benchmark = True
        print_table(f"CUDA ({torch.cuda.get_device_name()})", bench_device(args, torch.device("cuda")))
    else:
        print("\nCUDA: not available on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
