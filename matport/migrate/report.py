"""What a :func:`matport.migrate` run did: per file and per network, as JSON and Markdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

REPORT_JSON = "migration-report.json"
REPORT_MARKDOWN = "migration-report.md"
REPORT_FORMAT = "matport.migration-report/1"
OUTCOMES = ("converted", "verified", "skipped", "failed")
#: the longest text in a cell of the Markdown report
CELL = 100


@dataclass
class NetworkResult:
    """One network of a file: its artifact (paths relative to ``out``) and what happened."""

    variable: str
    class_name: str
    outcome: str = "failed"  # converted | verified | failed
    reason: str | None = None
    family: str | None = None  # resnet50 | graph
    weights: str | None = None
    metadata: str | None = None
    weights_size: int = 0
    metadata_size: int = 0
    config: str | None = None  # a safetensors checkpoint's config
    config_size: int = 0
    parameters: int | None = None
    verification: dict[str, Any] | None = None  # status verified | failed | error, reason, onnx


@dataclass
class FileResult:
    """One source file: outcome ``converted`` / ``verified`` / ``skipped`` / ``failed``."""

    source: str
    relative: str
    sha256: str | None = None
    onnx_sha256: str | None = None  # of MATLAB's export beside it, when there is one
    size: int = 0
    outcome: str = "failed"
    reason: str | None = None
    seconds: float = 0.0
    networks: list[NetworkResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Returns:
            The result as JSON-able values (read back by :meth:`from_dict`).
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileResult:
        """The inverse of :meth:`to_dict`, ignoring keys it does not know.

        Args:
            d: a dict :meth:`to_dict` made (by this or an earlier matport).

        Returns:
            The result.
        """
        names = {f.name for f in fields(NetworkResult)}
        nets = [NetworkResult(**{k: v for k, v in n.items() if k in names})
                for n in d.get("networks", [])]
        own = {f.name for f in fields(cls)} - {"networks"}
        return cls(**{k: v for k, v in d.items() if k in own}, networks=nets)

    @property
    def artifacts(self) -> list[tuple[str, int]]:
        """``(path relative to out, size)`` of every file this result wrote."""
        out = []
        for n in self.networks:
            if n.weights and n.metadata:
                out += [(n.weights, n.weights_size), (n.metadata, n.metadata_size)]
            if n.config:
                out.append((n.config, n.config_size))
        return out


@dataclass
class MigrationReport:
    """What a :func:`migrate` run did, file by file (``files`` in discovery order)."""

    out: str
    sources: list[str]
    format: str
    family: str
    jobs: int
    seconds: float
    files: list[FileResult]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.outcome == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        """Returns:
            The number of files per outcome.
        """
        return {k: sum(f.outcome == k for f in self.files) for k in OUTCOMES}

    def to_dict(self) -> dict[str, Any]:
        """Returns:
            The report as written to ``migration-report.json``.
        """
        import matport

        return {
            "format": REPORT_FORMAT, "matport_version": matport.__version__, "out": self.out,
            "sources": self.sources, "artifact_format": self.format, "family": self.family,
            "jobs": self.jobs, "seconds": round(self.seconds, 3), "counts": self.counts(),
            "files": [f.to_dict() for f in self.files],
        }

    def summary(self) -> str:
        """Returns:
            A few lines for people: counts, failures by name, where the reports are.
        """
        c = self.counts()
        nets = sum(len(f.networks) for f in self.files)
        lines = [f"matport migrate: {len(self.files)} files, {nets} networks: {c['converted']} "
                 f"converted, {c['verified']} verified, {c['skipped']} skipped, {c['failed']} "
                 f"failed ({self.seconds:.1f} s)"]
        if self.failed:
            lines.append("failed:")
            lines += [f"  {f.relative}: {one_line(f.reason)}" for f in self.failed]
        lines.append(f"report: {Path(self.out) / REPORT_MARKDOWN} "
                     f"(JSON: {Path(self.out) / REPORT_JSON})")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """Returns:
            The report for people: totals, failures, one row per file and per network, each
            cell at most :data:`CELL` characters (the full texts are in the JSON report).
        """
        c = self.counts()
        lines = [
            "# matport migration report", "",
            f"- sources: {', '.join(f'`{s}`' for s in self.sources)}",
            f"- output: `{self.out}` ({self.format}, family {self.family}, "
            f"{self.jobs} job{'s' if self.jobs > 1 else ''})",
            f"- {len(self.files)} files in {self.seconds:.1f} s: " + ", ".join(
                f"{v} {k}" for k, v in c.items()),
            f"- full reasons and verification reports: `{REPORT_JSON}`", "",
        ]
        if self.failed:
            lines += ["## Failures", ""]
            lines += [f"- `{f.relative}`: {_cell(f.reason)}" for f in self.failed] + [""]
        lines += ["## Files", "", "| file | outcome | networks | seconds | source | artifacts "
                  "| note |", "|---|---|---|---|---|---|---|"]
        for f in self.files:
            size = sum(s for _, s in f.artifacts)
            lines.append(f"| `{f.relative}` | {f.outcome} | {len(f.networks)} | {f.seconds:.2f} "
                         f"| {_size(f.size)} | {_size(size)} | {_cell(f.reason)} |")
        lines += ["", "## Networks", "", "| file | variable | class | outcome | family | weights "
                  "| size | verification |", "|---|---|---|---|---|---|---|---|"]
        for f in self.files:
            for n in f.networks:
                v = n.verification or {}
                check = _VERIFY_WORDS.get(v.get("status", ""), "no ONNX export")
                if v.get("reason"):
                    check += f": {v['reason']}"
                lines.append(
                    f"| `{f.relative}` | `{n.variable}` | {n.class_name} | {n.outcome} | "
                    f"{n.family or ''} | {f'`{n.weights}`' if n.weights else _cell(n.reason)} | "
                    f"{_size(n.weights_size)} | {_cell(check)} |")
        return "\n".join(lines) + "\n"


_VERIFY_WORDS = {"verified": "verified", "failed": "failed", "error": "could not verify"}


def one_line(text: str | None) -> str:
    """``text`` with its line breaks and runs of spaces made single spaces.

    Args:
        text: any text (None: empty).

    Returns:
        The text on one line.
    """
    return " ".join((text or "").split())


def _cell(text: str | None) -> str:
    """``text`` on one line, cut to :data:`CELL` characters, safe in a table cell."""
    line = one_line(text)
    if len(line) > CELL:
        line = line[:CELL - 1].rstrip() + "…"
    return line.replace("|", "\\|")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
