"""One raw video → detected actions (the ``gaf detect`` library function).

:func:`detect_video` chains the three parts gaf already has, so nothing is
computed differently from ``gaf extract`` + ``gaf eval``:

1. **extraction** (:func:`gaf.extraction.extract_features`) with the settings
   the checkpoint's model was trained on: ``fps = dataset.fps`` (30 when the
   config has none), ``stride = dataset.feature_stride``, ``window =
   dataset.num_frames``, and the I3D stream(s) implied by the model's input
   width (1024 → RGB, or flow when ``dataset.channels`` is ``[1024, 2048]``;
   2048 → RGB ⊕ flow). Features go to ``<out_dir>/features/`` and are
   reused by a later run with the same settings;
2. **inference** (:func:`gaf.engine.evaluate.run_inference`) on a one-video
   dataset: a minimal annotation in memory (subset ``test``, the probed
   duration, the extraction fps, no instances), so
   sliding eval windows, steps → seconds and Soft-NMS are those of
   ``gaf eval`` with the checkpoint's ``eval`` settings;
3. **output**: the detections with ``score >= score_threshold`` (at most
   ``top``, highest first) as an ActivityNet results JSON
   ``<out_dir>/<video_id>.json`` and a timeline PNG
   ``<out_dir>/<video_id>_timeline.png`` with the attention λ(t) under it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from gaf.data.annotations import AnnotationSet, Segment, Video, write_predictions
from gaf.errors import CheckpointError, ConfigError, DataError
from gaf.io import prepare_output_dir

__all__ = ["DetectResult", "detect_video", "stream_for_model", "DEFAULT_FPS"]

DEFAULT_FPS = 30.0  # extraction rate when the checkpoint's dataset.fps is None
_I3D = 1024  # channels per I3D stream


@dataclass
class DetectResult:
    """What :func:`detect_video` found and wrote.

    ``detections``: segments in seconds with scores, highest score first
    (after ``score_threshold`` and ``top``). ``attention_times`` /
    ``attention``: shape (T,) each, seconds and λ in [0, 1] (None when the
    model has no attention branch). ``num_candidates``: detections after
    Soft-NMS, before the threshold and ``top``.
    """

    video_id: str
    duration: float  # seconds
    stream: str  # rgb | flow | both
    detections: list[Segment]
    num_candidates: int
    attention_times: np.ndarray | None
    attention: np.ndarray | None
    json_path: Path
    timeline_path: Path
    feature_path: Path
    labels: list[str]


def stream_for_model(in_dim: int, input_dim: int, channels: Sequence[int] | None, *, where: str,
                     stream: str | None = None) -> str:
    """The I3D stream(s) whose features a model of input width ``in_dim`` expects.

    ``in_dim`` 2048 → ``both`` (RGB ⊕ flow); 1024 → ``rgb``, or ``flow`` when
    the training features were sliced with ``channels == [1024, 2048]``.
    ``stream`` overrides the choice for a 1024-wide model (e.g. one trained
    on flow-only files). Any other width raises ConfigError (``where`` names
    the checkpoint).
    """
    if in_dim not in (_I3D, 2 * _I3D):
        sliced = f", dataset.channels={list(channels)}" if channels is not None else ""
        raise ConfigError(
            f"{where}: the model takes {in_dim}-channel features (dataset.input_dim={input_dim}{sliced}), "
            f"but gaf detect feeds it I3D features extracted from the video: 1024 (RGB), 1024 (flow) or "
            f"2048 (RGB ⊕ flow). Use a checkpoint trained on I3D features, e.g. "
            f"`gaf extract VIDEOS --out FEATS --stream both` + an annotation JSON, then "
            f"`gaf train thumos14_i3d --set dataset.feature_dir=FEATS --set dataset.annotation_file=ANN.json`")
    if in_dim == 2 * _I3D:
        if stream not in (None, "both"):
            raise ConfigError(f"{where}: the model takes 2048 channels (RGB ⊕ flow); stream {stream!r} gives 1024")
        return "both"
    if stream == "both":
        raise ConfigError(f"{where}: the model takes 1024 channels (one I3D stream); stream 'both' gives 2048")
    if stream is not None:
        if stream not in ("rgb", "flow"):
            raise ConfigError(f"stream: expected rgb, flow or both, got {stream!r}")
        return stream
    return "flow" if channels is not None and list(channels) == [_I3D, 2 * _I3D] else "rgb"


def _select(segments: Sequence[Segment], threshold: float, top: int | None) -> list[Segment]:
    kept = sorted((s for s in segments if s.score is not None and s.score >= threshold),
                  key=lambda s: (-float(s.score), s.start, s.end))
    return kept if top is None else kept[:top]


def _one_video(video: Path, video_id: str, duration: float, fps: float, labels: list[str]) -> AnnotationSet:
    """A ground truth of one video (subset ``test``, no instances), in memory, so one video is a dataset."""
    return AnnotationSet(videos={video_id: Video(video_id, [], duration=duration, fps=fps, subset="test")},
                         labels=labels, source=str(video))


def _frame_dataset(cfg, video: Path, video_id: str, info, labels: list[str], out: Path):
    """End-to-end checkpoint: the model runs I3D itself, so the dataset is the video's frame clips."""
    from gaf.data.e2e_frames import FrameClipDataset

    fr = cfg.frames
    fcfg = dataclasses.replace(fr, annotation_file=str(video), video_dir=str(video.parent),
                               video_ext=video.suffix, test_subset="test", cache_dir=None, labels=labels)
    one = _one_video(video, video_id, float(info.duration), float(fr.fps), labels)
    return FrameClipDataset(fcfg, "test", training=False, annotations=one), cfg.e2e.stream, float(fr.fps), video


