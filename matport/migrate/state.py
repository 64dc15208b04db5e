"""``OUT/migration-state.json``: what each source's artifacts were made from, and the result.

Per source (by its path relative to the sources) the *fingerprint* its artifacts were made from
(content sha256, ONNX export sha256, weights format, family) and its :class:`FileResult`. It is
rewritten all or nothing after every file, so a run killed at any point leaves it valid; a re-run
skips a file whose fingerprint is unchanged and whose artifacts are intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matport.errors import MigrationError
from matport.files import write_atomic
from matport.migrate.artifact import FileTask
from matport.migrate.report import FileResult

STATE_FILE = "migration-state.json"
STATE_FORMAT = "matport.migration-state/2"
#: written by matport 0.1.0: the fingerprint's ``family`` was called ``mode``
STATE_FORMAT_0_1 = "matport.migration-state/1"


def fingerprint(result: FileResult, task: FileTask) -> dict[str, Any]:
    """What a file's artifacts were made from: a re-run redoes the file when any of it differs.

    Args:
        result: the file's result (its hashes).
        task: the file's task (format and family).

    Returns:
        A JSON-able dict.
    """
    return {"sha256": result.sha256, "onnx_sha256": result.onnx_sha256, "format": task.format,
            "family": task.family}


class MigrationState:
    """The state file of an output folder, read when the run starts.

    Args:
        out: the output folder.

    Raises:
        MigrationError: the file exists but is not a migration state matport can read.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.files: dict[str, dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise self._corrupt(exc) from None
        try:
            data = json.loads(text)
            fmt = data["format"]
            files = {str(k): _entry(v, legacy=fmt == STATE_FORMAT_0_1)
                     for k, v in data["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._corrupt(exc) from None
        if fmt not in (STATE_FORMAT, STATE_FORMAT_0_1):
            raise MigrationError(f"{self.path}: unknown state format {fmt!r} (written by a newer "
                                 "matport?); move it away to redo every file")
        self.files = files

    def _corrupt(self, exc: Exception) -> MigrationError:
        why = type(exc).__name__ if isinstance(exc, KeyError | TypeError) else str(exc)
        return MigrationError(f"{self.path}: not a readable migration state ({why}); move it away "
                              "to redo every file")

    def done(self, task: FileTask, fprint: dict[str, Any]) -> FileResult | None:
        """The earlier result of ``task`` when it stands.

        Args:
            task: the file.
            fprint: its fingerprint now (:func:`fingerprint`).

        Returns:
            The recorded result when the fingerprint is unchanged, the file did not fail and its
            artifacts are intact; None otherwise.
        """
        entry = self.files.get(task.relative)
        if not entry or entry["fingerprint"] != fprint:
            return None
        result = FileResult.from_dict(entry["result"])
        out = Path(task.out)
        intact = all((out / p).is_file() and (out / p).stat().st_size == s
                     for p, s in result.artifacts)
        return result if result.outcome != "failed" and intact else None

    def record(self, result: FileResult, fprint: dict[str, Any]) -> list[str]:
        """Store ``result`` and rewrite the state file (all or nothing).

        Args:
            result: a file's new result.
            fprint: the fingerprint its artifacts were made from.

        Returns:
            The artifacts (paths relative to the output folder) of the previous result that the
            new one no longer has.
        """
        old = self.files.get(result.relative)
        self.files[result.relative] = {"fingerprint": fprint, "result": result.to_dict()}
        data = {"format": STATE_FORMAT, "files": self.files}
        try:
            write_atomic(self.path, json.dumps(data, indent=1).encode())
        except BaseException:
            if old is None:
                del self.files[result.relative]
            else:
                self.files[result.relative] = old
            raise
        if old is None:
            return []
        kept = {p for p, _ in result.artifacts}
        return [p for p, _ in FileResult.from_dict(old["result"]).artifacts if p not in kept]


def _entry(entry: dict[str, Any], legacy: bool) -> dict[str, Any]:
    """A state entry checked for its keys (``mode`` read as ``family`` in a legacy one)."""
    fp = dict(entry["fingerprint"])
    if legacy:
        fp["family"] = fp.pop("mode")
    FileResult.from_dict(entry["result"])  # raises on a malformed result
    return {"fingerprint": fp, "result": entry["result"]}
