"""gaf classify VIDEO ... --backbone-weights W: Kinetics-400 action recognition on raw videos."""

from __future__ import annotations

import argparse

from gaf.commands._common import add_progress_argument

HELP = """\
Recognise the action in each video with a pretrained I3D, as DeepMind
evaluates it: RGB frames resampled to --fps, short side scaled to 256, centre
224×224 crop, pixels mapped to [-1, 1]; the whole clip (its first --max-frames
frames) goes through I3D and the clip-level logits are averaged over time.
Prints the --top classes with their probabilities, one table per video, and
writes them to --json if given.

A file that cannot be decoded is reported and skipped; the exit code is then 1.

Get the weights once with:  gaf weights i3d-kinetics400 --out i3d_k400_rgb.pt

examples:
  gaf classify clip.mp4 --backbone-weights i3d_k400_rgb.pt
  gaf classify videos/ --backbone-weights i3d_k400_rgb.pt --top 3 --json top3.json
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1000:  # gaf.data.video.MAX_FPS
        raise argparse.ArgumentTypeError(f"must be in (0, 1000], got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="Kinetics-400 action recognition on videos (pretrained I3D)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files and/or folders (searched recursively)")
    p.add_argument("--backbone-weights", required=True, metavar="W",
                   help="I3D weights with a class head (from `gaf weights i3d-kinetics400`)")
    p.add_argument("--top", type=_positive_int, default=5, help="classes to show per video (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the results to this JSON file")
    p.add_argument("--fps", type=_fps, default=25.0, help="sampling rate (default: %(default)s)")
    p.add_argument("--max-frames", type=_positive_int, default=250,
                   help="frames per video fed to I3D, from the start (default: %(default)s = 10 s at 25 fps)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from gaf.errors import ConfigError, DataError
    from gaf.io import refuse_input_as_output

    refuse_input_as_output(args.json, [args.backbone_weights, *args.videos], "--json")
    if args.json and Path(args.json).is_dir():
        raise ConfigError(f"--json {args.json}: is a folder; give a file name")
    from gaf.classification import classify_video, load_classifier
    from gaf.engine.runtime import select_device
    from gaf.extraction import collect_videos
    from gaf.io import atomic_write_json

    videos = collect_videos(args.videos)
    classifier = load_classifier(args.backbone_weights, select_device(args.device))
    results, failed = [], []
    for video in videos:
        try:
            result = classify_video(video, classifier, top=args.top, fps=args.fps, max_frames=args.max_frames,
                                    progress=args.progress)
        except DataError as exc:
            print(f"gaf classify: error: {exc}", file=sys.stderr)
            failed.append({"video": str(video), "error": str(exc)})
            continue
        results.append(result)
        print(result.format(), flush=True)
    if args.json:
        atomic_write_json(args.json, {
            "weights": classifier.weights,
            "settings": {"fps": args.fps, "short_side": 256, "crop": 224, "max_frames": args.max_frames,
                         "input": "RGB in [-1, 1]", "head": "clip-level (2, 7, 7) average pool, mean over time"},
            "videos": [r.to_json() for r in results],
            "failed": failed,
        })
        print(f"wrote {args.json}")
    return 1 if failed else 0