def _check_preprocessing(ckpt, recorded: dict | None, streams: list[str], weights: dict[str, str],
                         short_side: int | None | str, crop: int | None | str) -> tuple[int | None, int | None]:
    """``(short_side, crop)`` to extract with: the checkpoint's record of how its training features
    were made (``meta["extraction"]``, from ``gaf extract``'s index), which the caller's explicit
    values and weights must match (ConfigError otherwise); 256 / 224 when nothing is recorded.
    ``short_side`` / ``crop`` = ``"auto"``: take the recorded (or default) value."""
    from gaf.extraction import weights_sha256

    recorded = recorded or {}
    chosen = {}
    for key, value, default in (("short_side", short_side, 256), ("crop", crop, 224)):
        if value == "auto":
            value = recorded.get(key, default)
        elif key in recorded and recorded[key] != value:
            raise ConfigError(f"{ckpt}: the model was trained on features made with --{key.replace('_', '-')} "
                              f"{recorded[key]}, not {value}; drop the option (gaf detect then uses "
                              f"{recorded[key]}) or pass the same value")
        chosen[key] = value
    want = recorded.get("weights_sha256") or {}
    for name in streams:
        if name not in want:
            continue
        have = weights_sha256(weights.get(name))
        if have != want[name]:
            were = f"weights with sha256 {want[name][:16]}..." if want[name] else "an UNTRAINED backbone (no weights)"
            given = f"sha256 {have[:16]}... ({weights[name]})" if have else "no weights"
            raise ConfigError(f"{ckpt}: the model was trained on {name} features of {were}; you gave {given}. "
                              "Pass the backbone weights its training features were extracted with")
    return chosen["short_side"], chosen["crop"]


