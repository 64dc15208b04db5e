"""matport migrate: a folder of mixed files gives the documented outcomes and report; artifacts
load back and compute what the sources compute (against the numpy reference too); a run killed
with SIGKILL is completed by the next one, loss-free; --jobs 2 gives the same artifacts as 1."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from matport.cli import COMMANDS
from matport.convert.api import load
from matport.errors import MigrationError
from matport.files import TMP_SUFFIX
from matport.mat.values import Struct
from matport.mat.writer import write
from matport.migrate.artifact import artifact_names, load_artifact
from matport.migrate.html import REPORT_HTML
from matport.migrate.report import REPORT_JSON, REPORT_MARKDOWN
from matport.migrate.runner import LOCK_FILE, migrate
from matport.migrate.state import STATE_FILE
from matport.network.encode import encode_network, write_network
from matport.network.model import Network, Normalization
from matport.synth import onnx_export as matlab_onnx_export
from matport.synth.networks import (
    RNG,
    batch_norm,
    chain,
    conv,
    fc,
    image_input,
    simple,
    to_matlab_layout,
    to_torch_layout,
)
from tests.support.reference_forward import network_outputs, reference_forward

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def cnn(size: int = 8, channels: int = 4, classes: int = 3) -> Network:
    """image (zerocenter) -> conv 3x3 pad 1 -> BN -> ReLU -> FC -> softmax -> output."""
    mean = (100 + 50 * RNG.random((size, size, 3))).astype(np.float32)
    return chain(
        image_input("in", (size, size, 3), Normalization("zerocenter", mean=mean)),
        conv("conv", (3, 3), 3, channels, PaddingSize=(1, 1, 1, 1)),
        batch_norm("bn", channels),
        simple("ReLULayer", "relu"),
        fc("fc", (size, size, channels), classes),
        simple("SoftmaxLayer", "sm"),
        simple("ClassificationOutputLayer", "out"),
        class_names=[f"c{i}" for i in range(classes)],
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in folder.rglob("*") if p.is_file()}


def raw_images(model: torch.nn.Module, n: int = 3) -> torch.Tensor:
    h, w, c = model.matport.input_size
    return torch.from_numpy(RNG.uniform(0, 255, (n, c, h, w)).astype(np.float32))


def run_model(model: torch.nn.Module, raw: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(model.matport.preprocess(raw)).numpy()


def assert_same_outputs(artifact: Path, source: Path, variable: str | None = None) -> None:
    """The artifact computes what the network converted straight from the source computes."""
    migrated, direct = load_artifact(artifact), load(source, variable)
    raw = raw_images(direct)
    np.testing.assert_array_equal(run_model(migrated, raw), run_model(direct, raw))
    assert migrated.matport.class_names == direct.matport.class_names
    np.testing.assert_array_equal(migrated.matport.normalization.mean,
                                  direct.matport.normalization.mean)


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(TMP_SUFFIX)]


# --- 1: a folder of mixed files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Network]]:
    """A source tree with every kind of file migrate meets, and the networks written into it."""
    src = tmp_path_factory.mktemp("mixed")
    (src / "nested").mkdir()
    (src / "pair").mkdir()
    nets = {"tiny": cnn(), "pair": cnn(), "mismatch": cnn(), "other": cnn(), "a": cnn(),
            "b": cnn(size=6)}
    shutil.copy(FIXTURES / "series_net_v7.mat", src / "series_v7.mat")
    shutil.copy(FIXTURES / "dag_net_v73.mat", src / "nested" / "dag_v73.mat")
    write_network(src / "nested" / "tiny_v73.mat", nets["tiny"], format="v7.3")
    write_network(src / "pair" / "pair.mat", nets["pair"])
    matlab_onnx_export.export(nets["pair"], src / "pair" / "pair.onnx")
    write_network(src / "mismatch.mat", nets["mismatch"])
    matlab_onnx_export.export(nets["other"], src / "mismatch.onnx")  # another network's export
    write_network(src / "broken_onnx.mat", nets["a"])
    (src / "broken_onnx.onnx").write_bytes(b"not an onnx file")
    write(src / "two_nets.mat", {"models": Struct(first=encode_network(nets["a"]),
                                            second=encode_network(nets["b"]))})
    matlab_onnx_export.export(nets["a"], src / "two_nets.onnx")  # which network's? unknowable
    for name in ("no_network_v7.mat", "plain_v73.mat", "corrupt_truncated_v7.mat",
                 "not_a_mat_file.mat"):
        shutil.copy(FIXTURES / name, src / name)
    (src / "notes.txt").write_text("not a .mat file")
    return src, nets


EXPECTED = {
    "broken_onnx.mat": "converted",
    "corrupt_truncated_v7.mat": "failed",
    "mismatch.mat": "failed",
    "nested/dag_v73.mat": "converted",
    "nested/tiny_v73.mat": "converted",
    "no_network_v7.mat": "skipped",
    "not_a_mat_file.mat": "failed",
    "pair/pair.mat": "verified",
    "plain_v73.mat": "skipped",
    "series_v7.mat": "converted",
    "two_nets.mat": "converted",
}


def test_mixed_folder_outcomes_report_and_artifacts(mixed, tmp_path: Path) -> None:
    src, nets = mixed
    before = tree_hashes(src)
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "model.pt").write_bytes(b"not matport's")  # left alone
    report = migrate(src, out, jobs=1, progress=False)
    assert (out / "mine" / "model.pt").read_bytes() == b"not matport's"

    files = {f.relative: f for f in report.files}
    assert list(files) == sorted(EXPECTED)  # deterministic order; notes.txt is no source
    assert {k: f.outcome for k, f in files.items()} == EXPECTED
    assert not report.ok and [f.relative for f in report.failed] == [
        "corrupt_truncated_v7.mat", "mismatch.mat", "not_a_mat_file.mat"]
    assert "element declares" in files["corrupt_truncated_v7.mat"].reason
    assert "no MAT-file header" in files["not_a_mat_file.mat"].reason
    assert files["no_network_v7.mat"].reason == "no network"
    assert "the ONNX check failed" in files["mismatch.mat"].reason
    assert tree_hashes(src) == before  # sources untouched, nothing written beside them

    # networks, artifact paths mirroring the tree, verification results
    pair = files["pair/pair.mat"].networks[0]
    assert (pair.weights, pair.metadata) == ("pair/pair/net.pt", "pair/pair/net.json")
    assert pair.verification["status"] == "verified"
    assert files["pair/pair.mat"].onnx_sha256 == sha256(src / "pair" / "pair.onnx")
    assert files["broken_onnx.mat"].networks[0].verification["status"] == "error"
    assert files["mismatch.mat"].networks[0].verification["status"] == "failed"
    two = files["two_nets.mat"].networks
    assert [(n.variable, n.weights) for n in two] == [
        ("models.first", "two_nets/models.first.pt"),
        ("models.second", "two_nets/models.second.pt")]
    assert [n.verification["status"] for n in two] == ["error", "error"]
    assert "the file holds 2 networks" in two[0].verification["reason"]

    # the metadata beside the weights
    meta = json.loads((out / "pair/pair/net.json").read_text())
    assert meta["source"] == {"path": str(src / "pair" / "pair.mat"), "relative": "pair/pair.mat",
                              "sha256": sha256(src / "pair" / "pair.mat"),
                              "size": (src / "pair" / "pair.mat").stat().st_size}
    assert meta["variable"] == "net" and meta["class_names"] == ["c0", "c1", "c2"]
    assert meta["input_size"] == [8, 8, 3] and meta["layout"] == "NCHW"
    assert meta["normalization"]["type"] == "zerocenter"
    assert meta["normalization"]["arrays"] == {"mean": [8, 8, 3]}  # the values: in the weights
    with torch.serialization.safe_globals([]):
        stored = torch.load(out / "pair/pair/net.pt", weights_only=True)
    np.testing.assert_array_equal(stored["info"]["normalization"]["mean"].numpy(),
                                  nets["pair"].layers[0].normalization.mean)
    assert meta["weights"]["sha256"] == sha256(out / "pair/pair/net.pt")
    assert meta["verification"]["status"] == "verified"
    assert meta["verification"]["report"]["passed"] is True

    # the reports
    data = json.loads((out / REPORT_JSON).read_text())
    assert data["counts"] == {"converted": 5, "verified": 1, "skipped": 2, "failed": 3}
    assert [f["outcome"] for f in data["files"]] == [EXPECTED[k] for k in sorted(EXPECTED)]
    markdown = (out / REPORT_MARKDOWN).read_text()
    assert "## Failures" in markdown and "`mismatch.mat`" in markdown
    assert "| `pair/pair.mat` | `net` | SeriesNetwork | verified |" in markdown
    assert "could not verify" in markdown  # broken_onnx.onnx
    assert not temporary_files(out)

    # the artifacts compute what the sources compute
    assert_same_outputs(out / "series_v7/net.pt", src / "series_v7.mat")
    assert_same_outputs(out / "nested/dag_v73/net.pt", src / "nested" / "dag_v73.mat")
    assert_same_outputs(out / "two_nets/models.second.json", src / "two_nets.mat",
                        "models.second")
    # ... and what an independent numpy reference of the MATLAB network computes
    tiny = load_artifact(out / "nested/tiny_v73/net.pt")
    raw = RNG.uniform(0, 255, (8, 8, 3, 2))
    want = network_outputs(nets["tiny"], reference_forward(nets["tiny"], [raw]))[0]
    logits = run_model(tiny, torch.from_numpy(to_torch_layout(raw)).float())
    got = tiny.matport.postprocess_outputs(torch.from_numpy(logits)).numpy()  # MATLAB's outputs
    np.testing.assert_allclose(to_matlab_layout(got), want, rtol=1e-4, atol=1e-6)
    assert np.allclose(got.sum(axis=1), 1)  # the softmax's probabilities


def test_artifact_names_are_safe_and_unique() -> None:
    assert artifact_names(["net", "s.nets(2)", "c{1}", "s.nets_2", "a b/c"]) == [
        "net", "s.nets_2", "c_1", "s.nets_2-2", "a_b_c"]


def test_load_artifact_refuses_what_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    with pytest.raises(MigrationError, match="not a matport migration artifact"):
        load_artifact(tmp_path / "x.json")
    with pytest.raises(MigrationError, match="cannot read the artifact metadata"):
        load_artifact(tmp_path / "missing.pt")


# --- 2 and 3: batches of files -----------------------------------------------------------------

BATCH = 10


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BATCH files of about 4 MB, one network each, v7 and v7.3 alternating."""
    src = tmp_path_factory.mktemp("batch")
    for i in range(BATCH):
        write_network(src / f"m{i}.mat", cnn(size=32, channels=32, classes=30),
                      format="v7.3" if i % 2 else "v7")
    return src


