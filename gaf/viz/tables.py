"""Plain-text tables (no matplotlib): the mAP table of a metrics dict (:func:`format_metrics_table`) and
a table of detections (:func:`format_detections_table`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from gaf.data.annotations import Segment
from gaf.errors import DataError
from gaf.metrics.detection import map_table, text_table
from gaf.viz.common import _score_of

def _metric_rows(metrics: Mapping[str, Any]) -> tuple[list[float], list[float], float]:
    """``(tious, mAP per tIoU, average mAP)`` from a metrics dict, checking its fields."""
    for key in ("tious", "mAP"):
        if key not in metrics:
            raise DataError(f"metrics: missing field {key!r} (have {sorted(metrics)})")
    tious = [float(t) for t in metrics["tious"]]
    raw = metrics["mAP"]
    if isinstance(raw, Mapping):
        by_t = {float(k): v for k, v in raw.items()}
        try:
            maps = [float(next(v for k, v in by_t.items() if abs(k - t) < 1e-9)) for t in tious]
        except StopIteration:
            raise DataError(f"metrics: field 'mAP' has no value for every tIoU in {tious}") from None
    else:
        maps = [float(v) for v in raw]
        if len(maps) != len(tious):
            raise DataError(f"metrics: field 'mAP' has {len(maps)} values but 'tious' has {len(tious)}")
    avg = metrics.get("average_mAP")
    avg = float(np.mean(maps)) if avg is None and maps else (math.nan if avg is None else float(avg))
    return tious, maps, avg


def format_metrics_table(metrics: dict) -> str:
    """Plain-text mAP table of a metrics dict (``metrics.json``): one row, tIoUs as columns, then ``Avg``
    (values in %), the table ``gaf score`` / ``gaf eval`` print."""
    return map_table(*_metric_rows(metrics))


def format_detections_table(detections: Sequence[Segment], *, max_rows: int | None = None) -> str:
    """Plain-text table of detections (start s, end s, duration s, label, score), sorted by start.

    With ``max_rows``, the ``max_rows`` highest-scoring detections are kept
    (then shown by start time) and a last line says how many were left out.
    """
    dets = list(detections)
    if not dets:
        return "no detections"
    shown = dets
    if max_rows is not None and len(dets) > max_rows:
        shown = sorted(dets, key=lambda d: (-_score_of(d), d.start, d.end))[: max(max_rows, 0)]
    shown = sorted(shown, key=lambda d: (d.start, d.end, -_score_of(d)))
    rows = [[f"{d.start:.2f}", f"{d.end:.2f}", f"{d.end - d.start:.2f}", d.label,
             "-" if d.score is None else f"{d.score:.4f}"] for d in shown]
    header = ["start (s)", "end (s)", "duration (s)", "label", "score"]
    table = text_table(header, rows, [True, True, True, False, True])
    if len(shown) < len(dets):
        table += f"\n({len(dets) - len(shown)} more detections with lower scores not shown; {len(dets)} in total)"
    return table
