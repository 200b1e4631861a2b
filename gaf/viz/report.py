"""The run report: ``report.html`` (one self-contained page) and ``report.md``, rendered from one list of
blocks (mAP and per-class AP tables, the figures, run details, the config).
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from gaf.errors import DataError
from gaf.io import atomic_write_bytes
from gaf.metrics.detection import format_percent as _pct
from gaf.metrics.detection import format_tiou as _fmt_tiou
from gaf.viz.common import _number
from gaf.viz.tables import _metric_rows

def _per_class_rows(metrics: Mapping[str, Any], tious: Sequence[float]) -> list[tuple[str, list[str], str]]:
    """``(class, AP % per tIoU, mean %)`` per class, in the metrics' order."""
    rows = []
    for name, values in (metrics.get("per_class_ap") or {}).items():
        vals = [math.nan if v is None else float(v) for v in values]
        if len(vals) != len(tious):
            raise DataError(f"metrics: per_class_ap[{name!r}] has {len(vals)} values but 'tious' has {len(tious)}")
        finite = [v for v in vals if math.isfinite(v)]
        rows.append((str(name), [_pct(v) for v in vals], _pct(sum(finite) / len(finite) if finite else None)))
    return rows


def _rel_image(path: Path, out_dir: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"report: image {str(path)!r} does not exist")
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def _md_cell(text: str) -> str:
    """Text safe in a Markdown line or table cell (HTML-escaped, pipes and backslashes escaped)."""
    return html.escape(str(text), quote=False).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1460px;padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.25em .6em}
