"""gaf extract VIDEO_OR_DIR ... --out DIR: raw videos → I3D feature files."""

from __future__ import annotations

import argparse

from gaf.commands._common import add_progress_argument

HELP = """\
Decode videos (PyAV), sample them at --fps, resize the short side to
--short-side, centre-crop --crop pixels, cut windows of --window frames every
--stride frames and run I3D on them: one T×C float32 file DIR/<video_id>.npy
per video (C = 1024 per stream; rgb ⊕ flow = 2048 for --stream both), step t
covering frames [t*stride, t*stride + window), plus DIR/features.json (settings
and, per video, duration, steps and source). These are the files the feature
datasets read (dataset.feature_stride = stride, dataset.num_frames = window).

Existing .npy files are skipped unless --overwrite. A file that cannot be
decoded is skipped and listed at the end; the exit code is then 1.

Without --backbone-weights the I3D is randomly initialised (a warning says
so). Get DeepMind's Kinetics-400 RGB weights with
`gaf weights i3d-kinetics400 --out i3d_k400_rgb.pt`; pytorch-i3d state dicts
(rgb_imagenet.pt, flow_imagenet.pt) load too. features.json records every
preprocessing setting and each weights file's sha256; an --out folder made
with other settings is refused. Keep --short-side near --crop (e.g.
--short-side 128 --crop 112): a small crop of a 256-pixel frame sees only its
centre. Flow is TV-L1 when OpenCV contrib is installed
(pip install opencv-contrib-python-headless), else a built-in Horn-Schunck.

examples:
  gaf extract videos/ --out features/i3d --backbone-weights i3d_k400_rgb.pt
  gaf extract a.mp4 b.mp4 --out feats --stream both --backbone-weights rgb.pt flow.pt
  torchrun --nproc_per_node 4 -m gaf extract videos/ --out feats   # videos shared over 4 GPUs
"""


def _fps(text: str) -> float | None:
    if text.lower() in ("native", "source", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'native', got {text!r}") from None
    if not 0 < value <= 1000:  # gaf.data.video.MAX_FPS (not imported: this module stays light)
        raise argparse.ArgumentTypeError(f"must be in (0, 1000], got {text}")
    return value


def _pixels(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract I3D features from raw videos", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files and/or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for <video_id>.npy and features.json")
    p.add_argument("--stream", choices=("rgb", "flow", "both"), default="rgb", help="I3D stream(s) (default: %(default)s)")
    p.add_argument("--fps", type=_fps, default=30.0, help="sampling rate, or 'native' (default: %(default)s)")
    p.add_argument("--window", type=int, default=16, help="frames per feature step (default: %(default)s)")
    p.add_argument("--stride", type=int, default=4, help="frames between feature steps (default: %(default)s)")
    p.add_argument("--short-side", type=_pixels, default=256, help="resize the short side to this (default: %(default)s)")
    p.add_argument("--crop", type=_pixels, default=224, help="centre crop size, or 'none' (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per backbone batch (default: %(default)s)")
    p.add_argument("--backbone-weights", nargs="+", metavar="WEIGHTS", default=None,
                   help="I3D state dict(s): RGB.pt for rgb, FLOW.pt for flow, RGB.pt FLOW.pt for both")
    p.add_argument("--flow-method", choices=("auto", "tvl1", "builtin"), default="auto",
                   help="optical flow: TV-L1 (OpenCV contrib) or the built-in (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="recompute videos whose .npy exists")
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gaf.engine.runtime import setup_logging
    from gaf.errors import ConfigError
    from gaf.extraction import ExtractConfig, extract_features

    weights = list(args.backbone_weights or [])
    streams = ["rgb", "flow"] if args.stream == "both" else [args.stream]
    if weights and len(weights) != len(streams):
        raise ConfigError(f"--backbone-weights: --stream {args.stream} takes {len(streams)} file(s) "
                          f"({' '.join(s.upper() + '.pt' for s in streams)}), got {len(weights)}")
    named = dict(zip(streams, weights))
    cfg = ExtractConfig(stream=args.stream, fps=args.fps, window=args.window, stride=args.stride,
                        short_side=args.short_side, crop=args.crop, batch_size=args.batch_size,
                        rgb_weights=named.get("rgb"), flow_weights=named.get("flow"),
                        flow_method=args.flow_method, device=args.device, overwrite=args.overwrite,
                        progress=args.progress)
    from gaf.engine.distributed import init_distributed

    ctx = init_distributed(args.device)
    setup_logging(None)
    report = extract_features(args.inputs, args.out, cfg, ctx=ctx)
    if not ctx.is_main:  # rank 0 prints the joint report and sets the exit status
        return 0
    print(report.format())
    return 0 if report.ok else 1