def _feature_dataset(cfg, ckpt, video: Path, video_id: str, info, labels: list[str], out: Path, *, in_dim: int,
                     recorded, stream, backbone_weights, short_side, crop, flow_method, batch_size, device,
                     progress):
    """Feature checkpoint: extract I3D features as the model was trained on, then a one-video feature dataset."""
    from gaf.data.features import FeatureDataset
    from gaf.extraction import ExtractConfig, extract_features

    ds = cfg.dataset
    chosen = stream_for_model(in_dim, ds.input_dim, ds.channels, where=str(ckpt), stream=stream)
    streams = ["rgb", "flow"] if chosen == "both" else [chosen]
    weights = list(backbone_weights or [])
    if weights and len(weights) != len(streams):
        raise ConfigError(f"backbone weights: the model needs stream {chosen!r}, which takes {len(streams)} "
                          f"file(s) ({' '.join(s.upper() + '.pt' for s in streams)}), got {len(weights)}")
    named = dict(zip(streams, weights))
    for path in weights:
        if not Path(path).is_file():
            raise DataError(f"{path}: backbone weights file not found")
    short_side, crop = _check_preprocessing(ckpt, recorded, streams, named, short_side, crop)

    fps = float(ds.fps) if ds.fps is not None else DEFAULT_FPS
    feat_dir = out / "features"
    ecfg = ExtractConfig(stream=chosen, fps=fps, window=ds.num_frames, stride=ds.feature_stride,
                         short_side=short_side, crop=crop, batch_size=batch_size, rgb_weights=named.get("rgb"),
                         flow_weights=named.get("flow"), flow_method=flow_method, device=device,
                         progress=progress)
    try:
        report = extract_features([video], feat_dir, ecfg)
    except ConfigError as exc:  # an earlier run with other settings left features there
        raise ConfigError(f"{exc} (gaf detect keeps features in <--out>/features/; use another --out "
                          "or delete that folder)") from None
    if report.failures:
        raise DataError(report.failures[0][1])

    # A one-video dataset: the same windows, seconds and post-processing as gaf eval.
    dcfg = dataclasses.replace(ds, annotation_file=str(video), feature_dir=str(feat_dir), file_prefix="",
                               file_suffix="", file_ext=".npy", test_subset="test", fps=fps, force_fps=False,
                               input_dim=_I3D * len(streams), channels=None, labels=labels)
    one = _one_video(video, video_id, float(info.duration), fps, labels)
    return FeatureDataset(dcfg, "test", training=False, annotations=one), chosen, fps, feat_dir / f"{video_id}.npy"


