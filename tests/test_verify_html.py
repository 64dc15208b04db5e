"""matport verify --html (a static page, checked in a real headless Chromium) and output files
that cannot be written (exit 2, one line on stderr, valid JSON with --json)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest

from matport.network.encode import write_network
from matport.synth import onnx_export as matlab_onnx_export
from matport.verify import REPORT_SCHEMA, VerifyReport
from matport.verify.html import render_page
from tests.support.paths import ROOT
from tests.test_verify import cli, small_network, with_changed_weight


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """small.mat, MATLAB-style small.onnx and a copy of it with one conv weight changed."""
    folder = tmp_path_factory.mktemp("html")
    net = small_network()
    write_network(folder / "small.mat", net)
    good = matlab_onnx_export.export(net, folder / "small.onnx")
    bad = folder / "changed.onnx"
    onnx.save(with_changed_weight(onnx.load(str(good)), "conv_b_W", (0, 0, 0, 0), 0.5), bad)
    return folder / "small.mat", good, bad


def chromium() -> str:
    """Debian's chromium (/usr/bin/chromium); the test fails without it when CI is set."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: CI installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def headless(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}", "--window-size=1200,900"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_html_report_renders_in_headless_chromium(pair, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    browser = chromium()
    mat, _, bad = pair
    page = tmp_path / "report.html"
    assert cli(str(mat), str(bad), "--num-random", "2", "--json", "--html", str(page)) == 1
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, REPORT_SCHEMA)
    first = data["divergence"]["layer"]
    assert first == "conv_b" and data["layers"]["compared"]
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text and "<script" not in text
    shot = tmp_path / "shot.png"
    run = headless(browser, tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 0, run.stderr
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1200) and pixels.std() > 5  # not a blank page
    dom = headless(browser, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert 'id="error-plot"' in dom and 'id="layer-graph"' in dom
    # the highlighted point is the first layer that parts, and every compared layer is plotted
    svg = ET.fromstring(dom[dom.index('<svg id="error-plot"'):dom.index("</svg>") + 6])
    ns = "{http://www.w3.org/2000/svg}"
    circles = svg.findall(f"{ns}circle")
    assert len(circles) == len(data["layers"]["compared"])
    [marked] = [c for c in circles if c.get("class") == "first-divergence"]
    assert marked.findtext(f"{ns}title", "").startswith(f"{first}:")


def test_html_without_per_layer_errors_says_so() -> None:
    report = {"status": "verified", "mat": "a&b.mat", "onnx_path": "x.onnx", "layers": None,
              "tolerance": {"rtol": 1e-4}}
    page = render_page(report)
    assert "a&amp;b.mat" in page and "not computed" in page and "error-plot" not in page
    page = render_page(VerifyReport.error("x.onnx: cannot read <it>", "x.onnx").to_dict())
    assert "could not run" in page and "cannot read &lt;it&gt;" in page


# --- output files that cannot be written ------------------------------------------------------


@pytest.mark.parametrize("option", ["--html", "--export-onnx"])
def test_unwritable_outputs_exit_2_with_json(pair, tmp_path: Path, option: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    mat, good, _ = pair
    onnx_args = [str(good)] if option == "--html" else []
    for target, why in [(tmp_path / "missing" / "out.x", "no such directory"),
                        (tmp_path, "is a directory")]:
        assert cli(str(mat), *onnx_args, option, str(target), "--json") == 2
        captured = capsys.readouterr()
        data = json.loads(captured.out)
        jsonschema.validate(data, REPORT_SCHEMA)
        assert data["status"] == "error" and why in data["reason"]
        assert cli(str(mat), *onnx_args, option, str(target)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err
    assert not (tmp_path / "missing").exists()


def test_read_only_folder(pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mat, good, _ = pair
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        assert cli(str(mat), str(good), "--html", str(folder / "r.html"), "--json") == 2
        assert "permission denied" in json.loads(capsys.readouterr().out)["reason"]
    finally:
        folder.chmod(0o755)


def test_a_full_disk_while_writing_the_page(pair, tmp_path: Path, monkeypatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    mat, good, _ = pair

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    assert cli(str(mat), str(good), "--html", str(tmp_path / "r.html"), "--json") == 2
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, REPORT_SCHEMA)
    assert data["reason"] == f"cannot write {tmp_path / 'r.html'}: {os.strerror(errno.ENOSPC)}"


def test_the_command_prints_one_line_never_a_traceback(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "matport", "verify", "net.mat", "net.onnx", "--html",
         str(tmp_path / "no" / "such" / "r.html")],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("matport verify: error: cannot write ")



def test_migrate_html_report_shows_the_verification(pair, tmp_path: Path) -> None:
    """The migration's HTML page carries each checked network's verification: for one whose
    outputs differ, the layer graph and the per-layer error plot (in a real headless Chromium)."""
    from matport.migrate import migrate
    from matport.migrate.html import REPORT_HTML

    browser = chromium()
    mat, _, bad = pair
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(mat, src / "small.mat")
    shutil.copy(bad, src / "small.onnx")  # an export whose conv_b weight was changed
    report = migrate(src, tmp_path / "out", progress=False)
    assert [f.outcome for f in report.files] == ["failed"]
    page = tmp_path / "out" / REPORT_HTML
    dom = headless(browser, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert "matport migration report" in dom
    assert 'id="error-plot"' in dom and 'id="layer-graph"' in dom
    assert 'class="first-divergence"' in dom
