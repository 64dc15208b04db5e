"""matport migrate: where outputs go (mirroring the source tree, no collisions), how ONNX exports
are paired (pattern, mapping file), what the artifact .json and the reports hold (small JSON,
short Markdown cells, a static HTML page), and that each source is hashed once."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from matport.cli import main
from matport.convert.api import load
from matport.errors import ArgumentError, MigrationError
from matport.migrate import artifact
from matport.migrate.artifact import NUM_RANDOM, FileTask, load_artifact, migrate_file
from matport.migrate.html import REPORT_HTML
from matport.migrate.report import CELL, REPORT_JSON, REPORT_MARKDOWN
from matport.migrate.runner import migrate
from matport.network.encode import write_network
from matport.network.model import Layer, Network, Normalization
from matport.synth import onnx_export
from matport.synth.networks import RNG, chain, conv, fc, feature_input, image_input, simple

torch.set_num_threads(1)


def cnn(size: int = 8, classes: int = 3) -> Network:
    mean = (100 + 50 * RNG.random((size, size, 3))).astype(np.float32)
    return chain(
        image_input("in", (size, size, 3), Normalization("zerocenter", mean=mean)),
        conv("conv", (3, 3), 3, 4, PaddingSize=(1, 1, 1, 1)), simple("ReLULayer", "relu"),
        fc("fc", (size, size, 4), classes), simple("SoftmaxLayer", "sm"),
        simple("ClassificationOutputLayer", "out"), class_names=[f"c{i}" for i in range(classes)])


def same_outputs(artifact_path: Path, source: Path) -> None:
    migrated, direct = load_artifact(artifact_path), load(source)
    h, w, c = direct.matport.input_size
    raw = torch.from_numpy(RNG.uniform(0, 255, (2, c, h, w)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_array_equal(migrated(migrated.matport.preprocess(raw)).numpy(),
                                      direct(direct.matport.preprocess(raw)).numpy())


def test_sources_in_different_folders_never_collide(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for lab in ("lab1", "lab2"):
        (src / lab).mkdir(parents=True)
        write_network(src / lab / "net.mat", cnn(classes=2 if lab == "lab1" else 3))
    out = tmp_path / "out"
    report = migrate([src / "lab1", src / "lab2" / "net.mat"], out, progress=False)
    assert report.ok
    assert [f.relative for f in report.files] == ["lab1/net.mat", "lab2/net.mat"]
    for lab in ("lab1", "lab2"):
        same_outputs(out / lab / "net" / "net.json", src / lab / "net.mat")
    one = migrate(src, tmp_path / "one", progress=False)  # one folder: paths relative to it
    assert [f.relative for f in one.files] == ["lab1/net.mat", "lab2/net.mat"]
    single = migrate(src / "lab2" / "net.mat", tmp_path / "single", progress=False)
    assert [f.networks[0].weights for f in single.files] == ["net/net.pt"]


def test_onnx_exports_paired_by_pattern_or_mapping(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    (src / "exports").mkdir(parents=True)
    nets = {name: cnn() for name in ("a", "b", "c")}
    for name, net in nets.items():
        write_network(src / f"{name}.mat", net)
    onnx_export.export(nets["a"], src / "exports" / "a_export.onnx")
    onnx_export.export(nets["b"], src / "exports" / "model-b.onnx")
    onnx_export.export(nets["a"], src / "exports" / "c_export.onnx")  # another network's
    (tmp_path / "map.json").write_text(json.dumps({"src/b.mat": "src/exports/model-b.onnx"}))
    (tmp_path / "map.csv").write_text("mat,onnx\nsrc/b.mat,src/exports/model-b.onnx\n")

    def outcomes(report) -> dict[str, str]:
        return {f.relative: f.networks[0].verification["status"] for f in report.files}

    pattern = "exports/{stem}_export.onnx"
    by_pattern = migrate(src, tmp_path / "p", onnx_pattern=pattern, progress=False)
    assert outcomes(by_pattern) == {"a.mat": "verified", "b.mat": "none", "c.mat": "failed"}
    for mapping in ("map.json", "map.csv"):
        both = migrate(src, tmp_path / f"out-{mapping}", onnx_pattern=pattern,
                       onnx_map=tmp_path / mapping, progress=False)
        assert outcomes(both) == {"a.mat": "verified", "b.mat": "verified", "c.mat": "failed"}
    assert main(["migrate", str(src / "a.mat"), "-o", str(tmp_path / "cli"),
                 "--onnx-pattern", pattern, "--json"]) == 0
    report = json.loads((tmp_path / "cli" / REPORT_JSON).read_text())
    assert report["files"][0]["outcome"] == "verified" and report["family"] == "auto"
    printed = json.loads(capsys.readouterr().out)
    assert (printed["files"], printed["counts"]) == (report["files"], report["counts"])
    checked = json.loads((tmp_path / "cli" / "a" / "net.json").read_text())["verification"]
    assert checked["report"]["inputs"]["random"] == NUM_RANDOM == 2
    assert main(["migrate", str(src / "a.mat"), "-o", str(tmp_path / "cli5"), "--onnx-pattern",
                 pattern, "--num-random", "5"]) == 0
    checked = json.loads((tmp_path / "cli5" / "a" / "net.json").read_text())["verification"]
    assert (checked["status"], checked["report"]["inputs"]["random"]) == ("verified", 5)
    capsys.readouterr()
    with pytest.raises(ArgumentError, match="num_random must be at least 1"):
        migrate(src, tmp_path / "x", num_random=0)

    with pytest.raises(ArgumentError, match="only {stem}"):
        migrate(src, tmp_path / "x", onnx_pattern="{name}.onnx")
    (tmp_path / "bad.json").write_text(json.dumps({"src/a.mat": "missing.onnx"}))
    with pytest.raises(MigrationError, match="missing.onnx of src/a.mat does not exist"):
        migrate(src, tmp_path / "x", onnx_map=tmp_path / "bad.json")
    (tmp_path / "bad.csv").write_text("src/a.mat\n")
    with pytest.raises(MigrationError, match="row 1"):
        migrate(src, tmp_path / "x", onnx_map=tmp_path / "bad.csv")
    assert not (tmp_path / "x").exists()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs if k in ("href", "src")]
        if tag == "tr":
            self.rows.append([])
        if tag == "td":
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def test_small_artifact_json_short_markdown_and_static_html(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = cnn(size=64)  # a 64x64x3 mean image: 12,288 numbers
    write_network(src / "big.mat", big)
    onnx_export.export(big, src / "big.onnx")
    customs = [Layer(f"custom_layer_number_{i}", f"myproject.layers.Custom{i}", supported=False)
               for i in range(30)]
    write_network(src / "custom.mat", chain(feature_input("in", 3), *customs))
    out = tmp_path / "out"
    report = migrate(src, out, progress=False)

    meta = out / "big" / "net.json"
    assert meta.stat().st_size < 12_288  # less than a byte per mean-image value
    assert json.loads(meta.read_text())["normalization"]["arrays"] == {"mean": [64, 64, 3]}
    same_outputs(meta, src / "big.mat")

    reason = report.files[1].reason
    assert report.files[1].outcome == "failed" and len(reason) > 1000
    assert json.loads((out / REPORT_JSON).read_text())["files"][1]["reason"] == reason
    markdown = (out / REPORT_MARKDOWN).read_text()
    assert max(len(line) for line in markdown.splitlines()) < 4 * CELL
    assert "… |" in markdown and "custom_layer_number_29" not in markdown  # cut, marked

    page = _Page()
    page.feed((out / REPORT_HTML).read_text())
    assert "script" not in page.tags
    assert all(not u.startswith(("http:", "https:", "//")) for u in page.urls)
    cells = [r for r in page.rows if r]
    assert [(r[0], r[1], r[3], r[4]) for r in cells] == [
        ("big.mat", "verified", "graph", "verified"), ("custom.mat", "failed", "", "")]
    assert "big/net.json" in page.urls


def test_each_source_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker hashes the source once and reads its ONNX export once (hashed from the bytes
    it loads); hashes the migrating process took are not taken again; the weights are hashed
    as they are written, not read back."""
    net = cnn()
    write_network(tmp_path / "a.mat", net)
    onnx_export.export(net, tmp_path / "a.onnx")
    hashed: list[str] = []
    real = artifact.file_sha256
    mat_sha, onnx_sha = real(tmp_path / "a.mat"), real(tmp_path / "a.onnx")

    def counting(path) -> str:
        hashed.append(Path(path).name)
        return real(path)

    read_onnx: list[str] = []
    real_open = open

    def opening(file, *args, **kwargs):
        if str(file).endswith(".onnx"):
            read_onnx.append(Path(file).name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(artifact, "file_sha256", counting)
    monkeypatch.setattr("builtins.open", opening)
    task = FileTask(str(tmp_path / "a.mat"), "a.mat", str(tmp_path / "out"), 0,
                    str(tmp_path / "a.onnx"), "pt", "auto")
    result, healthy = migrate_file(task)
    assert healthy and result.outcome == "verified"
    assert (result.sha256, result.onnx_sha256) == (mat_sha, onnx_sha)
    assert hashed == ["a.mat"]  # the source once
    assert read_onnx == ["a.onnx"]
    hashed.clear(), read_onnx.clear()
    again = FileTask(task.source, "a.mat", str(tmp_path / "out2"), 0, task.onnx, "pt", "auto",
                     sha256=result.sha256, onnx_sha256=result.onnx_sha256,
                     signature=artifact.source_signature(task.source))
    result, _ = migrate_file(again)
    assert result.outcome == "verified" and hashed == [] and read_onnx == ["a.onnx"]
    meta = json.loads((tmp_path / "out2" / "a" / "net.json").read_text())
    assert meta["weights"]["sha256"] == real(tmp_path / "out2" / "a" / "net.pt")
