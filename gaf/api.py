"""gaf's Python API: the stable names a script or notebook uses (exported from ``gaf``).

* :func:`train` — a detector from a config, as ``gaf train``;
* :func:`load_detector` → :class:`Detector`, whose :meth:`Detector.detect` takes a raw video path or a
  feature array and returns :class:`Detection` s (seconds, label, score, mean λ);
* :func:`score` and :func:`analyze` — mAP (or proposal AR@AN) and DETAD's error analysis of any
  predictions, NumPy only: they never import torch;
* :func:`extract` — I3D features of raw videos; :func:`classify` — Kinetics-400 labels of raw videos.

Importing this module is cheap; torch is imported by the functions that need it. Times are in seconds
everywhere; feature arrays are (T, C) as gaf's feature files.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from gaf.errors import ConfigError

if TYPE_CHECKING:  # heavy types, only for annotations (importing gaf imports neither numpy nor torch)
    import numpy as np

    from gaf.classification import ClassifyResult
    from gaf.data.annotations import AnnotationSet
    from gaf.engine.train import TrainResult
    from gaf.extraction import ExtractReport
    from gaf.metrics.analysis import ErrorAnalysis
    from gaf.metrics.detection import DetectionResult
    from gaf.metrics.proposals import ProposalResult

__all__ = ["Detection", "Detections", "Detector", "train", "load_detector", "score", "analyze", "extract", "classify"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Detection:
    """One detected action: ``start`` / ``end`` in seconds, ``label``, ``score`` in [0, 1], and
    ``attention``: the mean λ over the detection's span (None for a model without GAF)."""

    start: float
    end: float
    label: str
    score: float
    attention: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """ActivityNet's detection record (``segment``, ``label``, ``score``) plus ``attention``."""
        return {"segment": [self.start, self.end], "label": self.label, "score": self.score,
                "attention": self.attention}


class Detections(list):
    """A list of :class:`Detection` (highest score first) that also carries λ over the whole input:
    ``attention_times`` (T,) seconds and ``attention`` (T,) in [0, 1] (both None without GAF)."""

    def __init__(self, items: Sequence[Detection], attention_times: np.ndarray | None,
                 attention: np.ndarray | None) -> None:
        super().__init__(items)
        self.attention_times = attention_times
        self.attention = attention


def _with_attention(segments: Sequence[Any], times: np.ndarray | None, lam: np.ndarray | None) -> Detections:
    """:class:`Detections` from gaf Segments, each with the mean λ of the steps inside it (the nearest step
    when none is)."""
    import numpy as np

    items = []
    for s in segments:
        mean = None
        if times is not None and lam is not None and len(times):
            inside = (times >= s.start) & (times <= s.end)
            mean = float(lam[inside].mean()) if inside.any() else float(lam[np.abs(times - s.start).argmin()])
        items.append(Detection(float(s.start), float(s.end), str(s.label), float(s.score), mean))
    return Detections(items, times, lam)


