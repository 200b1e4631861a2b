"""gaf detect VIDEO --ckpt CKPT: actions in one raw video (extract → detect → Soft-NMS)."""

from __future__ import annotations

import argparse

from gaf.commands._common import add_progress_argument

HELP = """\
Detect the actions in one raw video with a trained detector: I3D features are
extracted with the settings the checkpoint was trained on (fps, stride,
window from its dataset config; the stream from the model's input width:
1024 → RGB, 2048 → RGB ⊕ flow), then the model runs over the video's
eval windows and the detections go through the checkpoint's Soft-NMS, as
in `gaf eval`. Prints a table of the detections with score >= the
threshold and writes, under --out:

  <video_id>.json            ActivityNet results JSON (segments in seconds)
  <video_id>_timeline.png    detections, with the attention λ(t) under them
  features/                  extracted features (reused by a later run)

The model must be trained on I3D features (e.g. THUMOS14 I3D, or your own
`gaf extract` output); pass the I3D weights it was trained with. A model
trained on `gaf extract` output records every preprocessing setting (fps,
window, stride, short side, crop, the weights' sha256): gaf detect extracts
with them and refuses other weights or an explicit --short-side / --crop that
differs. Features cached under --out/features/ with other settings are
refused, never mixed.

examples:
  gaf detect match.mp4 --ckpt work_dirs/thumos14_i3d/final.pt \\
      --backbone-weights rgb_imagenet.pt flow_imagenet.pt --out detections/
  gaf detect clip.avi --ckpt rgb/final.pt --backbone-weights rgb_imagenet.pt --top 5
"""


def _pixels(text: str) -> int | None | str:
    if text.lower() in ("none", "auto"):
        return text.lower() if text.lower() == "auto" else None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 or 'none', got {text}")
    return value


def _unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect actions in a raw video (table, JSON, timeline)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", help="the video file")
    p.add_argument("--ckpt", required=True, help="detector checkpoint trained on I3D features (final.pt)")
    p.add_argument("--backbone-weights", nargs="+", metavar="WEIGHTS", default=None,
                   help="I3D state dict(s): RGB.pt, FLOW.pt, or RGB.pt FLOW.pt for an RGB ⊕ flow model "
                        "(default: an untrained backbone, with a warning)")
    p.add_argument("--out", default="detections", metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.add_argument("--score-threshold", type=_unit, default=0.2,
                   help="keep detections with at least this score (default: %(default)s)")
    p.add_argument("--top", type=_positive, default=None, metavar="N", help="keep at most N detections")
    p.add_argument("--short-side", type=_pixels, default="auto",
                   help="resize the short side to this before I3D; auto = as the training features were made "
                        "(recorded by gaf extract / gaf train), else 256 (default: %(default)s)")
    p.add_argument("--crop", type=_pixels, default="auto",
                   help="centre crop size, or 'none'; auto = as the training features, else 224 "
                        "(default: %(default)s)")
    p.add_argument("--stream", choices=("rgb", "flow"), default=None,
                   help="for a 1024-wide model: the I3D stream it was trained on (default: from the config)")
    p.add_argument("--flow-method", choices=("auto", "tvl1", "builtin"), default="auto",
                   help="optical flow for flow models (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive, default=8, help="windows per backbone batch (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gaf.detect import detect_video
    from gaf.engine.runtime import setup_logging
    from gaf.viz import format_detections_table

    setup_logging(None)
    result = detect_video(
        args.video, args.ckpt, out_dir=args.out, backbone_weights=args.backbone_weights or (),
        score_threshold=args.score_threshold, top=args.top, short_side=args.short_side, crop=args.crop,
        stream=args.stream, flow_method=args.flow_method, batch_size=args.batch_size, device=args.device,
        progress=args.progress)
    kept = len(result.detections)
    print(f"{result.video_id} ({result.duration:.1f} s, {result.stream} features): {kept} detection(s) with "
          f"score >= {args.score_threshold:g}" + (f" (top {args.top})" if args.top else "")
          + f", {result.num_candidates} after post-processing")
    print(format_detections_table(result.detections))
    print(f"results: {result.json_path}")
    print(f"timeline: {result.timeline_path}")
    return 0
