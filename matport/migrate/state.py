"""``OUT/migration-state.jsonl``: what each source's artifacts were made from, and the result.

Per source (by its path relative to the sources) the *fingerprint* its artifacts were made from
(content sha256, ONNX export sha256, weights format, family) and its :class:`FileResult`. The
state is an append-only journal: a header line, then one JSON line per finished file (a later
line for the same file replaces an earlier one), each appended with one ``write`` as the file
finishes, so recording costs the same at 10,000 files as at 10. A run killed at any point
leaves at most an unterminated last line, which the next run ignores and cuts off before it
appends; a journal with more replaced lines than live ones is then compacted (rewritten all or
nothing) instead. Lines are not fsynced: after a power cut the journal may lack the last files,
which the next run redoes. A re-run skips a file whose fingerprint is unchanged and whose
artifacts are intact.

The whole-file state of earlier versions (``migration-state.json``, formats ``/1`` of matport
0.1.0 and ``/2``) is still read, and never written: the journal's lines take precedence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from matport.errors import MigrationError
from matport.files import write_atomic
from matport.migrate.artifact import FileTask
from matport.migrate.report import FileResult

STATE_FILE = "migration-state.jsonl"
STATE_FORMAT = "matport.migration-state/3"
#: the whole-file state, rewritten after every file (formats /1 and /2); read, not written
LEGACY_STATE_FILE = "migration-state.json"
LEGACY_FORMAT = "matport.migration-state/2"
#: written by matport 0.1.0: the fingerprint's ``family`` was called ``mode``
LEGACY_FORMAT_0_1 = "matport.migration-state/1"


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
    """The state of an output folder, read when the run starts; the first :meth:`record` cuts
    off an unterminated last line of the journal (left by a killed run), or compacts a journal
    of mostly replaced lines. Reading writes nothing.

    Args:
        out: the output folder.

    Raises:
        MigrationError: a state file exists but is not a migration state matport can read.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.files: dict[str, dict[str, Any]] = {}
        self._repair: int | None = None  # the journal's complete bytes, or -1: compact it
        legacy = out / LEGACY_STATE_FILE
        data = _read(legacy)
        if data is not None:
            self.files = _legacy_entries(legacy, _decode(legacy, data))
        data = _read(self.path)
        if data is None:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a killed run's unterminated line is ignored
        lines = _decode(self.path, complete).split("\n")[:-1]
        journal = _journal_entries(self.path, lines)
        self.files.update(journal)
        if len(lines) - 1 > 2 * len(journal):
            self._repair = -1
        elif len(complete) < len(data):
            self._repair = len(complete)

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
        """Store ``result``: one line appended to the journal (created when missing).

        Args:
            result: a file's new result.
            fprint: the fingerprint its artifacts were made from.

        Returns:
            The artifacts (paths relative to the output folder) of the previous result that the
            new one no longer has.
        """
        if self._repair == -1:
            self._compact()
        elif self._repair is not None:
            os.truncate(self.path, self._repair)
        self._repair = None
        entry = {"fingerprint": fprint, "result": result.to_dict()}
        _append(self.path, _line(result.relative, entry))
        old = self.files.get(result.relative)
        self.files[result.relative] = entry
        if old is None:
            return []
        kept = {p for p, _ in result.artifacts}
        return [p for p, _ in FileResult.from_dict(old["result"]).artifacts if p not in kept]

    def _compact(self) -> None:
        """Rewrite the journal (all or nothing) with one line per file."""
        lines = [_line(rel, entry) for rel, entry in self.files.items()]
        write_atomic(self.path, _header() + b"".join(lines))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _corrupt(path, exc) from None


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _corrupt(path, exc) from None


def _header() -> bytes:
    return json.dumps({"format": STATE_FORMAT}).encode() + b"\n"


def _line(relative: str, entry: dict[str, Any]) -> bytes:
    return json.dumps({"file": relative, **entry}, separators=(",", ":")).encode() + b"\n"


def _append(path: Path, line: bytes) -> None:
    """Append ``line`` with one ``write`` (the header first when the journal is new or empty):
    a process killed meanwhile leaves at most an unterminated line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = memoryview((_header() if os.fstat(fd).st_size == 0 else b"") + line)
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def _journal_entries(path: Path, lines: list[str]) -> dict[str, dict[str, Any]]:
    """The files of the journal's complete ``lines``, the last line of each file winning."""
    if not lines:
        return {}
    try:
        fmt = json.loads(lines[0])["format"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(path, exc) from None
    if fmt != STATE_FORMAT:
        raise _newer(path, fmt)
    files = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            data = json.loads(line)
            files[str(data["file"])] = _entry(data, legacy=False)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _corrupt(path, exc, f"line {number}") from None
    return files


def _legacy_entries(path: Path, text: str) -> dict[str, dict[str, Any]]:
    """The files of a whole-file state (formats /1 and /2)."""
    try:
        data = json.loads(text)
        fmt = data["format"]
        files = {str(k): _entry(v, legacy=fmt == LEGACY_FORMAT_0_1)
                 for k, v in data["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _corrupt(path, exc) from None
    if fmt not in (LEGACY_FORMAT, LEGACY_FORMAT_0_1):
        raise _newer(path, fmt)
    return files


def _entry(entry: dict[str, Any], legacy: bool) -> dict[str, Any]:
    """A state entry checked for its keys (``mode`` read as ``family`` in a legacy one)."""
    fp = dict(entry["fingerprint"])
    if legacy:
        fp["family"] = fp.pop("mode")
    FileResult.from_dict(entry["result"])  # raises on a malformed result
    return {"fingerprint": fp, "result": entry["result"]}


def _corrupt(path: Path, exc: Exception, where: str = "") -> MigrationError:
    why = type(exc).__name__ if isinstance(exc, KeyError | TypeError) else str(exc)
    at = f", {where}" if where else ""
    return MigrationError(f"{path}: not a readable migration state ({why}{at}); move it away "
                          "to redo every file")


def _newer(path: Path, fmt: Any) -> MigrationError:
    return MigrationError(f"{path}: unknown state format {fmt!r} (written by a newer matport?); "
                          "move it away to redo every file")
