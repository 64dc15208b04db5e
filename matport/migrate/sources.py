"""Which files a migration converts, where their artifacts go, and which ONNX export checks each.

Sources are ``.mat`` files and folders (searched recursively, sorted). Each file's *relative
path*, which its artifacts mirror, is taken from the deepest folder holding every source (a
folder source counts as itself, a file as its folder): one folder ``models/`` gives
``lab/fold1.mat``; ``models/`` and ``more/fold3.mat`` give ``models/lab/fold1.mat`` and
``more/fold3.mat``, so two ``net.mat`` in different folders never share an artifact folder.

MATLAB's ONNX export of a file is found by a pattern (``{stem}.onnx`` by default: beside the
``.mat`` under the same stem; ``onnx/{stem}_export.onnx`` ...), or named by a mapping file (JSON
``{"a.mat": "a.onnx", ...}`` or CSV rows ``a.mat,a.onnx``, paths relative to the mapping file),
whose entries come first.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from matport.errors import ArgumentError, MigrationError

DEFAULT_ONNX_PATTERN = "{stem}.onnx"


def find_sources(sources: Sequence[str | os.PathLike[str]],
                 out: Path) -> list[tuple[Path, str]]:
    """Every ``.mat`` file under ``sources``, with its relative path (see the module docstring).

    Args:
        sources: files (taken whatever their extension) and folders (searched for ``.mat``).
        out: the output folder, never searched.

    Returns:
        ``(file, relative path)`` in order: sources as given, each folder's files sorted by
        relative path, duplicates left out.

    Raises:
        MigrationError: a source does not exist.
    """
    roots = [Path(src).absolute() for src in sources]
    for src, root in zip(sources, roots, strict=True):
        if not (root.is_file() or root.is_dir()):
            raise MigrationError(f"{src}: no such file or folder")
    if not roots:
        return []
    base = Path(os.path.commonpath([r if r.is_dir() else r.parent for r in roots]))
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for root in roots:
        items = [root] if root.is_file() else sorted(_walk(root, out))
        for path in items:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, path.relative_to(base).as_posix()))
    return found


def _walk(root: Path, out: Path) -> Iterable[Path]:
    skip = out.resolve()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if (here / d).resolve() != skip]
        for name in files:
            path = here / name
            if path.suffix.lower() == ".mat" and path.is_file():
                yield path


class OnnxPairing:
    """Finds the ONNX export that checks a ``.mat`` file.

    Args:
        pattern: the export's path relative to the ``.mat``'s folder, with ``{stem}`` for the
            ``.mat``'s name without extension.
        mapping: a JSON or CSV file naming the export of some files (see the module docstring).

    Raises:
        ArgumentError: the pattern has other fields than ``{stem}``.
        MigrationError: the mapping file cannot be read or names a missing export.
    """

    def __init__(self, pattern: str = DEFAULT_ONNX_PATTERN,
                 mapping: str | os.PathLike[str] | None = None) -> None:
        try:
            pattern.format(stem="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ArgumentError(f"ONNX pattern {pattern!r}: only {{stem}} may be a field "
                                f"({type(exc).__name__}: {exc})") from None
        self.pattern = pattern
        self.mapping = _read_mapping(Path(mapping)) if mapping is not None else {}

    def onnx_for(self, source: Path) -> Path | None:
        """The export of ``source`` (the mapping's, else the pattern's when that file exists).

        Args:
            source: a ``.mat`` file.

        Returns:
            The ``.onnx`` file, or None.
        """
        named = self.mapping.get(source.resolve())
        if named is not None:
            return named
        onnx = source.parent / self.pattern.format(stem=source.stem)
        return onnx if onnx.is_file() else None

    def unused(self, sources: Iterable[Path]) -> list[Path]:
        """The mapping's ``.mat`` files that are not among ``sources``.

        Args:
            sources: the files being migrated.

        Returns:
            Their paths (the user may have mistyped them).
        """
        given = {s.resolve() for s in sources}
        return [m for m in self.mapping if m not in given]


def _read_mapping(path: Path) -> dict[Path, Path]:
    """``{.mat: .onnx}`` (resolved) from a JSON object or two-column CSV file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError(f"{path}: cannot read the ONNX mapping ({exc})") from None
    pairs: list[tuple[str, str]]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MigrationError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise MigrationError(f"{path}: expected a JSON object of .mat path -> .onnx path")
        pairs = list(data.items())
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0]] == ["mat", "onnx"]:
            rows = rows[1:]
        bad = [i for i, r in enumerate(rows, 1) if len(r) != 2]
        if bad:
            raise MigrationError(f"{path}: expected CSV rows 'file.mat,file.onnx' (row {bad[0]} "
                                 "has another number of columns)")
        pairs = [(r[0].strip(), r[1].strip()) for r in rows]
    mapping: dict[Path, Path] = {}
    for mat, onnx in pairs:
        onnx_path = (path.parent / onnx).absolute()
        if not onnx_path.is_file():
            raise MigrationError(f"{path}: the ONNX export {onnx} of {mat} does not exist")
        mapping[(path.parent / mat).resolve()] = onnx_path
    return mapping
