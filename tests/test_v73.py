"""The v7.3 (HDF5) reader: every v7.3 file of the matio test corpus must read exactly as its v7
twin (read by the independent MAT 5 parser); corrupt files must raise MatFileError."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse

from matport.errors import MatFileError
from matport.mat import read
from matport.mat.raw import MAX_DEPTH
from matport.mat.values import Categorical, StructArray, Table
from tests.support.paths import CORPUS
from tests.support.v73_files import v73_file
from tests.support.value_compare import assert_values_equal

MATIO = CORPUS / "foreverallama__matio"
FEATURES = CORPUS / "matlab-deep-learning__Industrial-Machinery-Anomaly-Detection" / \
    "Data__FeatureEntire.mat"
PAIRS = sorted(p.name[: -len("_v73.mat")] for p in MATIO.glob("*_v73.mat")) \
    if MATIO.is_dir() else []

needs_corpus = pytest.mark.skipif(not MATIO.is_dir(), reason="shared corpus absent")


@needs_corpus
@pytest.mark.parametrize("stem", PAIRS)
def test_v73_reads_as_its_v7_twin(stem: str) -> None:
    v7 = read(MATIO / f"{stem}_v7.mat")
    v73 = read(MATIO / f"{stem}_v73.mat")
    assert v73.format == "v7.3" and v7.format == "v7"
    assert v73.header.startswith("MATLAB 7.3 MAT-file")
    assert list(v73) and set(v73) == set(v7)
    for name in v7:
        assert_values_equal(v73[name], v7[name], name)


@needs_corpus
def test_plain_values_have_matlab_shapes() -> None:
    m = read(MATIO / "test_basic_v73.mat")
    np.testing.assert_array_equal(m["int8_array"], np.array([[1, 2, 3], [4, 5, 6]], np.int8))
    assert m["char_scalar"] == "Hello" and m["char_empty"] == ""
    assert m["complex_array"].dtype == np.complex128
    np.testing.assert_array_equal(m["complex_array"].ravel(), [1 + 2j, 2 + 4j, 4 + 8j])
    assert isinstance(m["struct_array"], StructArray) and m["struct_array"].shape == (1, 2)
    assert m["struct_array"].elements[1]["info"] == "second"
    assert list(m["struct_scalar"]) == ["name", "value", "data"]  # MATLAB_fields order
    assert len(m["struct_even_larger"]) > 1000  # field names held in a referenced dataset


@needs_corpus
@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
def test_v7_plain_values_agree_with_scipy() -> None:
    """Anchors the twin comparison: the v7 reader against scipy.io.loadmat, value by value."""
    ours = read(MATIO / "test_basic_v7.mat")
    # mat_dtype gives MATLAB's class, but scipy then drops imaginary parts: read complex plainly
    typed = scipy.io.loadmat(MATIO / "test_basic_v7.mat", chars_as_strings=False, mat_dtype=True)
    plain = scipy.io.loadmat(MATIO / "test_basic_v7.mat")
    checked = 0
    for name, ref in typed.items():
        if name not in ours:
            continue
        value = ours[name]
        if np.iscomplexobj(value):
            ref = plain[name]
        if isinstance(value, str):
            assert "".join(ref.ravel()) == value and ref.shape in ((1, len(value)), (0, 0)), name
        elif scipy.sparse.issparse(value):
            assert value.shape == ref.shape, name
            np.testing.assert_array_equal(value.toarray(), ref.toarray(), err_msg=name)
        elif isinstance(value, np.ndarray) and value.dtype != object:
            assert value.shape == ref.shape, name
            assert value.dtype == ref.dtype, name
            np.testing.assert_array_equal(value, ref, err_msg=name)
        else:
            continue
        checked += 1
    assert checked >= 30


@needs_corpus
@pytest.mark.parametrize("name, message", [
    ("test_corrupted_mcos_object_metadata.mat", "object id 3 is not in the object table"),
    ("test_corrupted_subsystem.mat", "unsupported FileWrapper__ version 5"),
])
def test_corrupted_files_raise(name: str, message: str) -> None:
    with pytest.raises(MatFileError, match=message) as info:
        read(MATIO / name)
    assert info.value.path.endswith(name)


@pytest.mark.skipif(not FEATURES.is_file(), reason="shared corpus absent")
def test_v73_table_reads() -> None:
    table = read(FEATURES)["featureAll"]
    assert isinstance(table, Table)
    assert table.nrows == 17642 and len(table.columns) == 13
    label = next(v for v in table.columns.values() if isinstance(v, Categorical))
    assert label.codes.shape == (17642, 1) and len(label.categories) >= 2
    numeric = [v for v in table.columns.values() if isinstance(v, np.ndarray)]
    assert numeric and all(v.shape == (17642, 1) and v.dtype == np.float64 for v in numeric)


# -- hostile files ---------------------------------------------------------------------------

def test_reference_cycle_is_refused(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        refs = f.create_group("#refs#")
        loop = refs.create_dataset("a", (1, 1), dtype=h5py.ref_dtype)
        loop.attrs["MATLAB_class"] = np.bytes_("cell")
        loop[0, 0] = loop.ref
        top = f.create_dataset("c", (1, 1), dtype=h5py.ref_dtype)
        top.attrs["MATLAB_class"] = np.bytes_("cell")
        top[0, 0] = loop.ref

    with pytest.raises(MatFileError, match="reference cycle") as info:
        read(v73_file(tmp_path / "cycle.mat", build))
    assert "/#refs#/a" in str(info.value)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        refs = f.create_group("#refs#")
        inner = refs.create_dataset("leaf", (1, 1), dtype="f8")
        inner.attrs["MATLAB_class"] = np.bytes_("double")
        for i in range(MAX_DEPTH + 5):
            cell = refs.create_dataset(f"c{i}", (1, 1), dtype=h5py.ref_dtype)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
            cell[0, 0] = inner.ref
            inner = cell
        f["deep"] = inner

    with pytest.raises(MatFileError, match=f"deeper than {MAX_DEPTH}") as info:
        read(v73_file(tmp_path / "deep.mat", build))
    assert info.value.where is not None and info.value.where.startswith("/deep > /#refs#/c")


def test_declared_size_beyond_file_is_refused(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        big = f.create_dataset("w", (2**20, 2**20), dtype="f8", chunks=(1, 1024),
                               compression="gzip")
        big.attrs["MATLAB_class"] = np.bytes_("double")

    with pytest.raises(MatFileError, match="declares 8796093022208 bytes but stores only") as info:
        read(v73_file(tmp_path / "bomb.mat", build))
    assert info.value.where == "/w"


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    src = MATIO / "test_basic_v73.mat"
    if not src.is_file():
        pytest.skip("shared corpus absent")
    cut = tmp_path / "cut.mat"
    shutil.copyfile(src, cut)
    with open(cut, "r+b") as fh:
        fh.truncate(src.stat().st_size // 2)
    with pytest.raises(MatFileError):
        read(cut)