td{white-space:pre-wrap}table.num td{text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f2f2f2}tr.foot td{font-weight:bold;background:#fafafa}
img{max-width:100%;display:block;margin:.6em 0;border:1px solid #eee}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}.note{color:#666}"""

# A report is a list of blocks, rendered once to HTML and once to Markdown:
# ("h1" | "h2" | "note" | "pre", text), ("img", (alt, relative path)),
# ("table", (header, rows, footer row or None, numeric columns?)).
_Block = tuple[str, Any]


def _html(blocks: Sequence[_Block]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(blocks[0][1])}</title><style>{_CSS}</style></head><body>"]
    for kind, x in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{e(x)}</{kind}>")
        elif kind == "note":
            out.append(f'<p class="note">{e(x)}</p>')
        elif kind == "pre":
            out.append(f"<pre>{e(x)}</pre>")
        elif kind == "img":
            out.append(f'<figure><img src="{e(quote(x[1]))}" alt="{e(x[0])}"></figure>')
        else:
            header, rows, foot, numeric = x
            out.append(f'<table class="{"num" if numeric else "kv"}"><thead><tr>'
                       + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
            if foot is not None:
                out.append('<tr class="foot">' + "".join(f"<td>{e(c)}</td>" for c in foot) + "</tr>")
            out.append("</tbody></table>")
    return "\n".join(out + ["</body></html>", ""])


def _markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for kind, x in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + _md_cell(x))
        elif kind == "note":
            out.append(_md_cell(x))
        elif kind == "pre":
            fence = "`" * max(3, 1 + max(map(len, re.findall("`+", x)), default=0))
            out.append(f"{fence}\n{x.rstrip()}\n{fence}")
        elif kind == "img":
            out.append(f"![{_md_cell(x[0])}](<{x[1]}>)")
        else:
            header, rows, foot, _ = x
            lines = [header, ["---"] * len(header)] + list(rows) + ([foot] if foot is not None else [])
            out.append("\n".join("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in lines))
    return "\n\n".join(out) + "\n"


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    metrics: dict,
    timelines: Sequence[Path] = (),
    per_class_plot: Path | None = None,
    config_text: str | None = None,
    extra: dict[str, str] | None = None,
    curves_plot: Path | None = None,
    health: dict[str, float] | None = None,
    run_info: Mapping[str, Any] | None = None,
    pr_plot: Path | None = None,
    analysis_plot: Path | None = None,
    analysis_text: str | None = None,
) -> Path:
    """Write ``out_dir/report.html`` (one self-contained page) and ``out_dir/report.md``.

    Both hold: the mAP table (tIoUs as columns, then the average; values in
    %), the per-class AP table (classes x tIoUs plus the mean over tIoUs, with
    the mAP as the last row), the images (referenced by paths relative to
    ``out_dir``; each must exist), ``extra`` as a key/value table and the
    resolved config verbatim. With ``curves_plot`` (see
    :func:`plot_training_curves`) and / or ``health`` (the last epoch's
    ``health/...`` entries), a section "Training and attention health" holds
    the curves and the health values (3 decimals). ``run_info`` (config,
    checkpoint, epoch, date, wall time, data counts, ground truth) opens the
    page as a table; ``pr_plot`` (:func:`plot_pr_curves`) and
    ``analysis_plot`` / ``analysis_text`` (:func:`plot_error_analysis`,
    ``ErrorAnalysis.format()``) get a section each. All text is HTML-escaped.
    Returns the HTML path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tious, maps, avg = _metric_rows(metrics)
    t_head = [_fmt_tiou(t) for t in tious]
    map_cells = [_pct(v) for v in maps] + [_pct(avg)]
    blocks: list[_Block] = [("h1", title)]
    if metrics.get("ground_truth_variant"):
        blocks.append(("note", f"Ground truth: {metrics['ground_truth_variant']}"))
    if run_info:
        blocks += [("h2", "Run"), ("table", (["field", "value"], [[str(k), str(v)] for k, v in run_info.items()],
                                             None, False))]
    blocks += [("h2", "mAP"), ("table", (["tIoU", *t_head, "Avg"], [["mAP (%)", *map_cells]], None, True))]
    blocks.append(("h2", "Per-class AP (%)"))
    pc_rows = [[name, *vals, mean] for name, vals, mean in _per_class_rows(metrics, tious)]
    if pc_rows:
        blocks.append(("table", (["class", *t_head, "mean"], pc_rows, ["mAP", *map_cells], True)))
    else:
        blocks.append(("note", "No per-class AP in these metrics."))
    if per_class_plot is not None:
        blocks.append(("img", ("per-class AP", _rel_image(Path(per_class_plot), out))))
    if pr_plot is not None:
        blocks += [("h2", "Precision–recall"), ("img", ("precision-recall curves", _rel_image(Path(pr_plot), out)))]
    if analysis_plot is not None or analysis_text:
        blocks += [("h2", "Error analysis (DETAD)")]
        if analysis_plot is not None:
            blocks.append(("img", ("error analysis", _rel_image(Path(analysis_plot), out))))
        if analysis_text:
            blocks.append(("pre", analysis_text))
    if timelines:
        blocks.append(("h2", "Detections"))
        blocks += [("img", (f"detections: {Path(p).stem}", _rel_image(Path(p), out))) for p in timelines]
    if curves_plot is not None or health:
        blocks.append(("h2", "Training and attention health"))
        if curves_plot is not None:
            blocks.append(("img", ("training curves and attention health", _rel_image(Path(curves_plot), out))))
        if health:
            rows = [[str(k), "-" if (v := _number(value)) is None else f"{v:.3f}"] for k, value in health.items()]
            blocks += [("note", "Attention health at the last epoch (λ in [0, 1]):"),
                       ("table", (["key", "value"], rows, None, True))]
    if extra:
        blocks += [("h2", "Run details"), ("table", (["field", "value"], [[str(k), str(v)] for k, v in extra.items()],
                                                     None, False))]
    if config_text is not None:
        blocks += [("h2", "Config"), ("pre", config_text)]
    html_path = atomic_write_bytes(out / "report.html", _html(blocks).encode("utf-8"))
    atomic_write_bytes(out / "report.md", _markdown(blocks).encode("utf-8"))
    return html_path