class Detector:
    """A trained temporal action detector (a ``gaf train`` checkpoint), loaded once, applied to many inputs.

    ``labels``: the class names in the model's order; ``config``: the run's resolved config; ``in_dim``:
    the feature width the model reads; ``fps`` / ``feature_stride`` / ``num_frames``: the timing of its
    training features (feature step t is centred at ``(t · stride + num_frames / 2) / fps`` s).
    """

    def __init__(self, ckpt: PathLike, *, device: str = "auto") -> None:
        from gaf.engine.checkpoint import load_checkpoint
        from gaf.engine.loading import load_detector as _load
        from gaf.engine.runtime import select_device
        from gaf.errors import CheckpointError

        state = load_checkpoint(ckpt)
        meta = state.get("meta") or {}
        self.ckpt = Path(ckpt)
        self.device = select_device(device)
        self.model, self.config = _load(ckpt, device=self.device, state=state)  # the checkpoint is read once
        del state
        self.labels = [str(x) for x in (meta.get("labels") or [])]
        if not self.labels:
            raise CheckpointError(f"{ckpt}: checkpoint meta lacks the class labels")
        self.in_dim = int(meta["in_dim"])
        ds = self.config.dataset
        self.fps = float(ds.fps) if ds.fps is not None else 30.0
        self.feature_stride, self.num_frames = int(ds.feature_stride), int(ds.num_frames)

    def __repr__(self) -> str:
        return (f"Detector({str(self.ckpt)!r}, {len(self.labels)} classes, in_dim={self.in_dim}, "
                f"{self.fps:g} fps, stride {self.feature_stride})")

    def detect(self, source: PathLike | np.ndarray, *, score_threshold: float = 0.2, top: int | None = None,
               duration: float | None = None, backbone_weights: Sequence[PathLike] = (),
               out_dir: PathLike | None = None, progress: bool = False) -> Detections:
        """Actions in ``source``: a raw video file (decoded, I3D features extracted with the checkpoint's
        settings and ``backbone_weights``, as ``gaf detect``) or a feature array (T, C) at the model's
        timing. Detections with ``score >= score_threshold``, at most ``top``, highest score first.

        ``duration`` (features only): the video's length in seconds (default ``T · stride / fps``).
        ``out_dir`` (videos only): keep ``gaf detect``'s files (features, JSON, timeline) there; default a
        temporary folder removed afterwards.
        """
        if not (isinstance(score_threshold, (int, float)) and 0.0 <= score_threshold <= 1.0):
            raise ConfigError(f"score_threshold: must be in [0, 1], got {score_threshold!r}")
        if top is not None and top < 1:
            raise ConfigError(f"top: must be >= 1, got {top}")
        if not isinstance(source, (str, os.PathLike)):  # an array: NumPy, torch, or anything array-like
            import numpy as np

            return self._detect_features(np.asarray(source), score_threshold, top, duration, progress)
        from gaf.detect import detect_video

        with tempfile.TemporaryDirectory(prefix="gaf-detect-") as tmp:
            result = detect_video(source, self.ckpt, out_dir=out_dir if out_dir is not None else tmp,
                                  backbone_weights=[str(w) for w in backbone_weights],
                                  score_threshold=score_threshold, top=top, device=str(self.device),
                                  progress=progress)
        return _with_attention(result.detections, result.attention_times, result.attention)

    def _detect_features(self, x: np.ndarray, score_threshold: float, top: int | None, duration: float | None,
                         progress: bool) -> Detections:
        import dataclasses

        import numpy as np

        from gaf.data.annotations import AnnotationSet, Video
        from gaf.data.features import FeatureDataset
        from gaf.engine.evaluate import run_inference

        if x.ndim != 2 or x.shape[1] != self.in_dim or x.shape[0] < 1:
            raise ConfigError(f"features: expected an array (T, {self.in_dim}) (time steps × the model's "
                              f"{self.in_dim} channels), got shape {tuple(x.shape)}")
        if not np.isfinite(x).all():
            raise ConfigError("features: the array holds NaN or infinite values")
        if duration is None:
            duration = x.shape[0] * self.feature_stride / self.fps
        one = AnnotationSet({"input": Video("input", [], duration=float(duration), fps=self.fps, subset="test")},
                            self.labels, "<features>")
        with tempfile.TemporaryDirectory(prefix="gaf-features-") as tmp:  # the dataset reads (T, C) from a file
            np.save(Path(tmp) / "input.npy", np.ascontiguousarray(x, dtype=np.float32))
            dcfg = dataclasses.replace(self.config.dataset, annotation_file="<features>", feature_dir=tmp,
                                       file_prefix="", file_suffix="", file_ext=".npy", test_subset="test",
                                       fps=self.fps, force_fps=True, input_dim=self.in_dim, channels=None,
                                       labels=self.labels)
            dataset = FeatureDataset(dcfg, "test", training=False, annotations=one)
            inference = run_inference([self.model], [dataset], self.config.eval, self.labels, device=self.device,
                                      progress=progress)
        found = inference.predictions.videos["input"].segments
        kept = [s for s in found if s.score >= score_threshold][:top]
        times, lam = inference.attention.get("input", (None, None))
        return _with_attention(kept, times, lam)


def train(config: PathLike, overrides: Sequence[str] = (), *, work_dir: PathLike | None = None,
          resume: bool = False, progress: bool = False) -> TrainResult:
    """Train a detector as ``gaf train CONFIG --set ...`` does (a YAML path or a bundled name such as
    ``"demo"``; ``overrides`` are ``key=value`` strings). Returns the run's ``work_dir``,
    ``final_checkpoint`` and ``metrics`` (None with ``train.eval_at_end: false``). Recognition configs train
    with the CLI (``gaf train ucf101_features``)."""
    from gaf.engine.experiment import load_experiment
    from gaf.engine.recognition import is_recognition_config
    from gaf.engine.train import train as _train

    if is_recognition_config(str(config)):
        raise ConfigError(f"{config}: a recognition config; gaf.train runs detection configs (use `gaf train`)")
    cfg = load_experiment(config, list(overrides))
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    return _train(cfg, work_dir=Path(cfg.resolved_work_dir()), resume=resume, progress=progress)


def load_detector(ckpt: PathLike, *, device: str = "auto") -> Detector:
    """The :class:`Detector` of a ``gaf train`` checkpoint (``final.pt``, ``latest.pt``, ``epoch_N.pt``)."""
    return Detector(ckpt, device=device)


