"""``gaf data check``: a feature dataset's numbers against an experiment config, and the settings they suggest.

:func:`check_dataset` reads the annotation and the shape of each feature
file (``np.load(mmap_mode="r")``: headers only, no values) and returns a
:class:`CheckReport`: per subset (``dataset.train_subset`` and
``test_subset``) the videos, durations, instances and their lengths, in
seconds and in feature steps, and the share of each video that is action;
what that means for the config (videos longer than ``max_seq_len``, the
evaluation windows they need, instances no pyramid level can regress or
shorter than a step); the files (missing, extra, lengths that disagree with
the annotated duration); the features' provenance (:mod:`gaf.data.provenance`);
and the ``max_seq_len``, ``num_levels`` and ``regression_range_base`` that
:func:`~gaf.data.sizing.recommend` draws from the training subset.

Units follow :mod:`gaf.data.features`: a step lasts ``step_seconds =
feature_stride / fps`` s (``duration / resize_length`` with
``resize_length``); an instance ``[a, b]`` s lies at steps ``(a - time_offset)
/ step_seconds`` to ``(b - time_offset) / step_seconds``, ``(b - a) /
step_seconds`` steps long. Regression ranges (:func:`~gaf.models.detector.regression_ranges`)
bound ``max(left, right)``, in steps of the input; level ``l`` has stride ``2**l``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from gaf.data.annotation_core import DURATION_TOLERANCE_S
from gaf.data.features import FEATURE_LENGTH_LIMIT, FEATURE_LENGTH_WARN, TimeAxisError, length_disagreement, time_axis
from gaf.data.provenance import Provenance, read_provenance
from gaf.data.sizing import MAX_SEQ_LEN_CAP, Recommendation, recommend, recommended_config, unregressable
from gaf.data.split import window_starts
from gaf.errors import DataError
from gaf.models.detector import regression_ranges

if TYPE_CHECKING:
    from gaf.data.annotations import AnnotationSet, Video
    from gaf.data.features import DatasetConfig
    from gaf.models.detector import DetectorConfig

__all__ = ["Spread", "SubsetCheck", "Problem", "Recommendation", "CheckReport", "check_dataset", "recommend",
           "unregressable", "recommended_config", "ISSUES", "MAX_SEQ_LEN_CAP"]

LISTED = 5  # names given per problem

#: per-subset problem kinds: (what it is, whether ``gaf train`` refuses the dataset for it)
ISSUES: dict[str, tuple[str, bool]] = {
    "missing": ("feature files missing", True),
    "unreadable": ("feature files unreadable or not (T, input_dim) floats", True),
    "no_fps": ("videos with no fps (set dataset.fps)", True),
    "no_duration": ("videos with no duration (dataset.resize_length needs one)", True),
    "length_refused": (f"feature files over {FEATURE_LENGTH_LIMIT:g}x longer or shorter than duration x fps / "
                       "feature_stride (another video's file? wrong dataset.fps / feature_stride?)", True),
    "length_warn": (f"feature files whose length differs from duration x fps / feature_stride by over "
                    f"{FEATURE_LENGTH_WARN:.0%} (truncated extraction? another fps or stride?)", False),
    "unknown_label": ("instances whose label is not in dataset.labels", True),
    "unregressable": ("instances no pyramid level can regress (no point of a level within center_sample_radius "
                      "strides of their centre has max(left, right) in that level's range)", False),
    "sub_step": ("instances shorter than one feature step", False),
    "beyond_top": ("instances whose half-length exceeds the top level's range, regression_range_base x "
                   "2**(num_levels-1)", False),
    "longer_than_crop": ("instances longer than max_seq_len (training crops cut them)", False),
    "after_end": ("instances wholly outside their video's features (no training target)", False),
    "overrun": (f"instances ending over {DURATION_TOLERANCE_S:g} s after their video's annotated duration", False),
    "record_mismatch": ("feature files whose step count differs from features.json's record", False),
}


@dataclass(frozen=True)
class Spread:
    """How some values spread: count, min, 5th percentile, median, 90th percentile, max (NumPy's linear
    percentiles)."""

    count: int
    min: float
    p5: float
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Spread | None:
        """The spread of ``values`` (None when empty)."""
        x = np.asarray(values, dtype=np.float64)
        if x.size == 0:
            return None
        p5, med, p90 = np.percentile(x, [5, 50, 90])
        return cls(int(x.size), float(x.min()), float(p5), float(med), float(p90), float(x.max()))

    def text(self, scale: float = 1.0, unit: str = "") -> str:
        """``min / median / max`` (each times ``scale``): 3 significant digits, whole numbers from 100 on."""
        return " / ".join(f"{v * scale:.0f}" if abs(v * scale) >= 100 else f"{v * scale:.3g}"
                          for v in (self.min, self.median, self.max)) + unit


@dataclass
class SubsetCheck:
    """One subset of the dataset (``role`` ``train`` or ``test``: the config key it comes from).

    Durations in seconds, lengths in feature steps; ``estimated_steps``
    videos have no readable file, their steps estimated from their duration.
    ``issues[kind]`` lists one description per video or instance (kinds:
    :data:`ISSUES`).
    """

    role: str
    subset: str
    videos: int
    instances: int
    duration: Spread | None
    video_steps: Spread | None
    instances_per_video: Spread | None
    instance_seconds: Spread | None
    instance_steps: Spread | None
    coverage: Spread | None
    labels: set[str]
    estimated_steps: int = 0
    long_videos: int = 0  # > dataset.max_seq_len steps
    eval_windows: int = 0  # the windows those longer than the evaluation window need
    eval_long_videos: int = 0  # > the evaluation window (dataset.eval_max_seq_len or max_seq_len)
    issues: dict[str, list[str]] = field(default_factory=dict)
    steps_per_video: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    instance_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # steps


@dataclass(frozen=True)
class Problem:
    """A problem found, with a count and the first few names; ``refused``: ``gaf train`` stops on it."""

    what: str
    count: int
    examples: list[str]
    refused: bool = False

    def text(self) -> str:
        more = f" (first: {'; '.join(self.examples)})" if self.examples else ""
        return f"{self.count} {self.what}{' [gaf train refuses this]' if self.refused else ''}{more}"


@dataclass
class CheckReport:
    """What :func:`check_dataset` found; :meth:`format` is the text ``gaf data check`` prints."""

    config: str
    annotation_file: str
    feature_dir: str
    time_axis: str
    max_seq_len: int
    eval_window: int
    eval_window_overlap: float
    ranges: list[tuple[float, float]]
    subsets: list[SubsetCheck]
    extra_files: list[str]
    only_in: dict[str, list[str]]  # subset -> labels with instances there only
    provenance: Provenance | None
    provenance_conflicts: list[str]
    recommendations: list[Recommendation]

    @property
    def problems(self) -> list[Problem]:
        """Every problem with its count (per subset), in the order of :data:`ISSUES`, then the folder's."""
        out = []
        for sub in self.subsets:
            for kind, (what, refused) in ISSUES.items():
                found = sub.issues.get(kind, [])
                if found:
                    out.append(Problem(f"{what} ({sub.role} subset {sub.subset!r})", len(found), found[:LISTED],
                                       refused))
        if self.extra_files:
            out.append(Problem(f".npy files in {self.feature_dir} with no video in the annotation",
                               len(self.extra_files), self.extra_files[:LISTED]))
        for subset, labels in self.only_in.items():
            out.append(Problem(f"labels with instances in subset {subset!r} only", len(labels), labels[:LISTED]))
        if self.provenance_conflicts:
            out.append(Problem("settings that disagree with features.json", len(self.provenance_conflicts),
                               self.provenance_conflicts, refused=True))
        return out

    def summary(self, details: str) -> list[str]:
        """2-4 lines for a training log: counts, problems (the line holding `` problem(s): ``), recommended
        changes and ``details`` (the command to run for the whole report)."""
        parts = []
        for sub in self.subsets:
            long = f", {sub.long_videos} longer than max_seq_len {self.max_seq_len}" if sub.long_videos else ""
            parts.append(f"{sub.role} {sub.subset!r} {sub.videos} videos / {sub.instances} instances{long}")
        lines = ["data check: " + "; ".join(parts)]
        problems = self.problems
        if problems:
            lines.append(f"data check: {len(problems)} problem(s): " + "; ".join(
                f"{p.count} {p.what.split(' (')[0]}" for p in problems[:4]) + ("; ..." if len(problems) > 4 else ""))
        changes = [r for r in self.recommendations if r.changed]
        if changes:
            lines.append("data check: recommends " + ", ".join(f"{r.key} {r.value:g} (now {r.current:g})"
                                                               for r in changes))
        lines.append(f"data check: {details} for details")
        return lines

    def format(self) -> str:
        """The full report as text."""
        lines = [f"config {self.config}: annotation {self.annotation_file}, features {self.feature_dir}",
                 f"time axis: {self.time_axis}", ""]
        for sub in self.subsets:
            lines += _format_subset(sub, self)
        levels = ", ".join(f"{l}: [{lo:g}, {hi:g}]" for l, (lo, hi) in enumerate(self.ranges))
        lines += [f"regression ranges (max(left, right) in steps; level l has stride 2**l): {levels}", ""]
        lines.append("provenance: " + (self.provenance.describe() if self.provenance is not None else
                                       f"no features.json in {self.feature_dir} (not made by gaf extract): "
                                       "how the features were made is not recorded"))
        problems = self.problems
        lines += ["", f"problems: {len(problems) or 'none found'}"] + [f"  - {p.text()}" for p in problems]
        lines += ["", "recommended:"] + [f"  {r.text()}" for r in self.recommendations]
        if any(r.changed for r in self.recommendations):
            lines.append("  (gaf data check CONFIG --write NEW.yaml writes the config with these values)")
        return "\n".join(lines)