def cli(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "matport", "migrate", str(src), "--out", str(out)]


def run_cli(src: Path, out: Path) -> dict:
    """Run ``matport migrate`` to the end; the JSON report."""
    done = subprocess.run(cli(src, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("matport migrate: ")
    report = json.loads((out / REPORT_JSON).read_text())
    # not a terminal: one log line per file, in the order they finish
    lines = done.stderr.splitlines()
    total = len(report["files"])
    assert [line.split(" ")[2] for line in lines] == [f"{i}/{total}" for i in range(1, total + 1)]
    assert sorted(line.split(" ")[3] for line in lines) == sorted(
        f"{f['relative']}:" for f in report["files"])
    assert not (out / LOCK_FILE).exists()
    return report


def test_sigkill_mid_run_then_rerun_completes_loss_free(batch: Path, tmp_path: Path) -> None:
    assert "migrate" in COMMANDS, "matport.cli.COMMANDS lacks 'migrate' (matport/cli/migrate_cmd)"
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(batch, src)
    before = tree_hashes(src)
    proc = subprocess.Popen(cli(src, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("m*/net.json")):
        assert proc.poll() is None, "the run ended before writing an artifact"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= len(list(out.glob("m*/net.json"))) < BATCH  # killed mid-run
    (out / "m9").mkdir(exist_ok=True)  # as if killed while writing m9's weights, and after
    (out / "m9" / f".net.pt.4242{TMP_SUFFIX}").write_bytes(b"half a checkpoint")
    (out / "m8").mkdir(exist_ok=True)  # renaming m8's weights into place, before its metadata
    (out / "m8" / "net.pt").write_bytes(b"weights whose metadata never came")

    report = run_cli(src, out)
    assert {f["outcome"] for f in report["files"]} <= {"converted", "skipped"}
    names = {f"m{i}" for i in range(BATCH)}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        *(f"{n}/net.{ext}" for n in names for ext in ("pt", "json")),
        STATE_FILE, REPORT_JSON, REPORT_MARKDOWN, REPORT_HTML}  # no temporary files or lock
    for n in sorted(names):
        assert_same_outputs(out / n / "net.pt", src / f"{n}.mat")
    assert tree_hashes(src) == before

    again = run_cli(src, out)
    assert again["counts"] == {"converted": 0, "verified": 0, "skipped": BATCH, "failed": 0}
    assert all(f["reason"] == "already done (converted)" for f in again["files"])

    write_network(src / "m3.mat", cnn(size=32, channels=32, classes=30), format="v7.3")
    changed = run_cli(src, out)
    assert {f["relative"]: f["outcome"] for f in changed["files"]} == {
        f"{n}.mat": "converted" if n == "m3" else "skipped" for n in names}
    assert_same_outputs(out / "m3" / "net.pt", src / "m3.mat")
    assert not temporary_files(out)


def without_timings(report) -> list[dict]:
    files = [f.to_dict() for f in report.files]
    for f in files:
        del f["seconds"]
    return files


def test_two_jobs_give_the_same_artifacts_as_one(batch: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        shutil.copy(batch / f"m{i}.mat", src / f"m{i}.mat")
    one = migrate(src, tmp_path / "one", jobs=1, format="safetensors", progress=False)
    assert capsys.readouterr().err == ""
    two = migrate(src, tmp_path / "two", jobs=2, format="safetensors", progress=True)
    progress = capsys.readouterr().err  # tqdm's bar
    assert progress.startswith("\rmatport migrate:   0%|")
    assert "8/8 [" in progress and "failed=0" in progress
    assert one.ok and two.ok and len(one.files) == 8
    assert without_timings(one) == without_timings(two)
    made = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").glob("m*/*"))
    assert made == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").glob("m*/*"))
    assert len(made) == 24  # weights, config, metadata
    for rel in made:
        a, b = tmp_path / "one" / rel, tmp_path / "two" / rel
        if rel.suffix == ".json":
            assert json.loads(a.read_text()) == json.loads(b.read_text())
        else:
            ta, tb = load_file(str(a)), load_file(str(b))
            assert ta.keys() == tb.keys()
            for k in ta:
                assert torch.equal(ta[k], tb[k])
    assert_same_outputs(tmp_path / "two" / "m5" / "net.safetensors", src / "m5.mat")


def test_time_and_memory_limits_fail_the_file_not_the_run(batch: Path, tmp_path: Path) -> None:
    src = batch / "m0.mat"
    slow = migrate([src, FIXTURES / "series_net_v7.mat"], tmp_path / "slow", timeout=0.001,
                   progress=False)
    assert [(f.outcome, f.reason) for f in slow.files] == [
        ("failed", "timed out after 0.001 s"), ("failed", "timed out after 0.001 s")]
    big = migrate(src, tmp_path / "big", memory_mb=2, progress=False)
    assert [(f.outcome, f.reason) for f in big.files] == [
        ("failed", "out of memory (limit 2 MB per file)")]
    for out in (tmp_path / "slow", tmp_path / "big"):
        assert not temporary_files(out) and not list(out.glob("*/net.*"))
    assert sha256(src) == sha256(batch / "m0.mat")