def _detection_checkpoint(state: dict, ckpt: str | os.PathLike[str]):
    """``(config, in_dim, labels, meta)`` of a detector checkpoint fit for a new video; CheckpointError
    when a part is missing, ConfigError for a recognition or an oracle checkpoint."""
    from gaf.engine.experiment import experiment_from_dict

    stored = dict(state.get("config") or {})
    if stored.get("task") == "recognition":
        raise ConfigError(f"{ckpt}: a recognition checkpoint (whole-clip labels); gaf detect needs a "
                          "temporal detection checkpoint (from `gaf train` on a detection config)")
    if not stored:
        raise CheckpointError(f"{ckpt}: the checkpoint holds no config")
    cfg = experiment_from_dict(stored, where=f"{ckpt} config")
    if cfg.e2e is None and cfg.model.gaf.enabled and cfg.model.gaf.oracle:
        raise ConfigError(f"{ckpt}: an oracle model (model.gaf.oracle: its attention is the ground-truth action "
                          "mask) is for measurement only and cannot run on a new video")
    meta = state.get("meta") or {}
    try:
        in_dim = int(meta["in_dim"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{ckpt}: checkpoint meta lacks in_dim") from None
    labels = [str(x) for x in (meta.get("labels") or [])]
    if not labels:
        raise CheckpointError(f"{ckpt}: checkpoint meta lacks the class labels")
    return cfg, in_dim, labels, meta


def detect_video(
    video: str | os.PathLike[str],
    ckpt: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str],
    backbone_weights: Sequence[str] = (),
    score_threshold: float = 0.2,
    top: int | None = None,
    short_side: int | None | str = "auto",
    crop: int | None | str = "auto",
    stream: str | None = None,
    flow_method: str = "auto",
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = True,
) -> DetectResult:
    """Detect the actions in one raw ``video`` with the detector checkpoint ``ckpt``.

    ``backbone_weights``: I3D state dicts, one per extracted stream (RGB.pt,
    FLOW.pt, or RGB.pt FLOW.pt for ``both``); none → an untrained backbone,
    with a warning; they must be those the training features were made with
    when the checkpoint records it (models trained on ``gaf extract``
    output: ``meta["extraction"]`` holds every preprocessing setting and the
    weights' sha256), else ConfigError. ``short_side`` / ``crop``: pixels, as
    in ``gaf extract``; ``"auto"`` takes the checkpoint's record (256 / 224
    when it has none), and an explicit value must match the record.
    ``score_threshold`` / ``top``
    filter the final detections (after Soft-NMS) that are returned, written
    to the JSON and drawn. Writes ``<out_dir>/features/``,
    ``<out_dir>/<video_id>.json`` and ``<out_dir>/<video_id>_timeline.png``.

    Raises DataError (missing or undecodable video), CheckpointError
    (unreadable checkpoint), ConfigError (a model not trained on I3D
    features, a recognition checkpoint, bad options), OutputError (``out_dir``
    is a file or device, or cannot be created or written into; before extraction).
    """
    from gaf import viz
    from gaf.data.video import probe
    from gaf.engine.checkpoint import load_checkpoint
    from gaf.engine.evaluate import run_inference
    from gaf.engine.loading import load_detector
    from gaf.engine.runtime import select_device
    from gaf.extraction import video_id_of

    if not (isinstance(score_threshold, (int, float)) and 0.0 <= score_threshold <= 1.0):
        raise ConfigError(f"score_threshold: must be in [0, 1], got {score_threshold!r}")
    if top is not None and top < 1:
        raise ConfigError(f"top: must be >= 1, got {top}")
    video = Path(video)
    if not video.is_file():
        raise DataError(f"{video}: video file not found" if not video.exists() else f"{video}: not a video file")
    video_id = video_id_of(video)
    info = probe(video)  # DataError naming the file when it cannot be decoded

    state = load_checkpoint(ckpt)
    cfg, in_dim, labels, meta = _detection_checkpoint(state, ckpt)
    out = prepare_output_dir(out_dir, "the output folder", create=False)  # before extraction; a device is left as is
    if cfg.e2e is not None:
        dataset, chosen, fps, feature_path = _frame_dataset(cfg, video, video_id, info, labels, out)
    else:
        dataset, chosen, fps, feature_path = _feature_dataset(
            cfg, ckpt, video, video_id, info, labels, out, in_dim=in_dim, recorded=meta.get("extraction"),
            stream=stream,
            backbone_weights=backbone_weights, short_side=short_side, crop=crop, flow_method=flow_method,
            batch_size=batch_size, device=device, progress=progress)

    dev = select_device(device)
    model, _ = load_detector(ckpt, device=dev, state=state)  # the checkpoint is read once
    del state
    inference = run_inference([model], [dataset], cfg.eval, labels, device=dev, progress=progress)
    found = inference.predictions.videos[video_id]
    detections = _select(found.segments, float(score_threshold), top)
    times, lam = inference.attention.get(video_id, (None, None))

    prepare_output_dir(out, "the output folder")
    result_set = AnnotationSet(videos={video_id: Video(video_id, detections, duration=found.duration, fps=fps)},
                               labels=labels, source=f"gaf detect {video.name} with {Path(ckpt).name}")
    json_path = write_predictions(result_set, out / f"{video_id}.json")
    timeline = viz.plot_timeline(out / f"{video_id}_timeline.png", video_id=video_id,
                                 duration=float(found.duration or info.duration), ground_truth=[],
                                 detections=detections, attention=lam, attention_times=times,
                                 max_detections=top or 20)
    return DetectResult(video_id=video_id, duration=float(found.duration or info.duration), stream=chosen,
                        detections=detections, num_candidates=len(found.segments), attention_times=times,
                        attention=lam, json_path=json_path, timeline_path=timeline,
                        feature_path=feature_path, labels=labels)