def _format_subset(sub: SubsetCheck, report: CheckReport) -> list[str]:
    def show(spread: Spread | None, scale: float = 1.0, unit: str = "") -> str:
        return "-" if spread is None else spread.text(scale, unit)

    est = f" ({sub.estimated_steps} estimated from durations: no readable file)" if sub.estimated_steps else ""
    lines = [f"{sub.role} subset {sub.subset!r}: {sub.videos} videos, {sub.instances} instances, "
             f"{len(sub.labels)} labels   (min / median / max)",
             f"  duration            {show(sub.duration, unit=' s')}",
             f"  feature steps       {show(sub.video_steps)} per video{est}",
             f"  instances / video   {show(sub.instances_per_video)}",
             f"  instance length     {show(sub.instance_seconds, unit=' s')} = {show(sub.instance_steps)} steps",
             f"  action coverage     {show(sub.coverage, 100.0, ' %')} of each video"]
    if sub.long_videos or sub.eval_long_videos:
        lines.append(f"  longer than max_seq_len {report.max_seq_len}: {sub.long_videos} videos; evaluation cuts "
                     f"{sub.eval_long_videos} into {sub.eval_windows} windows of {report.eval_window} steps "
                     f"(overlap {report.eval_window_overlap:g})")
    else:
        lines.append(f"  every video fits max_seq_len {report.max_seq_len} (one item each)")
    return lines + [""]


