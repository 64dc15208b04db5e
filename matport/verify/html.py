"""A verify report as a static HTML page that opens offline: the summary, the layer graph and a
per-layer error plot (inline SVG, no scripts, no external resources), the first layer that
parts highlighted.

`report_section` renders one report as a self-contained ``<section>`` (for a page that shows
several files, such as migrate's report); `render_page` wraps it in a document and `write_html`
writes that document. All three take the report's JSON form (``VerifyReport.to_dict()``, or the
``report`` a migrate artifact's metadata holds). Importing this module loads no torch.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matport.verify.report import summary_lines

GOOD, BAD, FIRST, NEUTRAL, INK = "#2e7d32", "#ef6c00", "#c62828", "#9e9e9e", "#212121"
_STATUS = {"verified": ("VERIFIED", GOOD), "failed": ("FAILED", FIRST),
           "error": ("COULD NOT VERIFY", BAD)}
_FLOOR = 1e-12  # log plot: errors below (exact zeros) are drawn at the floor
_PLOT_W, _PLOT_H, _MARGIN = 900, 260, 56
_LABELLED = 60  # layer graphs up to this many layers get their names written
_GRAPH_ROW = 40  # depths per row of the layer graph
_PAGE_STYLE = ("body{font-family:sans-serif;margin:24px;color:#212121;max-width:1000px}"
               "pre.summary{white-space:pre-wrap}"
               "svg{display:block;margin:8px 0 20px;background:#fafafa}")


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write `render_page` of ``report`` to ``path`` (UTF-8).

    Args:
        report: a verify report's JSON form (``VerifyReport.to_dict()``).
        path: the file to write.

    Returns:
        ``path``.

    Raises:
        OSError: when the file cannot be written.
    """
    path = Path(path)
    path.write_text(render_page(report), encoding="utf-8")
    return path


def render_page(report: Mapping[str, Any], title: str | None = None) -> str:
    """A complete HTML document showing one report.

    Args:
        report: a verify report's JSON form.
        title: the page title (default: the .mat file and the ONNX file).

    Returns:
        The document.
    """
    title = title or f"matport verify: {report.get('mat') or 'model'}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_PAGE_STYLE}</style></head>\n<body>\n"
            f"{report_section(report)}\n</body></html>\n")


def report_section(report: Mapping[str, Any]) -> str:
    """One report as a self-contained ``<section class="matport-verify">``: summary, layer
    graph (``svg#layer-graph``) and per-layer error plot (``svg#error-plot``), the first layer
    that parts in red. Without per-layer errors (the outputs agreed and none were asked for) the
    section says so instead of drawing them.

    Args:
        report: a verify report's JSON form.

    Returns:
        The HTML fragment.
    """
    word, color = _STATUS.get(str(report.get("status")), ("UNKNOWN", NEUTRAL))
    parts = [
        '<section class="matport-verify">',
        f'<h2><span style="color:{color}">{word}</span> {_e(report.get("mat") or "model")} '
        f'against {_e(report.get("onnx_path") or "")}</h2>',
        f'<pre class="summary">{_e(chr(10).join(summary_lines(report)[1:]))}</pre>',
    ]
    layers = report.get("layers")
    if layers and layers.get("compared"):
        divergence = report.get("divergence") or {}
        first = divergence.get("layer")
        rtol = float(report.get("tolerance", {}).get("rtol", 0.0))
        parts += [
            f"<h3>Per-layer error (input {int(layers['sample'])}, relative to max|onnx|)</h3>",
            error_plot(layers["compared"], rtol, first),
            "<h3>Layer graph</h3>",
            layer_graph(layers["graph_layers"], layers["graph_edges"], layers["compared"], first),
        ]
    elif report.get("status") == "error":
        parts.append("<p>The check could not run: nothing to plot.</p>")
    else:
        parts.append("<p>Per-layer errors were not computed (the outputs agreed; "
                     "<code>matport verify --html</code> computes them).</p>")
    parts.append("</section>")
    return "\n".join(parts)


