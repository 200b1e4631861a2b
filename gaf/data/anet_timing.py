"""The ActivityNet v1.3 timing and class hierarchy behind the ActivityNet-like embedded benchmark.

Two resources ship with gaf, so that an installed gaf needs no checkout:

* ``gaf/resources/anet_timing.json``, built by :func:`build_anet_timing_table`
  from BSN's ``anet_anno_action.json`` + ``video_info_new.csv`` (the
  4728-video validation protocol of BMN, AFSD and OpenTAD): the real
  durations and instances (start, end, class) of a seeded subset of the
  annotated videos, times rounded to 0.1 s. All 14,377 annotated videos
  would take ~1.3 MB; the subset (:data:`TABLE_VIDEOS` per subset, chosen by a
  salted SHA-256 of the video id, so it depends on no RNG implementation) is
  several times the benchmark's sizes and keeps the file near 200 KB.
* ``gaf/resources/anet_hierarchy.json``: a hand-written grouping of the 200
  classes into parent groups of confusable siblings (similar scenes, objects
  or movements: the four throws, the wind instruments, the yard chores...).
  It is gaf's, not ActivityNet's own taxonomy, which is not available here.
  Each group also says whether its classes are motion classes (stronger in
  the "flow" stream).

``python -m gaf.data.anet_timing ANNOTATION_JSON [VIDEO_INFO_CSV] [-o OUT]``
rebuilds the timing table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gaf.errors import DataError

__all__ = ["TABLE_VIDEOS", "build_anet_timing_table", "load_anet_timing_table", "load_anet_hierarchy",
           "write_timing_table"]

TIMING_RESOURCE = "resources/anet_timing.json"
HIERARCHY_RESOURCE = "resources/anet_hierarchy.json"
TABLE_VIDEOS = {"training": 1500, "validation": 750}
"""Videos kept per subset in the shipped table (of 9649 training / 4728 validation annotated)."""
_SALT = "gaf-anet-timing-v1"


def build_anet_timing_table(src: str | os.PathLike[str], video_info: str | os.PathLike[str] | None = None, *,
                            per_subset: dict[str, int] | None = None) -> dict[str, Any]:
    """Compact timing of a seeded subset of ActivityNet v1.3's annotated videos.

    ``src`` is BSN's ``anet_anno_action.json``; ``video_info`` (default:
    ``video_info_new.csv`` beside it) gives each video's subset. Keeps the
    ``per_subset`` (default :data:`TABLE_VIDEOS`) videos of each subset with
    the smallest salted SHA-256 of their id. Returns ``{"source", "labels":
    [200 sorted names], "videos": {video_id: {"subset", "duration",
    "segments": [[start, end, label_id], ...]}}}``, seconds rounded to 0.1,
    segments clipped to the duration (ActivityNet's overrun by < 1 s), made
    at least 0.1 s long (some are zero-length) and sorted. There is no fps: the benchmark sets its own.
    """
    from gaf.data.annotations import read_bsn_anet

    path = Path(src)
    counts = dict(TABLE_VIDEOS if per_subset is None else per_subset)
    aset = read_bsn_anet(path, video_info=video_info, overrun="clip")
    labels = list(aset.labels)
    index = {name: i for i, name in enumerate(labels)}
    videos: dict[str, Any] = {}
    for subset, count in counts.items():
        pool = [vid for vid, v in aset.videos.items() if v.subset == subset and v.segments]
        if len(pool) < count:
            raise DataError(f"{path}: subset {subset!r} has {len(pool)} annotated videos, {count} asked")
        pool.sort(key=lambda vid: hashlib.sha256(f"{_SALT}:{vid}".encode()).hexdigest())
        for vid in pool[:count]:
            v = aset.videos[vid]
            duration = round(float(v.duration), 1)
            segs = []
            for seg in v.segments:  # at least 0.1 s long (ActivityNet has zero-length ones), inside the duration
                end = round(min(max(round(seg.end, 1), round(seg.start, 1) + 0.1), duration), 1)
                segs.append([round(min(round(seg.start, 1), end - 0.1), 1), end, index[seg.label]])
            videos[vid] = {"subset": subset, "duration": duration, "segments": sorted(segs)}
    kept = " + ".join(f"{n} {k}" for k, n in counts.items())
    return {"source": f"{path.name} + video_info_new.csv (BSN layout, ActivityNet v1.3); {kept} videos, "
                      f"those with the smallest salted SHA-256 of the id",
            "labels": labels, "videos": dict(sorted(videos.items()))}


def write_timing_table(table: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a timing table as compact JSON (the shipped resources' form)."""
    out = Path(path)
    out.write_text(json.dumps(table, separators=(",", ":")), encoding="utf-8")
    return out


def _resource(name: str) -> dict[str, Any]:
    from importlib.resources import files

    return json.loads(files("gaf").joinpath(name).read_text(encoding="utf-8"))


def load_anet_timing_table() -> dict[str, Any]:
    """The ActivityNet timing table shipped with gaf (see :func:`build_anet_timing_table`)."""
    return _resource(TIMING_RESOURCE)


def load_anet_hierarchy() -> list[dict[str, Any]]:
    """The shipped class hierarchy: ``[{"name", "motion": bool, "classes": [names]}, ...]``, each of the 200
    classes in exactly one group."""
    return _resource(HIERARCHY_RESOURCE)["groups"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaf.data.anet_timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("annotation", help="BSN's anet_anno_action.json")
    parser.add_argument("video_info", nargs="?", help="video_info_new.csv (default: beside the annotation)")
    parser.add_argument("-o", "--out", default="gaf/resources/anet_timing.json")
    args = parser.parse_args(argv)
    out = write_timing_table(build_anet_timing_table(args.annotation, args.video_info), args.out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