# ---------------------------------------------------------------------------------------------- the check
def check_dataset(ds: DatasetConfig, det: DetectorConfig, *, config_name: str = "config") -> CheckReport:
    """Check the feature dataset ``ds`` (shapes only) against the detector ``det`` (a config's ``dataset`` and
    ``model.detector``; ``config_name`` names the config in the report).

    DataError when the annotation file or the feature folder is missing (or
    a subset has no video); ConfigError when the feature folder mixes
    extractions. Everything else is reported (:attr:`CheckReport.problems`).
    """
    import warnings

    from gaf.data.annotations import AnnotationWarning, read_ground_truth

    annotation, folder = Path(ds.annotation_file), Path(ds.feature_dir)
    if not annotation.exists():
        raise DataError(f"{annotation}: annotation file not found (dataset.annotation_file)")
    if not folder.is_dir():
        raise DataError(f"{folder}: feature folder not found (dataset.feature_dir)")
    with warnings.catch_warnings():  # overruns are reported as a problem (kind "overrun")
        warnings.simplefilter("ignore", AnnotationWarning)
        aset = read_ground_truth(annotation)
    ranges = regression_ranges(det.regression_range_base, det.num_levels)
    provenance = read_provenance(folder)
    subsets = [_check_subset(aset, ds, det, role, subset, provenance)
               for role, subset in (("train", ds.train_subset), ("test", ds.test_subset))]
    train = subsets[0]
    recs = recommend(train.steps_per_video, train.instance_lengths, num_levels=det.num_levels,
                     base=det.regression_range_base, max_seq_len=ds.max_seq_len)
    only_in = {a.subset: sorted(a.labels - b.labels) for a, b in (subsets, subsets[::-1]) if a.labels - b.labels}
    conflicts = provenance.config_conflicts(ds.feature_stride, ds.num_frames, ds.fps, ds.input_dim) \
        if provenance is not None else []
    return CheckReport(config_name, str(annotation), str(folder), _time_axis(ds, aset), ds.max_seq_len,
                       ds.eval_window, ds.eval_window_overlap, ranges, subsets, _extra_files(aset, ds), only_in,
                       provenance, conflicts, recs)