def error_plot(compared: Sequence[Mapping[str, Any]], rtol: float, first: str | None) -> str:
    """The per-layer relative errors on a log scale, the tolerance as a dashed line.

    Args:
        compared: the report's ``layers.compared`` entries, in order.
        rtol: the tolerance line.
        first: the first layer that parts (drawn larger, in red, and labelled), or None.

    Returns:
        ``<svg id="error-plot">``.
    """
    logs = [math.log10(max(_finite(e["max_rel_error"]), _FLOOR)) for e in compared]
    top = max([*logs, math.log10(max(rtol, _FLOOR)), 0.0]) + 0.5
    bottom = min([*logs, math.log10(max(rtol, _FLOOR))]) - 0.5
    w, h, m = _PLOT_W, _PLOT_H, _MARGIN

    def x(i: int) -> float:
        return m + (w - 2 * m) * (i + 0.5) / max(len(compared), 1)

    def y(v: float) -> float:
        return h - m / 2 - (h - m) * (v - bottom) / (top - bottom)

    out = [f'<svg id="error-plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
           f'width="100%" role="img" aria-label="per-layer relative error">',
           f'<line x1="{m}" y1="{y(bottom):.1f}" x2="{m}" y2="{y(top):.1f}" stroke="{INK}"/>']
    for tick in range(math.ceil(bottom), math.floor(top) + 1):
        out.append(f'<text x="{m - 6}" y="{y(tick) + 4:.1f}" font-size="11" '
                   f'text-anchor="end">1e{tick}</text>')
    if rtol > 0:
        ry = y(math.log10(rtol))
        out.append(f'<line x1="{m}" y1="{ry:.1f}" x2="{w - m}" y2="{ry:.1f}" stroke="{INK}" '
                   f'stroke-dasharray="6 4"/><text x="{w - m}" y="{ry - 4:.1f}" font-size="11" '
                   f'text-anchor="end">rtol {rtol:g}</text>')
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(logs))
    out.append(f'<polyline points="{points}" fill="none" stroke="{NEUTRAL}"/>')
    for i, (e, v) in enumerate(zip(compared, logs, strict=True)):
        is_first = e["layer"] == first
        color = FIRST if is_first else (GOOD if e["holds"] else BAD)
        mark = ' class="first-divergence"' if is_first else ""
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{7 if is_first else 3.5}" '
                   f'fill="{color}"{mark}>'
                   f'<title>{_e(e["layer"])}: {_rel(e["max_rel_error"])}</title></circle>')
        if is_first:
            out.append(f'<text x="{x(i):.1f}" y="{y(v) - 12:.1f}" font-size="12" fill="{FIRST}" '
                       f'text-anchor="middle">{_e(e["layer"])}</text>')
    out.append("</svg>")
    return "".join(out)


def layer_graph(
    names: Sequence[str],
    edges: Sequence[Sequence[str]],
    compared: Sequence[Mapping[str, Any]],
    first: str | None,
) -> str:
    """The layer graph, left to right by depth (deep graphs wrap into rows): green agrees,
    orange differs, red the first layer that parts, grey not compared.

    Args:
        names: every layer, in topological order.
        edges: ``[source, dest]`` pairs.
        compared: the report's ``layers.compared`` entries.
        first: the first layer that parts, or None.

    Returns:
        ``<svg id="layer-graph">``.
    """
    successors: dict[str, list[str]] = {}
    for s, d in edges:
        successors.setdefault(s, []).append(d)
    depth = {n: 0 for n in names}
    for n in names:  # topological order: every source's depth is final before its dests'
        for d in successors.get(n, []):
            if d in depth:
                depth[d] = max(depth[d], depth[n] + 1)
    labelled = len(names) <= _LABELLED
    dy = 48 if labelled else 26  # room for the names
    lanes: dict[int, int] = {}
    for n in names:
        lanes[depth[n]] = lanes.get(depth[n], 0) + 1
    band = 16 + dy * max(lanes.values(), default=1)  # one row of depths, wrapped like text
    pos: dict[str, tuple[float, float]] = {}
    used: dict[int, int] = {}
    for n in names:
        row, col = divmod(depth[n], _GRAPH_ROW)
        lane = used.get(depth[n], 0)
        used[depth[n]] = lane + 1
        pos[n] = (30 + 26 * col, 24 + band * row + dy * lane)
    deepest = max(depth.values(), default=0)
    w = 60 + 26 * min(deepest, _GRAPH_ROW - 1)
    h = 8 + band * (deepest // _GRAPH_ROW + 1)
    colors = {e["layer"]: GOOD if e["holds"] else BAD for e in compared}
    out = [f'<svg id="layer-graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
           f'width="{min(100, w // 5)}%" role="img" '
           f'aria-label="layer graph">']
    for s, d in edges:
        if s in pos and d in pos:
            (x1, y1), (x2, y2) = pos[s], pos[d]
            out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#bdbdbd"/>')
    for n, (cx, cy) in pos.items():
        color = FIRST if n == first else colors.get(n, NEUTRAL)
        ring = f' stroke="{INK}" stroke-width="2"' if n == first else ""
        out.append(f'<circle cx="{cx}" cy="{cy}" r="{9 if n == first else 6}" fill="{color}"'
                   f'{ring}><title>{_e(n)}</title></circle>')
        if labelled:
            out.append(f'<text x="{cx}" y="{cy + 14}" font-size="7" transform="rotate(35 {cx} '
                       f'{cy + 14})">{_e(n)}</text>')
    out.append("</svg>")
    return "".join(out)


def _finite(v: Any) -> float:
    """None (JSON's non-finite) and NaN count as infinitely wrong: drawn at the top."""
    return 1e6 if v is None or not math.isfinite(float(v)) else float(v)


def _rel(v: float | None) -> str:
    return "not finite" if v is None else f"{v:.3g}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
