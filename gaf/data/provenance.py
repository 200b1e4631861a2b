"""Where a feature folder's features came from: the ``features.json`` that ``gaf extract`` writes.

``gaf extract`` records in ``<out_dir>/features.json`` the settings of the
extraction (:data:`gaf.data.features.PREPROCESSING`: fps, stride, window,
streams, short side, crop, the sha256 of each stream's weights; also dims,
flow method, weights paths) and, per video, its duration, steps, frames, fps
and source. :func:`read_provenance` reads it, and the ``features.json`` of
subfolders (a folder that gathers several extractions): when two of them, or a
video's record and its index, disagree on a setting, the folder mixes
extractions and a ConfigError names the folder and the setting.
:func:`provenance_record` is the plain record ``gaf train`` keeps in its
checkpoints' ``meta["feature_provenance"]``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaf.data.features import PREPROCESSING, read_feature_index
from gaf.errors import ConfigError

__all__ = ["Provenance", "read_provenance", "provenance_record", "INDEX_NAME"]

#: the index file ``gaf extract`` writes in a feature folder
INDEX_NAME = "features.json"
_SEARCH_DEPTH = 2  # subfolder levels searched for more indexes


@dataclass
class Provenance:
    """The extraction record(s) of a feature folder.

    ``settings``: the index's top-level settings (everything but
    ``videos``); ``videos``: per-video records of every index, by video id;
    ``indexes``: the ``features.json`` files read (the folder's own first).
    """

    folder: str
    settings: dict[str, Any]
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line: how the features were made."""
        s = self.settings
        streams = s.get("streams") or []
        shas = s.get("weights_sha256") or {}
        weights = ", ".join(f"{name} {str(shas[name])[:12]}" if shas.get(name) else f"{name} untrained"
                            for name in streams) or "not recorded"
        fps = s.get("fps")
        parts = [f"streams {'+'.join(streams) or '?'}", f"fps {fps:g}" if isinstance(fps, (int, float)) else
                 "fps native (each video's own)", f"window {s.get('window')}", f"stride {s.get('stride')}",
                 f"short side {s.get('short_side')}", f"crop {s.get('crop')}"]
        if s.get("flow_method"):
            parts.append(f"flow {s['flow_method']}")
        where = self.indexes[0] if len(self.indexes) == 1 else f"{len(self.indexes)} indexes under {self.folder}"
        return (f"gaf extract ({where}, {len(self.videos)} videos recorded): {', '.join(parts)}; "
                f"weights sha256 {weights}")

    def config_conflicts(self, feature_stride: int, num_frames: int, fps: float | None,
                         input_dim: int) -> list[str]:
        """The dataset settings that read these features differently from how they were made."""
        s, out = self.settings, []
        for key, name, ours in (("stride", "feature_stride", feature_stride), ("window", "num_frames", num_frames),
                                ("fps", "fps", fps), ("feature_dim", "input_dim", input_dim)):
            theirs = s.get(key)
            if ours is not None and isinstance(theirs, (int, float)) and float(theirs) != float(ours):
                out.append(f"dataset.{name} is {ours:g}, the features were made with {key} {theirs:g}")
        return out


def _find_indexes(folder: Path) -> list[Path]:
    """``folder/features.json`` first, then those of its subfolders (up to :data:`_SEARCH_DEPTH` levels)."""
    found = []
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < _SEARCH_DEPTH else []
        if INDEX_NAME in files:
            found.append(Path(root) / INDEX_NAME)
    return found


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def read_provenance(feature_dir: str | os.PathLike[str]) -> Provenance | None:
    """The extraction record of ``feature_dir`` (None when it holds no readable ``features.json``).

    ConfigError (one line naming the folder and the setting) when the folder
    mixes extractions: two indexes (the folder's and a subfolder's, or two
    subfolders') differ on a :data:`~gaf.data.features.PREPROCESSING`
    setting, or a video's record carries a setting that differs from its
    index's (a per-video fps differing from a fixed extraction fps).
    """
    folder = Path(feature_dir)
    if not folder.is_dir():
        return None
    indexes = [(path, index) for path in _find_indexes(folder) if (index := read_feature_index(path)) is not None]
    if not indexes:
        return None
    first_path, first = indexes[0]
    videos: dict[str, dict[str, Any]] = {}
    for path, index in indexes:
        for key in PREPROCESSING:
            if not _same(index.get(key), first.get(key)):
                raise ConfigError(f"{folder}: mixes feature extractions: {key} differs ({first_path}: "
                                  f"{first.get(key)!r}, {path}: {index.get(key)!r}); keep one extraction per folder")
        for vid, record in index["videos"].items():
            if not isinstance(record, dict):
                continue
            for key in PREPROCESSING:
                if key in record and index.get(key) is not None and not _same(record[key], index[key]):
                    raise ConfigError(f"{folder}: mixes feature extractions: {key} differs ({path}: {index[key]!r}, "
                                      f"its video {vid!r}: {record[key]!r}); keep one extraction per folder")
            videos[vid] = record
    settings = {k: v for k, v in first.items() if k != "videos"}
    return Provenance(str(folder), settings, videos, [str(p) for p, _ in indexes])


def provenance_record(feature_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a run keeps of its features' provenance: the extraction settings, the index path(s) and the
    count of videos recorded; ``{"mixed": message}`` for a folder mixing extractions; None without index."""
    try:
        found = read_provenance(feature_dir)
    except ConfigError as err:
        return {"mixed": str(err)}
    if found is None:
        return None
    return {**found.settings, "indexes": found.indexes, "videos_recorded": len(found.videos)}