def _time_axis(ds: DatasetConfig, aset: AnnotationSet) -> str:
    if ds.resize_length is not None:
        return (f"every video resampled to resize_length {ds.resize_length} steps ({ds.resize_mode}): a step lasts "
                f"duration / {ds.resize_length} s")
    source = (f"dataset.fps {ds.fps:g}" + (" (forced)" if ds.force_fps else " where the annotation has none")
              if ds.fps is not None else "the annotation's fps")
    rates = {ds.fps if (ds.force_fps or v.fps is None) else v.fps for v in aset.videos.values()} - {None}
    fps = next(iter(rates)) if len(rates) == 1 else None
    seconds = f" = {ds.feature_stride / fps:.4g} s at {fps:g} fps" if fps else ""
    return (f"a step lasts feature_stride / fps = {ds.feature_stride} / fps s{seconds} ({source}); "
            f"window num_frames {ds.num_frames}")


def _check_subset(aset: AnnotationSet, ds: DatasetConfig, det: DetectorConfig, role: str, subset: str,
                  provenance: Provenance | None) -> SubsetCheck:
    from gaf.data.annotations import normalize_subset

    videos = [v for v in aset.videos.values() if normalize_subset(v.subset) == normalize_subset(subset)]
    if not videos:
        found = ", ".join(sorted({str(v.subset) for v in aset.videos.values()}))
        raise DataError(f"{ds.annotation_file}: no video has subset {subset!r} (dataset.{role}_subset); subsets in "
                        f"the file: {found}")
    issues: dict[str, list[str]] = {kind: [] for kind in ISSUES}
    durations, steps, per_video, seconds, lengths, coverage, labels = [], [], [], [], [], [], set()
    estimated = long_videos = eval_long = eval_windows = 0
    for video in sorted(videos, key=lambda v: v.video_id):
        vid = video.video_id
        fps = ds.fps if (ds.force_fps or video.fps is None) else video.fps
        raw = _feature_steps(ds, vid, issues, provenance)
        try:
            num_steps, step_seconds, time_offset, duration = time_axis(ds, fps, video.duration, raw)
        except TimeAxisError as err:
            if err.kind != "no_steps":  # a missing file without a duration is reported as missing
                issues[err.kind].append(vid)
            continue
        if raw is not None and ds.resize_length is None and video.duration is not None:  # fps: time_axis had one
            _note_length(issues, vid, raw, fps, float(video.duration), ds)
        estimated += raw is None and ds.resize_length is None
        durations.append(duration)
        steps.append(num_steps)
        per_video.append(len(video.segments))
        long_videos += num_steps > ds.max_seq_len
        if num_steps > ds.eval_window:
            eval_long += 1
            eval_windows += len(window_starts(num_steps, ds.eval_window, ds.eval_window_overlap))
        if duration:
            coverage.append(_covered(video, duration))
        seg_s = np.asarray([(s.start, s.end) for s in video.segments], dtype=np.float64).reshape(-1, 2)
        if video.duration is not None:
            issues["overrun"] += [f"{vid} [{a:g}, {b:g}] s, duration {video.duration:g} s" for a, b in seg_s
                                  if b > video.duration + DURATION_TOLERANCE_S]
        labels.update(s.label for s in video.segments)
        if ds.labels is not None:
            issues["unknown_label"] += [f"{vid}: {s.label!r}" for s in video.segments if s.label not in ds.labels]
        seconds += list(seg_s[:, 1] - seg_s[:, 0])
        seg = (seg_s - time_offset) / step_seconds
        lengths += list(seg[:, 1] - seg[:, 0])
        _note_instances(issues, vid, seg_s, seg, num_steps, ds.max_seq_len, det)
    return SubsetCheck(role, subset, len(videos), sum(len(v.segments) for v in videos), Spread.of(durations),
                       Spread.of(steps), Spread.of(per_video), Spread.of(seconds), Spread.of(lengths),
                       Spread.of(coverage), labels, estimated, long_videos, eval_windows, eval_long,
                       {k: v for k, v in issues.items() if v}, np.asarray(steps, dtype=np.float64),
                       np.asarray(lengths, dtype=np.float64))


