"""Pictures and reports: detection timelines, attention curves, per-class AP, HTML/Markdown.

All times are in **seconds**; AP and mAP values are **fractions in [0, 1]**
and are shown as percentages. matplotlib is imported lazily (inside the
plotting functions, Agg backend, no pyplot), so importing this package is cheap
and the text helpers work without it. Every file is written atomically: a
temporary file in the same folder, then ``os.replace``.

``metrics`` dicts (as made by ``gaf.metrics``) hold ``tious`` (list of
thresholds), ``mAP`` (one value per tIoU, a list aligned with ``tious`` or a
dict keyed by tIoU), ``average_mAP``, ``per_class_ap`` (class -> one AP per
tIoU) and optionally ``ground_truth_variant``.

Modules: ``common`` (matplotlib plumbing shared by the figures), ``timeline``
(:func:`plot_timeline`), ``evaluation_figures`` (:func:`plot_per_class_ap`,
:func:`plot_pr_curves`, :func:`plot_error_analysis`), ``training_curves``
(:func:`plot_training_curves`), ``tables`` (:func:`format_metrics_table`,
:func:`format_detections_table`) and ``report`` (:func:`write_report`).
"""

from __future__ import annotations

from gaf.viz.common import _mpl, _save_figure
from gaf.viz.evaluation_figures import plot_error_analysis, plot_per_class_ap, plot_pr_curves
from gaf.viz.report import write_report
from gaf.viz.tables import format_detections_table, format_metrics_table
from gaf.viz.timeline import plot_timeline
from gaf.viz.training_curves import plot_training_curves

__all__ = ["plot_timeline", "plot_per_class_ap", "plot_training_curves", "write_report", "format_detections_table",
           "format_metrics_table"]
