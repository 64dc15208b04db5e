"""``migration-report.html``: the report as one static page that opens offline (no scripts, no
network): totals, then one row per network (a file without a network gets a row of its own)
with outcome, family, verification status and links to the artifact files."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from matport.verify.html import report_section

if TYPE_CHECKING:
    from matport.migrate.report import FileResult, MigrationReport, NetworkResult

REPORT_HTML = "migration-report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.reason { max-width: 40em; overflow-wrap: anywhere; font-size: 90%; }
.verified { background: #d9f2d9; } .converted { background: #e8f0fe; }
.skipped { background: #f4f4f4; } .failed { background: #fbdada; }
"""


def report_html(report: MigrationReport) -> str:
    """The HTML page of ``report``.

    Args:
        report: a migration's report.

    Returns:
        The page, self-contained.
    """
    counts = ", ".join(f"{v} {k}" for k, v in report.counts().items())
    rows = "\n".join(_rows(f, Path(report.out)) for f in report.files)
    title = "matport migration report"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_STYLE}</style></head><body>
<h1>{title}</h1>
<p>Sources: {_e(", ".join(report.sources))}<br>Output: {_e(report.out)} ({_e(report.format)},
family {_e(report.family)}, {report.jobs} job(s))<br>{len(report.files)} files in
{report.seconds:.1f} s: {counts}</p>
<table>
<thead><tr><th>file</th><th>outcome</th><th>network</th><th>family</th><th>verification</th>
<th>artifact</th><th>reason</th><th>details</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def _rows(f: FileResult, out: Path) -> str:
    if not f.networks:
        return (f'<tr class="{f.outcome}"><td>{_e(f.relative)}</td><td>{f.outcome}</td>'
                f'<td></td><td></td><td></td><td></td><td class="reason">{_e(f.reason)}</td>'
                "<td></td></tr>")
    rows = []
    for n in f.networks:
        v = n.verification or {}  # none: the network failed before its check
        check = {"none": "no ONNX export", "error": "could not verify"}.get(
            v.get("status", ""), v.get("status", ""))
        link = f'<a href="{_e(n.metadata)}">{_e(n.weights)}</a>' if n.metadata else ""
        reason = n.reason or v.get("reason")
        rows.append(f'<tr class="{n.outcome}"><td>{_e(f.relative)}</td><td>{n.outcome}</td>'
                    f"<td>{_e(n.variable)} ({_e(n.class_name)})</td><td>{_e(n.family)}</td>"
                    f"<td>{_e(check)}</td><td>{link}</td>"
                    f'<td class="reason">{_e(reason)}</td><td>{network_details(n, out)}</td></tr>')
    return "\n".join(rows)


def network_details(network: NetworkResult, out: Path) -> str:
    """The details cell of a network's row: its verification (summary, layer graph and
    per-layer error plot, from :func:`matport.verify.html.report_section`), folded.

    Args:
        network: the network's result.
        out: the migration's output folder (the artifact metadata holds the verification).

    Returns:
        HTML for the cell; empty when the network was not checked against an ONNX export.
    """
    if not network.metadata or (network.verification or {}).get("status", "none") == "none":
        return ""
    try:
        meta = json.loads((out / network.metadata).read_text(encoding="utf-8"))
        report = meta["verification"]["report"]
    except (OSError, ValueError, KeyError, TypeError):
        return f'<a href="{_e(network.metadata)}">verification (in the metadata)</a>'
    if not isinstance(report, dict):
        return ""
    return f"<details><summary>verification</summary>{report_section(report)}</details>"


def _e(text: object) -> str:
    return "" if text is None else html.escape(str(text))