def _feature_steps(ds: DatasetConfig, vid: str, issues: dict[str, list[str]],
                   provenance: Provenance | None) -> int | None:
    """The step count ``T`` of ``vid``'s feature file from its header (None, with the issue noted, when it
    has none to give)."""
    from gaf.data.annotations import safe_video_id
    from gaf.errors import AnnotationError

    try:
        path = ds.feature_path(safe_video_id(vid, ds.annotation_file))
    except AnnotationError as err:
        issues["unreadable"].append(str(err))
        return None
    if not path.exists():
        issues["missing"].append(path.name)
        return None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        issues["unreadable"].append(f"{path.name}: {exc}")
        return None
    if not isinstance(arr, np.ndarray):
        issues["unreadable"].append(f"{path.name}: a .npz archive, not a .npy array")
        return None
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != ds.input_dim or not np.issubdtype(arr.dtype, np.floating):
        issues["unreadable"].append(f"{path.name}: shape {arr.shape} {arr.dtype} (dataset.input_dim {ds.input_dim})")
        return None
    record = provenance.videos.get(vid) if provenance is not None else None
    if record and isinstance(record.get("num_steps"), int) and record["num_steps"] != arr.shape[0]:
        issues["record_mismatch"].append(f"{path.name}: {arr.shape[0]} steps, features.json says {record['num_steps']}")
    return int(arr.shape[0])


def _note_length(issues: dict[str, list[str]], vid: str, raw: int, fps: float, duration: float,
                 ds: DatasetConfig) -> None:
    """The rule of :meth:`gaf.data.features.FeatureDataset._check_length`."""
    found = length_disagreement(raw, fps, duration, ds.feature_stride, ds.num_frames)
    if found is None:
        return
    span, ratio, expected = found
    note = f"{vid}: {raw} steps = {span:.4g} s for {duration:g} s ({expected} steps expected, {ratio:.3g}x)"
    if not 1.0 / FEATURE_LENGTH_LIMIT <= ratio <= FEATURE_LENGTH_LIMIT:
        issues["length_refused"].append(note)
    elif abs(span - duration) > FEATURE_LENGTH_WARN * duration:
        issues["length_warn"].append(note)


def _covered(video: Video, duration: float) -> float:
    """The fraction of ``[0, duration]`` s inside at least one instance."""
    spans = sorted((max(0.0, s.start), min(duration, s.end)) for s in video.segments)
    total, reach = 0.0, 0.0
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return total / duration


def _note_instances(issues: dict[str, list[str]], vid: str, seg_s: np.ndarray, seg: np.ndarray, num_steps: int,
                    max_seq_len: int, det: DetectorConfig) -> None:
    """Instance issues of one video: ``seg_s`` in seconds, ``seg`` in video steps ``(N, 2)``."""
    def name(i: int) -> str:
        return f"{vid} [{seg_s[i, 0]:g}, {seg_s[i, 1]:g}] s ({seg[i, 1] - seg[i, 0]:.3g} steps)"

    length = seg[:, 1] - seg[:, 0]
    after = (seg[:, 0] > num_steps - 0.5) | (seg[:, 1] < -0.5)  # FeatureDataset drops them
    issues["after_end"] += [name(i) for i in np.flatnonzero(after)]
    target = ~after
    issues["sub_step"] += [name(i) for i in np.flatnonzero(target & (length < 1.0))]
    issues["longer_than_crop"] += [name(i) for i in np.flatnonzero(target & (length > max_seq_len))]
    top = det.regression_range_base * 2 ** (det.num_levels - 1)  # the top level's nominal upper bound
    issues["beyond_top"] += [name(i) for i in np.flatnonzero(target & (0.5 * np.minimum(length, max_seq_len) > top))]
    ranges = regression_ranges(det.regression_range_base, det.num_levels)
    bad = unregressable(seg, num_steps, ranges, det.center_sample_radius)
    issues["unregressable"] += [name(i) for i in np.flatnonzero(target & bad)]


def _extra_files(aset: AnnotationSet, ds: DatasetConfig) -> list[str]:
    """Feature files named like the config's (prefix, suffix, extension) whose video is not annotated."""
    folder = Path(ds.feature_dir)
    pattern = glob.escape(ds.file_prefix) + "*" + glob.escape(ds.file_suffix + ds.file_ext)
    known = set(aset.videos)
    extra = []
    for path in folder.glob(pattern):
        name = path.relative_to(folder).as_posix()
        vid = name[len(ds.file_prefix):len(name) - len(ds.file_suffix + ds.file_ext)]
        if vid not in known and path.is_file():
            extra.append(name)
    return sorted(extra)
