"""Files written by matport 0.1.0 (fixtures/compat-0.1.0, made before the package was reorganised)
still load and compute what they computed then; a folder it migrated is resumed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import matport
from matport.checkpoint import load_checkpoint
from matport.migrate import migrate
from matport.migrate.artifact import load_artifact
from tests.support.paths import FIXTURES

COMPAT = FIXTURES / "compat-0.1.0"


def _outputs(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(model.matport.preprocess(torch.from_numpy(x))).numpy()


@pytest.fixture(scope="module")
def stored() -> dict[str, np.ndarray]:
    with np.load(COMPAT / "outputs.npz") as data:
        return dict(data)


@pytest.mark.parametrize("name", ["series_net_v7", "dag_net_v73"])
def test_checkpoint_written_by_0_1_0_loads(name: str, stored: dict[str, np.ndarray]) -> None:
    model = load_checkpoint(COMPAT / f"{name}.pt")
    assert not model.training
    got = _outputs(model, stored["input"])
    np.testing.assert_allclose(got, stored[name], rtol=1e-6, atol=1e-7)
    fresh = _outputs(matport.load(FIXTURES / f"{name}.mat", output="probabilities"),
                     stored["input"])
    np.testing.assert_allclose(got, fresh, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_migration_artifact_written_by_0_1_0_loads(fmt: str, stored: dict[str, np.ndarray]) -> None:
    model = load_artifact(COMPAT / f"artifact-{fmt}" / "net.json")
    got = _outputs(model, stored["input"])
    np.testing.assert_allclose(got, stored["series_net_v7"], rtol=1e-6, atol=1e-7)


def test_migration_state_written_by_0_1_0_is_resumed(tmp_path, stored) -> None:
    """A folder migrated by 0.1.0 (its state calls the family 'mode'): the same run skips the
    file as done; another family redoes it."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    shutil.copy(FIXTURES / "series_net_v7.mat", src)
    shutil.copytree(COMPAT / "migration", out)
    report = migrate(src, out, progress=False)
    assert [(f.outcome, f.reason) for f in report.files] == [
        ("skipped", "already done (converted)")]
    got = _outputs(load_artifact(out / "series_net_v7" / "net.json"), stored["input"])
    np.testing.assert_allclose(got, stored["series_net_v7"], rtol=1e-6, atol=1e-7)
    again = migrate(src, out, family="graph", progress=False)
    assert [f.outcome for f in again.files] == ["converted"]
