"""gaf data import SRC --out ANNOTATION.json: a user's annotations into gaf's annotation JSON (no torch)."""

from __future__ import annotations

import argparse

HELP = """\
Turn the annotations you have into gaf's annotation JSON (the ActivityNet /
ActionFormer database layout every gaf config reads), checking every row.

SRC is any of:
  - a CSV or TSV table, one row per action instance, with a header naming
      video  (or video_id, video_name, vid)
      start  (or t_start, start_time)     times in seconds, or frame numbers
      end    (or t_end, end_time)         with --units frames
      label  (or class, action, label_name)
    and optionally subset (or split), duration (s), fps; names are read
    case-insensitively, other columns are ignored
  - a folder of THUMOS14 per-class files (<Class>_val.txt, <Class>_test.txt),
    a THUMOS14 CSV (test_Annotation.csv)
  - an ActivityNet / ActionFormer JSON, BSN's anet_anno_action.json

Durations and fps: from the videos with --videos DIR (<DIR>/<video>.<ext>;
an annotated video without a file is a bad row), else from the duration /
fps columns or fields, else --fps and the video's last annotated end time
(with a warning: the true duration may be longer).

Subsets: the file's (subset column, JSON field); when it has none, or with
--split SHARE, whole videos go to --train-subset / --test-subset (training /
validation) by a seeded draw: SHARE of them to training (default 0.8).

Bad rows: a bad number, an empty label, an unsafe video id, a negative time,
end <= start, an end more than 1 s after the video's duration, a video with
different subset / duration / fps on two rows, a video not in --videos, an
exact duplicate. Each is named with its file and line (and column); nothing
is written until all rows are good, or --skip-bad drops them (counted).
The output is written atomically; an existing file only with --force.

examples:
  gaf data import labels.csv --out data/annotations.json --videos data/videos
  gaf data import labels.tsv --out ann.json --units frames --fps 30 --split 0.75 --seed 1
  gaf data import thumos14_annotations/ --out thumos14.json --skip-bad
  gaf data import anet_anno_action.json --out anet.json --skip-bad --force
"""


def add_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("import", help="annotations (CSV / TSV, THUMOS14, ActivityNet) -> gaf's annotation JSON",
                           description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="annotation table, THUMOS14 class-file folder or JSON (formats above)")
    p.add_argument("--out", required=True, metavar="ANNOTATION.json", help="the annotation JSON to write")
    p.add_argument("--videos", metavar="DIR", help="read each video's duration and fps from DIR/<video>.<ext>")
    p.add_argument("--units", choices=("seconds", "frames"), default="seconds",
                   help="what the table's start / end are (default: %(default)s)")
    p.add_argument("--fps", type=float, metavar="F",
                   help="frames per second: turns --units frames into seconds, and the fps of videos with none")
    p.add_argument("--split", type=float, metavar="SHARE",
                   help="assign whole videos by a seeded draw, SHARE of them to the training subset (default: "
                        "0.8, only when the source has no subsets)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --split draw (default: %(default)s)")
    p.add_argument("--train-subset", metavar="NAME", help="subset name of the split's training videos (default: "
                                                          "training)")
    p.add_argument("--test-subset", metavar="NAME", help="subset name of the split's other videos (default: "
                                                         "validation)")
    p.add_argument("--keep-empty", action="store_true",
                   help="keep the videos of --videos DIR with no annotation, as background-only videos")
    p.add_argument("--skip-bad", action="store_true", help="drop bad rows (counted by kind) instead of refusing")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    from pathlib import Path

    from gaf.data.activitynet import write_activitynet
    from gaf.data.importer import bad_rows_error, bad_rows_summary, import_annotations, train_test_subsets
    from gaf.errors import OutputError
    from gaf.io import refuse_input_as_output

    out = Path(args.out)
    refuse_input_as_output(out, [args.src], "--out")
    if out.is_file() and not args.force:  # a device (/dev/null) is written into, a folder refused by the writer
        raise OutputError(f"--out {out}: exists; --force overwrites it")
    result = import_annotations(args.src, videos_dir=args.videos, units=args.units, fps=args.fps,
                                train_share=args.split, seed=args.seed, train_subset=args.train_subset,
                                test_subset=args.test_subset, keep_empty=args.keep_empty)
    aset = result.aset
    if result.bad:
        for bad in result.bad[:20]:
            print(f"gaf data import: bad row: {bad}", file=sys.stderr)
        if len(result.bad) > 20:
            print(f"gaf data import: ... and {len(result.bad) - 20} more bad rows", file=sys.stderr)
        if not args.skip_bad:
            raise bad_rows_error(result.bad, aset.source)
    for note in result.notes:
        print(f"gaf data import: warning: {note}", file=sys.stderr)
    write_activitynet(aset, out, version="gaf data import")

    print(f"read {aset.source} ({result.layout})")
    if result.bad:
        print(f"dropped {len(result.bad)} bad row(s) (--skip-bad):")
        for line in bad_rows_summary(result.bad):
            print(f"  {line}")
    print(f"{_count(len(aset.videos), 'video')}, {_count(aset.num_segments, 'instance')}, "
          f"{_count(len(aset.labels), 'class')}"
          + (f", {aset.num_ambiguous} Ambiguous intervals" if aset.num_ambiguous else ""))
    for name, count in aset.subsets().items():
        n = sum(len(v.segments) for v in aset.videos.values() if str(v.subset) == name)
        print(f"  {name}: {_count(count, 'video')}, {_count(n, 'instance')}")
    if result.split is not None:
        print(f"split: seed {args.seed}, {args.split if args.split is not None else 0.8:g} of the videos to "
              f"{result.split[0]} (--split, --seed)")
    print(f"wrote {out}")
    train, test = result.split or train_test_subsets(list(aset.subsets()))
    sets = " ".join(f"--set dataset.{key}={shlex.quote(name)}" for key, name in
                    (("train_subset", train), ("test_subset", test)) if name is not None)
    print(f"next: gaf data check CONFIG --set dataset.annotation_file={shlex.quote(str(out))} {sets} "
          "--set dataset.feature_dir=FEATURES")
    print("  (CONFIG: a bundled config such as thumos14_i3d, or your YAML; FEATURES: the folder of one .npy per "
          "video, e.g. made by gaf extract)")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "es" if noun.endswith("s") else "s")
