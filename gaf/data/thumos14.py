"""THUMOS14 ground truth: the annotation CSVs, the official per-class files, named variants.

Times in **seconds**; everything reads into :class:`~gaf.data.annotations.AnnotationSet`
under the conventions of :mod:`gaf.data.annotations` (file order, ``Ambiguous``
intervals kept apart in ``Video.ambiguous``, the ``overrun`` policy, errors
naming file, line, video and field). :func:`gaf.data.annotations.read_ground_truth`
dispatches here for ``.csv`` files and class-file folders.

Readers: :func:`read_thumos_csv` (AFSD's ``*_Annotation*.csv`` and
``thumos14_test_groundtruth.csv``), :func:`read_thumos_class_files`
(``<Class>_<split>.txt``). Variants: :data:`THUMOS14_VARIANTS`,
:func:`thumos14_ground_truth`, :func:`apply_thumos14_variant`,
:func:`find_thumos14_dir`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gaf.data.annotation_core import (AMBIGUOUS, AnnotationSet, Segment, Video, apply_overrun, normalize_subset,
                                      parse_int, parse_label, parse_positive, parse_times, read_csv, read_text,
                                      safe_video_id)
from gaf.errors import AnnotationError, DataError

__all__ = [
    "read_thumos_csv", "read_thumos_class_files", "THUMOS14_CLASSES", "THUMOS14_VARIANTS", "thumos14_ground_truth",
    "apply_thumos14_variant", "find_thumos14_dir", "variant_split",
]


# ---------------------------------------------------------------- THUMOS14 files
def _read_video_info(folder: Path) -> dict[str, tuple[float, float]]:
    """``{video: (duration s, fps)}`` from every ``*_video_info.csv`` in ``folder`` (duration = count / fps)."""
    out: dict[str, tuple[float, float]] = {}
    for f in sorted(folder.glob("*_video_info.csv")):
        header, rows = read_csv(f)
        if header[:1] != ["video"] or "fps" not in header or "count" not in header:
            raise AnnotationError(f"{f}: header: expected video,fps,sample_fps,count,sample_count, got {header}")
        ifps, icount = header.index("fps"), header.index("count")
        for line, row in rows:
            w = f"{f}: line {line}: video {row[0]!r}"
            fps = parse_positive(row[ifps], f"{w}: fps")
            count = parse_positive(row[icount], f"{w}: count")
            out[safe_video_id(row[0], f"{f}: line {line}")] = (count / fps, fps)
    return out


def _subset_of(video_id: str, path: Path) -> str | None:
    for key, name in (("validation", "validation"), ("test", "test")):
        if video_id.startswith(f"video_{key}_"):
            return name
    stem = path.name.lower()
    return "validation" if stem.startswith("val") else "test" if stem.startswith("test") else None


def read_thumos_csv(path: str | os.PathLike[str], *, overrun: str = "warn") -> AnnotationSet:
    """Read a THUMOS14 ground-truth CSV, either layout.

    * ``video,type,type_idx,start,end,startFrame,endFrame`` (AFSD's
      ``*_Annotation*.csv``): durations and fps from the ``*_video_info.csv``
      files beside it, when present (videos not listed get None).
    * ``video-name,t-init,t-end,...,video-duration,frame-rate,...,label-idx``
      (``thumos14_test_groundtruth.csv``): ``label-idx`` indexes the 20
      classes in ``Class Index_Detection.txt`` order, -1 = Ambiguous.

    Videos in order of first appearance; subset from the video id
    (``video_validation_*`` / ``video_test_*``). Labels: sorted names found.
    """
    p = Path(path)
    header, rows = read_csv(p)
    videos: dict[str, Video] = {}
    if header[:5] == ["video", "type", "type_idx", "start", "end"]:
        info = _read_video_info(p.parent)
        type_ids: dict[str, str] = {}
        for line, row in rows:
            w = f"{p}: line {line}: video {row[0]!r}"
            vid = safe_video_id(row[0], f"{p}: line {line}")
            label = parse_label(row[1], f"{w}: type")
            if type_ids.setdefault(label, row[2]) != row[2]:
                raise AnnotationError(f"{w}: type_idx: {label!r} has {row[2]} here but {type_ids[label]} before")
            _add(videos, vid, info.get(vid, (None, None)), p, label, parse_times(row[3], row[4], f"{w}: start/end"))
    elif header[:3] == ["video-name", "t-init", "t-end"] and "label-idx" in header:
        classes = _thumos14_class_names(p.parent)
        col = {name: header.index(name) for name in ("video-duration", "frame-rate", "label-idx")}
        for line, row in rows:
            w = f"{p}: line {line}: video {row[0]!r}"
            vid = safe_video_id(row[0], f"{p}: line {line}")
            meta = (parse_positive(row[col["video-duration"]], f"{w}: video-duration"),
                    parse_positive(row[col["frame-rate"]], f"{w}: frame-rate"))
            idx = parse_int(row[col["label-idx"]])
            if idx is not None and -1 <= idx < len(classes):
                label = AMBIGUOUS if idx == -1 else classes[idx]
            else:
                raise AnnotationError(f"{w}: label-idx: expected -1..{len(classes) - 1}, got {row[col['label-idx']]!r}")
            if vid in videos and (videos[vid].duration, videos[vid].fps) != meta:
                raise AnnotationError(f"{w}: video-duration/frame-rate: {meta} differ from an earlier row's "
                                      f"{(videos[vid].duration, videos[vid].fps)}")
            _add(videos, vid, meta, p, label, parse_times(row[1], row[2], f"{w}: t-init/t-end"))
    else:
        raise AnnotationError(f"{p}: header: unknown THUMOS14 CSV layout {','.join(header)!r} (expected "
                              "video,type,type_idx,start,end,... or video-name,t-init,t-end,...,label-idx)")
    labels = sorted({s.label for v in videos.values() for s in v.segments})
    aset = AnnotationSet(videos, labels, str(p))
    apply_overrun(aset, overrun)
    return aset


def _add(videos: dict[str, Video], vid: str, meta: tuple[float | None, float | None], path: Path, label: str,
         times: tuple[float, float]) -> None:
    video = videos.get(vid)
    if video is None:
        video = videos[vid] = Video(vid, [], meta[0], meta[1], _subset_of(vid, path))
    if label == AMBIGUOUS:
        video.ambiguous.append(times)
    else:
        video.segments.append(Segment(times[0], times[1], label))


def read_thumos_class_files(folder: str | os.PathLike[str], split: str, *, overrun: str = "warn") -> AnnotationSet:
    """Read THUMOS14's official per-class files ``<Class>_<split>.txt`` (lines ``video start end``).

    ``split`` is ``"val"`` or ``"test"`` (aliases as :func:`normalize_subset`).
    ``Ambiguous_<split>.txt`` fills ``Video.ambiguous``. Videos sorted by id,
    segments by (start, end, label); durations and fps from
    ``*_video_info.csv`` in the folder when present. Labels: sorted class names.
    """
    root = Path(folder)
    short = {"validation": "val", "testing": "test"}.get(normalize_subset(split) or "")
    if short is None:
        raise AnnotationError(f"{root}: split must be 'val' or 'test', got {split!r}")
    files = sorted(root.glob(f"*_{short}.txt"))
    if not files:
        raise AnnotationError(f"{root}: no '<Class>_{short}.txt' files")
    info = _read_video_info(root)
    videos: dict[str, Video] = {}
    for f in files:
        label = f.name[: -len(f"_{short}.txt")]
        for line, text in enumerate(read_text(f).splitlines(), 1):
            parts = text.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise AnnotationError(f"{f}: line {line}: expected 'video start end', got {text.strip()!r}")
            vid = safe_video_id(parts[0], f"{f}: line {line}")
            _add(videos, vid, info.get(vid, (None, None)), f, label,
                 parse_times(parts[1], parts[2], f"{f}: line {line}: video {vid!r}: start/end"))
    for v in videos.values():
        v.segments.sort(key=lambda s: (s.start, s.end, s.label))
        v.ambiguous.sort()
    ordered = {vid: videos[vid] for vid in sorted(videos)}
    aset = AnnotationSet(ordered, sorted({s.label for v in ordered.values() for s in v.segments}), str(root))
    apply_overrun(aset, overrun)
    return aset


# ---------------------------------------------------------------- THUMOS14 ground-truth variants
THUMOS14_CLASSES: tuple[str, ...] = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking")
"""The 20 detection classes; this order (alphabetical = UCF101 id order) is the label-id order of every source."""

_NODUP = "-nodup"


@dataclass(frozen=True, slots=True)
class _VariantSpec:
    split: str  # "test" | "validation"
    num_videos: int
    source: str  # file in the THUMOS14 folder that thumos14_ground_truth builds it from
    keep_ambiguous: bool
    exclude: frozenset[str] = frozenset()


_VARIANT_SPECS = {
    "thumos14-test-212": _VariantSpec("test", 212, "thumos14_test_groundtruth.csv", False),
    "thumos14-test-213-ambiguous": _VariantSpec("test", 213, "thumos14_test_groundtruth.csv", True),
    "thumos14-test-210": _VariantSpec("test", 210, "thumos14_test_groundtruth.csv", False,
                                      frozenset({"video_test_0000270", "video_test_0001496"})),
    "thumos14-val-200": _VariantSpec("validation", 200, "val_Annotation.csv", False),
    "thumos14-val-200-ambiguous": _VariantSpec("validation", 200, "val_Annotation.csv", True),
}
_NODUP_NOTE = "; minus the Diving copy of each CliffDiving instance"
THUMOS14_VARIANTS: dict[str, str] = {
    "thumos14-test-212": "THUMOS14 test, Ambiguous dropped: 212 videos, 3358 instances (= test_Annotation_ours.csv, "
                         "thumos14.json Test); each CliffDiving instance is also labelled Diving, as in every "
                         "source file",
    "thumos14-test-213-ambiguous": "THUMOS14 test, all 213 videos: 3358 instances + 99 Ambiguous intervals kept "
                                   "apart in Video.ambiguous",
    "thumos14-test-210": "THUMOS14 test without video_test_0000270 and video_test_0001496 (wrong annotations): "
                         "210 videos, 3311 instances (= thumos_gt.json test)",
    "thumos14-val-200": "THUMOS14 validation (the usual training set), Ambiguous dropped: 200 videos, 3007 "
                        "instances (= val_Annotation_ours.csv, thumos14.json Validation)",
    "thumos14-val-200-ambiguous": "THUMOS14 validation: 200 videos, 3007 instances + 89 Ambiguous intervals",
    "thumos14-test-212-nodup": "as thumos14-test-212, 3141 instances" + _NODUP_NOTE,
    "thumos14-test-213-ambiguous-nodup": "as thumos14-test-213-ambiguous, 3141 instances" + _NODUP_NOTE,
    "thumos14-test-210-nodup": "as thumos14-test-210, 3094 instances" + _NODUP_NOTE,
    "thumos14-val-200-nodup": "as thumos14-val-200, 2864 instances" + _NODUP_NOTE,
    "thumos14-val-200-ambiguous-nodup": "as thumos14-val-200-ambiguous, 2864 instances" + _NODUP_NOTE,
}
"""Named THUMOS14 ground-truth versions (name → one line). Every source file labels each CliffDiving
instance a second time as Diving (as the official THUMOS14 Diving lists do); ``-nodup`` removes the copies."""


def variant_split(name: str) -> str:
    """The THUMOS14 split (``"val"`` or ``"test"``) that variant ``name`` is built from."""
    return _variant_spec(name)[0].split


def _variant_spec(name: str) -> tuple[_VariantSpec, bool]:
    if name not in THUMOS14_VARIANTS:
        raise AnnotationError(f"unknown THUMOS14 ground-truth variant {name!r}; known: {', '.join(THUMOS14_VARIANTS)}")
    nodup = name.endswith(_NODUP)
    return _VARIANT_SPECS[name[: -len(_NODUP)] if nodup else name], nodup


def _thumos14_class_names(folder: Path) -> list[str]:
    """Class names in ``Class Index_Detection.txt`` order when the file is in ``folder``, else the built-in list."""
    f = folder / "Class Index_Detection.txt"
    if not f.is_file():
        return list(THUMOS14_CLASSES)
    names = []
    for n, line in enumerate(read_text(f).splitlines(), 1):
        parts = line.split()
        if parts and (len(parts) != 2 or not parts[0].isdigit()):
            raise AnnotationError(f"{f}: line {n}: expected '<id> <ClassName>', got {line.strip()!r}")
        names += parts[1:]
    return names


def apply_thumos14_variant(aset: AnnotationSet, variant: str) -> AnnotationSet:
    """Shape THUMOS14 ground truth into ``variant`` and check it has the promised number of videos.

    Keeps the variant's split, drops its excluded videos, keeps or clears
    ``ambiguous``, drops videos left with nothing, removes Diving copies of
    CliffDiving instances for ``-nodup``; labels become
    :data:`THUMOS14_CLASSES`. Raises AnnotationError when the source cannot
    give the variant (e.g. a file without Ambiguous rows for ``-213-ambiguous``).
    """
    spec, nodup = _variant_spec(variant)
    unknown = sorted({s.label for v in aset.videos.values() for s in v.segments} - set(THUMOS14_CLASSES))
    if unknown:
        raise AnnotationError(f"{aset.source}: label: {unknown[0]!r} is not a THUMOS14 class (variant {variant!r})")
    videos: dict[str, Video] = {}
    for vid, v in aset.subset(spec.split).videos.items():
        segments = list(v.segments)
        if nodup:
            cliff = {(s.start, s.end) for s in segments if s.label == "CliffDiving"}
            segments = [s for s in segments if not (s.label == "Diving" and (s.start, s.end) in cliff)]
        ambiguous = list(v.ambiguous) if spec.keep_ambiguous else []
        if vid not in spec.exclude and (segments or ambiguous):
            videos[vid] = Video(vid, segments, v.duration, v.fps, v.subset, ambiguous)
    if len(videos) != spec.num_videos:
        raise AnnotationError(f"{aset.source}: variant {variant!r} needs {spec.num_videos} videos, this source gives "
                              f"{len(videos)} (build it with thumos14_ground_truth(), from {spec.source})")
    return AnnotationSet(videos, list(THUMOS14_CLASSES), aset.source, variant)


def find_thumos14_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the THUMOS14 annotation files.

    ``data_dir`` when given; else ``$GAF_THUMOS14_DIR``; else
    ``../shared/data/thumos14`` from the working directory, then from the
    repository that holds this package. Raises DataError if none has them.
    """
    marker = "thumos14_test_groundtruth.csv"
    if data_dir is not None:
        candidates = [Path(data_dir)]
    elif os.environ.get("GAF_THUMOS14_DIR"):
        candidates = [Path(os.environ["GAF_THUMOS14_DIR"])]
    else:
        candidates = [Path.cwd().parent / "shared" / "data" / "thumos14",
                      Path(__file__).resolve().parents[3] / "shared" / "data" / "thumos14"]
    for c in candidates:
        if (c / marker).is_file():
            return c
    raise DataError(f"THUMOS14 annotation folder not found (looked for {marker} in "
                    f"{', '.join(str(c) for c in candidates)}): set GAF_THUMOS14_DIR=/path/to/thumos14 "
                    "(Python: data_dir=)")


def thumos14_ground_truth(split: str | None = None, variant: str | None = None, *,
                          data_dir: str | os.PathLike[str] | None = None, overrun: str = "warn") -> AnnotationSet:
    """Build a named THUMOS14 ground-truth variant from the annotation folder (:func:`find_thumos14_dir`).

    ``variant`` defaults to ``thumos14-test-212`` (``split="test"`` or None)
    or ``thumos14-val-200`` (``split="val"``); ``split``, when given, must
    agree with the variant. Test variants read
    ``thumos14_test_groundtruth.csv`` (durations and fps for all 213 videos),
    validation variants ``val_Annotation.csv`` with ``val_video_info.csv``.
    """
    if variant is None:
        variant = "thumos14-val-200" if normalize_subset(split) == "validation" else "thumos14-test-212"
    spec, _ = _variant_spec(variant)
    if split is not None and normalize_subset(split) != normalize_subset(spec.split):
        raise AnnotationError(f"variant {variant!r} is a {spec.split} variant, but split={split!r}")
    folder = find_thumos14_dir(data_dir)
    return apply_thumos14_variant(read_thumos_csv(folder / spec.source, overrun=overrun), variant)
