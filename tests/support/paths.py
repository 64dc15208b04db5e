"""Where the fixtures and the real-file corpus live (tests skip corpus files that are absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
FIXTURES = ROOT / "fixtures"


def corpus_file(relative: str) -> Path:
    """A corpus file, or skip the test when the corpus is not beside the project."""
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"corpus file {relative} is not available")
    return path


def corpus_manifest() -> list[dict[str, str]]:
    """MANIFEST.tsv rows ([] when the corpus is absent)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))