def _scoring_inputs(gt: Any, pred: Any, subset: str | None, proposals: bool,
                    label_map: PathLike | None) -> tuple[AnnotationSet, AnnotationSet]:
    """The ground truth and predictions as AnnotationSets, objects or paths (and THUMOS14 variant names)
    resolved as ``gaf score`` resolves them (subset picked, prefixes checked)."""
    from gaf.metrics.inputs import resolve_scoring_inputs

    got = resolve_scoring_inputs(gt, pred, subset=subset, label_map=label_map, proposals=proposals)
    return got.gt, got.pred


def score(gt: AnnotationSet | PathLike, pred: AnnotationSet | PathLike, tious: Sequence[float] | None = None, *,
          subset: str | None = None, rules: str = "activitynet", proposals: bool = False,
          label_map: PathLike | None = None) -> DetectionResult | ProposalResult:
    """mAP of ``pred`` against ``gt`` as ``gaf score`` computes it (``.average_mAP``, ``.mAP`` per tIoU,
    ``.per_class_ap``, ``.format_table()``); with ``proposals=True`` the AR@AN result instead (``.ar_at(n)``,
    ``.auc``). ``gt``: an AnnotationSet, a ground-truth file or a THUMOS14 variant name; ``pred``: an
    AnnotationSet or a results JSON. ``tious`` default: the ground truth's protocol (ActivityNet
    0.5:0.05:0.95, THUMOS14 0.3:0.1:0.7; proposals 0.5:0.05:0.95). No torch import."""
    from gaf.metrics.inputs import protocol_tious

    ground_truth, predictions = _scoring_inputs(gt, pred, subset, proposals, label_map)
    if proposals:
        from gaf.metrics.proposals import evaluate_proposals

        return evaluate_proposals(ground_truth, predictions, tious)
    from gaf.metrics.detection import evaluate_detections

    if tious is None:
        tious, _ = protocol_tious(ground_truth)
    return evaluate_detections(ground_truth, predictions, tious, rules=rules)


def analyze(gt: AnnotationSet | PathLike, pred: AnnotationSet | PathLike, tious: Sequence[float] | None = None, *,
            subset: str | None = None, label_map: PathLike | None = None) -> ErrorAnalysis:
    """DETAD's error analysis of ``pred`` (as ``gaf analyze``): ``.profile``, ``.map_gain``,
    ``.sensitivity``, ``.false_negatives``, ``.format()``, ``.to_json()``. ``tious`` default: the
    benchmark's (0.5 on THUMOS14, 0.5:0.05:0.95 on ActivityNet). No torch import."""
    from gaf.metrics.analysis import analyze_detections, default_tious, protocol_of

    ground_truth, predictions = _scoring_inputs(gt, pred, subset, False, label_map)
    protocol = protocol_of(ground_truth)
    return analyze_detections(ground_truth, predictions, tious or default_tious(protocol), protocol=protocol)


def extract(videos: PathLike | Sequence[PathLike], out_dir: PathLike, **settings: Any) -> ExtractReport:
    """I3D features of raw ``videos`` (files or folders) into ``out_dir`` as ``gaf extract`` writes them
    (``<video_id>.npy`` (T, C), ``features.json``). ``settings`` are :class:`gaf.extraction.ExtractConfig`'s
    fields: ``stream`` (rgb | flow | both), ``fps``, ``stride``, ``window``, ``rgb_weights``,
    ``flow_weights``, ``device``, ``progress`` (default False here), ... ."""
    from gaf.extraction import ExtractConfig, collect_videos, extract_features

    paths = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    settings.setdefault("progress", False)
    try:
        cfg = ExtractConfig(**settings)
    except TypeError as exc:
        raise ConfigError(f"extract: {exc}") from None
    return extract_features(collect_videos(paths), out_dir, cfg)


def classify(videos: PathLike | Sequence[PathLike], weights: PathLike, *, top: int = 5, fps: float = 25.0,
             max_frames: int = 250, device: str = "auto") -> list[ClassifyResult]:
    """Kinetics-400 labels of raw ``videos`` with the pretrained I3D in ``weights`` (``gaf weights``'
    file), as ``gaf classify``: one result per video, ``.top`` = [(label, probability, logit)] best
    first."""
    from gaf.classification import classify_video, load_classifier
    from gaf.engine.runtime import select_device
    from gaf.extraction import collect_videos

    paths = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    classifier = load_classifier(weights, select_device(device))
    return [classify_video(v, classifier, top=top, fps=fps, max_frames=max_frames, progress=False)
            for v in collect_videos(paths)]
