"""Bad input: a short, seeded slice of the fuzz harness (``scripts/fuzz.py``): structure-aware
mutants of real and generated files through every target give only matport errors, each within
2 s and without memory beyond what the file declares. RELIABILITY.md reports the long runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import CORPUS

ROOT = Path(__file__).resolve().parents[1]
CASES = 80


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness uses /proc")
def test_a_seeded_slice_of_the_fuzz_harness_finds_no_defect(tmp_path: Path) -> None:
    results = tmp_path / "fuzz.jsonl"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--cases", str(CASES), "--seed", "3",
         "--jobs", "2", "--corpus", str(CORPUS), "--json", str(results)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    cases = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(cases) == CASES, done.stdout + done.stderr
    defects = [c for c in cases if c["outcome"] not in ("ok", "matport")]
    assert not defects, json.dumps(defects[:5], indent=1)
    assert done.returncode == 0, done.stderr
    # the slice reaches every target and mutator, and not every mutant is refused
    assert {c["target"] for c in cases} == {"read", "read_network", "load", "load_resnet50", "cli"}
    assert {c["mutator"] for c in cases} >= {"v5_tree", "mcos_metadata", "v73_structure"}
    assert any(c["outcome"] == "ok" for c in cases)


def test_a_case_reproduces_from_its_seed_and_index(tmp_path: Path) -> None:
    outputs = []
    for name in ("a.mat", "b.mat"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--seed", "3", "--case", "17",
             "--corpus", str(CORPUS), "--keep", str(tmp_path / name)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
