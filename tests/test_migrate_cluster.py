"""matport migrate on a real local Dask cluster (several worker processes, started here): the same
outcomes, artifacts, report and state file as a local run apart from timings; time limits fail
the file, not the worker; a worker killed by SIGKILL mid-run and a client killed mid-run lose
nothing, and the next run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from matport.convert.api import load
from matport.errors import MigrationError
from matport.migrate.artifact import load_artifact
from matport.migrate.cluster import ClusterExecutor
from matport.migrate.runner import migrate
from matport.migrate.state import STATE_FILE, MigrationState
from matport.network.encode import write_network
from matport.network.model import Network
from matport.synth import onnx_export
from matport.synth.networks import RNG, chain, conv, fc, image_input, simple

distributed = pytest.importorskip("distributed")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FILES = 6


def cnn(size: int = 24, channels: int = 16) -> Network:
    return chain(image_input("in", (size, size, 3)),
                 conv("conv", (3, 3), 3, channels, PaddingSize=(1, 1, 1, 1)),
                 simple("ReLULayer", "relu"), fc("fc", (size, size, channels), 5),
                 simple("SoftmaxLayer", "sm"), simple("ClassificationOutputLayer", "out"),
                 class_names=[f"c{i}" for i in range(5)])


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for i in range(FILES):
        net = cnn()
        write_network(src / f"m{i}.mat", net, format="v7.3" if i % 2 else "v7")
        if i == 0:
            onnx_export.export(net, src / "m0.onnx")
    (src / "broken.mat").write_bytes(b"not a MAT-file")
    return src


def assert_valid(out: Path, src: Path) -> None:
    """Every artifact the state records computes what its source computes."""
    for rel, entry in MigrationState(out).files.items():
        for net in entry["result"]["networks"]:
            migrated, direct = load_artifact(out / net["metadata"]), load(src / rel)
            raw = torch.from_numpy(RNG.uniform(0, 255, (2, 3, 24, 24)).astype(np.float32))
            with torch.no_grad():
                np.testing.assert_array_equal(migrated(raw).numpy(), direct(raw).numpy())
    assert not [p for p in out.rglob("*") if p.name.endswith(".matport-tmp")]


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_cluster_run_is_the_local_run(cluster, sources: Path, tmp_path: Path) -> None:
    before = tree(sources)
    local = migrate(sources, tmp_path / "local", progress=False)
    remote = migrate(sources, tmp_path / "remote", cluster=cluster.scheduler_address,
                     progress=False)
    assert [f.outcome for f in remote.files] == [f.outcome for f in local.files] == [
        "failed", "verified"] + ["converted"] * 5
    a, b = (json.loads((tmp_path / d / "migration-report.json").read_text())
            for d in ("local", "remote"))
    a.pop("out"), b.pop("out")
    assert without_timings(a) == without_timings(b)
    a, b = (MigrationState(tmp_path / d).files for d in ("local", "remote"))
    assert without_timings(a) == without_timings(b)
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("m*/*"))
    assert files == sorted(p.relative_to(tmp_path / "remote")
                           for p in (tmp_path / "remote").rglob("m*/*"))
    for rel in files:
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "remote" / rel).read_bytes()
    assert_valid(tmp_path / "remote", sources)
    assert tree(sources) == before  # sources never modified


def test_a_local_run_does_not_import_dask(sources: Path, tmp_path: Path) -> None:
    code = (f"import sys; from matport.migrate import migrate; "
            f"migrate({str(sources / 'm2.mat')!r}, {str(tmp_path / 'out')!r}, progress=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]"


def test_limits_fail_the_file_not_the_worker(cluster, sources: Path, tmp_path: Path) -> None:
    report = migrate(sources / "m1.mat", tmp_path / "out", cluster=cluster.scheduler_address,
                     timeout=0.001, progress=False)
    assert [(f.outcome, f.reason) for f in report.files] == [
        ("failed", "timed out after 0.001 s")]
    write_network(tmp_path / "big.mat", cnn(size=32, channels=128))  # 2.6 MB of weights
    big = migrate(tmp_path / "big.mat", tmp_path / "big", cluster=cluster.scheduler_address,
                  memory_mb=2, progress=False)
    assert [(f.outcome, f.reason) for f in big.files] == [
        ("failed", "out of memory (limit 2 MB per file)")]
    again = migrate(sources / "m1.mat", tmp_path / "out", cluster=cluster.scheduler_address,
                    progress=False)
    assert [f.outcome for f in again.files] == ["converted"]


def test_worker_killed_mid_run_loses_nothing(cluster, sources: Path, tmp_path: Path) -> None:
    client = distributed.Client(cluster.scheduler_address)
    pids = client.run(os.getpid)
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    report = migrate(sources, tmp_path / "out", cluster=cluster.scheduler_address,
                     progress=False)
    killer.join()
    client.close()
    assert killed, "no worker was busy"
    assert [f.outcome for f in report.files] == ["failed"] + ["verified"] + ["converted"] * 5
    assert_valid(tmp_path / "out", sources)


def test_client_killed_mid_run_is_resumed(cluster, sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "matport", "migrate", str(sources), "-o",
                             str(out), "--cluster", cluster.scheduler_address], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / STATE_FILE).exists():  # created by the first file's line
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = MigrationState(out).files
    assert 1 <= len(done) < FILES + 1
    report = migrate(sources, out, cluster=cluster.scheduler_address, progress=False)
    outcomes = {f.relative: f.outcome for f in report.files}
    assert outcomes.pop("broken.mat") == "failed"  # whichever run tried it
    assert all(outcomes[rel] == "skipped" for rel in done if rel != "broken.mat")
    assert {o for r, o in outcomes.items() if r not in done} <= {"converted", "verified"}
    assert_valid(out, sources)


def test_refused_when_a_worker_cannot_see_a_path(cluster, tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="cannot see .*missing: sources and the output"):
        ClusterExecutor(cluster.scheduler_address, [str(tmp_path / "missing")], None, None)
    with pytest.raises(MigrationError, match="cannot reach the Dask scheduler"):
        ClusterExecutor("tcp://127.0.0.1:9", [], None, None)
