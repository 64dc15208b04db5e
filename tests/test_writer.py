"""The MAT-file writer (matport.mat.writer), checked against independent decoders: scipy.io
(v7 plain values), h5py (v7.3 layout), mat-io (objects), MATLAB's own files in the corpus (byte
layout of the subsystem) and matport's reader (round trips of every corpus file)."""

from __future__ import annotations

import datetime as dt
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import h5py
import matio
import numpy as np
import pytest
import scipy.io
import scipy.sparse

import matport.mat
from matport.errors import MatFileError, MatportError
from matport.mat.values import (
    Categorical,
    Enumeration,
    MatObject,
    ObjectArray,
    Struct,
    StructArray,
    Table,
)
from matport.mat.writer import String, header_text, write
from matport.network.build import build_network
from matport.network.find import find_networks, network_from_ref
from tests.support.paths import CORPUS, FIXTURES, ROOT, corpus_file
from tests.support.value_compare import first_difference, matio_difference, network_difference

FORMATS = ["v7", "v7.3"]
FIXED_DATE = dt.datetime(2024, 1, 2, 3, 4, 5)
MATIO = CORPUS / "foreverallama__matio"


def cell(*items: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out.reshape(shape or (1, len(items)), order="F")


def plain_values() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    return {
        "d": rng.standard_normal((3, 4)),
        "f3": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "i8": np.array([[-128, 0, 127]], dtype=np.int8),
        "u16": np.array([[1], [65535]], dtype=np.uint16),
        "i64": np.array([[-(2**62), 2**62]], dtype=np.int64),
        "u64": np.array([[2**64 - 1]], dtype=np.uint64),
        "lg": np.array([[True, False], [False, True]]),
        "z": np.array([[1 + 2j, -3.5j]]),
        "txt": "hello",
        "uni": "héllo ☃",
        "chars": np.array([["a", "b", "c"], ["d", "e", "f"]]),
        "empty": np.zeros((0, 3)),
        "empty_text": "",
        "c": cell(np.array([[1.0]]), "x", cell("nested"), shape=(1, 3)),
        "s": Struct(a=np.array([[1.5]]), b="text", inner=Struct(v=np.array([[2.0, 3.0]]))),
        "sa": StructArray((2, 1), ("k",), [Struct(k=np.array([[1.0]])), Struct(k="two")]),
        "sp": scipy.sparse.csc_array(np.array([[0.0, 2.5], [1.0, 0.0], [0.0, 0.0]])),
    }


def written(tmp_path: Path, variables: dict[str, Any], fmt: str, **kw: Any) -> Path:
    path = tmp_path / f"out_{fmt.replace('.', '')}.mat"
    write(path, variables, format=fmt, created=FIXED_DATE, **kw)  # type: ignore[arg-type]
    return path


# ---- v7 plain values: scipy.io --------------------------------------------------------------


def test_v7_plain_values_read_by_scipy(tmp_path: Path) -> None:
    values = plain_values()
    m = scipy.io.loadmat(written(tmp_path, values, "v7"))
    for name in ("d", "f3", "i8", "u16", "i64", "u64", "z"):
        assert m[name].dtype == values[name].dtype, name
        np.testing.assert_array_equal(m[name], values[name], err_msg=name)
    np.testing.assert_array_equal(m["lg"], values["lg"].astype(np.uint8))
    assert m["txt"][0] == "hello" and m["uni"][0] == "héllo ☃"
    assert [str(r) for r in m["chars"]] == ["abc", "def"]
    assert m["empty"].shape == (0, 3)
    assert m["c"].shape == (1, 3) and m["c"][0, 1][0] == "x" and m["c"][0, 2][0, 0][0] == "nested"
    assert m["s"]["b"][0, 0][0] == "text" and m["s"]["inner"][0, 0]["v"][0, 0].tolist() == [[2, 3]]
    assert m["sa"].shape == (2, 1) and m["sa"][1, 0]["k"][0] == "two"
    np.testing.assert_array_equal(m["sp"].toarray(), values["sp"].toarray())
    assert set(m) - {"__header__", "__version__", "__globals__"} == set(values)


def test_v7_header_and_compression(tmp_path: Path) -> None:
    path = written(tmp_path, {"x": np.arange(4.0).reshape(2, 2)}, "v7")
    raw = path.read_bytes()
    assert raw[:116] == header_text("v7", FIXED_DATE)
    assert raw[:116].decode().rstrip() == (
        "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Tue Jan  2 03:04:05 2024")
    assert raw[116:124] == b"\0" * 8  # no objects, no subsystem
    assert raw[124:128] == b"\x00\x01IM"
    mi_type, nbytes = struct.unpack_from("<II", raw, 128)
    assert mi_type == 15 and 136 + nbytes == len(raw)
    inner = zlib.decompress(raw[136:])
    assert struct.unpack_from("<I", inner)[0] == 14  # one miMATRIX
    # column-major data: MATLAB's x(2,1) is the second stored double
    assert np.frombuffer(inner[-32:], "<f8").tolist() == [0.0, 2.0, 1.0, 3.0]
    plain = tmp_path / "plain.mat"
    write(plain, {"x": np.arange(4.0).reshape(2, 2)}, compress=False)
    assert struct.unpack_from("<I", plain.read_bytes(), 128)[0] == 14


# ---- v7.3 plain values: h5py -----------------------------------------------------------------


def test_v73_plain_values_read_by_h5py(tmp_path: Path) -> None:
    values = plain_values()
    path = written(tmp_path, values, "v7.3")
    raw = path.read_bytes()
    assert raw[:116] == header_text("v7.3", FIXED_DATE)
    assert raw[:19] == b"MATLAB 7.3 MAT-file" and raw[124:128] == b"\x00\x02IM"
    assert raw[512:520] == b"\x89HDF\r\n\x1a\n"
    with h5py.File(path, "r") as f:
        def cls(name: str) -> bytes:
            return bytes(f[name].attrs["MATLAB_class"])
        for name, mclass in (("d", b"double"), ("f3", b"single"), ("i64", b"int64")):
            assert cls(name) == mclass
            np.testing.assert_array_equal(f[name][()].T, values[name])
        assert cls("lg") == b"logical" and f["lg"].attrs["MATLAB_int_decode"] == 1
        np.testing.assert_array_equal(f["lg"][()].T, values["lg"].astype(np.uint8))
        z = f["z"][()].T
        np.testing.assert_array_equal(z["real"] + 1j * z["imag"], values["z"])
        assert cls("txt") == b"char" and f["txt"].attrs["MATLAB_int_decode"] == 2
        assert f["txt"].shape == (5, 1) and bytes(f["txt"][()].ravel().astype("u1")) == b"hello"
        assert "".join(map(chr, f["uni"][()].ravel())) == "héllo ☃"
        assert f["empty"].attrs["MATLAB_empty"] == 1 and f["empty"][()].tolist() == [0, 3]
        assert cls("empty_text") == b"char" and f["empty_text"][()].tolist() == [0, 0]
        c = f["c"]
        assert cls("c") == b"cell" and c.shape == (3, 1)
        assert bytes(f[c[1, 0]][()].ravel().astype("u1")) == b"x"
        assert cls("s") == b"struct"
        fields = [b"".join(n).decode() for n in f["s"].attrs["MATLAB_fields"]]
        assert fields == ["a", "b", "inner"] and f["s/inner/v"][()].T.tolist() == [[2.0, 3.0]]
        sa = f["sa"]["k"]
        assert sa.shape == (1, 2) and bytes(f[sa[0, 1]].attrs["MATLAB_class"]) == b"char"
        assert f["sp"].attrs["MATLAB_sparse"] == 3
        assert f["sp/jc"][()].tolist() == [0, 1, 2] and f["sp/ir"][()].tolist() == [1, 0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_values_round_trip(tmp_path: Path, fmt: str) -> None:
    values = plain_values()
    back = matport.mat.read(written(tmp_path, values, fmt))
    assert set(back) == set(values)
    # v7.3 keeps variables by name; their save order is only a hint (even in MATLAB's files)
    assert first_difference(values, {k: back[k] for k in values}) is None


# ---- objects -------------------------------------------------------------------------------------


def layer(cls: str, name: str, **fields: Any) -> MatObject:
    saved = Struct(Version=np.array([[1.0]]), Name=name, **fields)
    return MatObject("nnet.cnn.layer." + cls, {"any": saved}, saveobj=True)


def series_network() -> MatObject:
    rng = np.random.default_rng(3)
    categories = Categorical(["cat", "dog"], np.array([[1], [2]], dtype=np.uint8))
    layers = ObjectArray("nnet.cnn.layer.Layer", (4, 1), [
        layer("ImageInputLayer", "input", InputSize=np.array([[4.0, 4.0, 1.0]])),
        layer("FullyConnectedLayer", "fc", Weights=rng.standard_normal((2, 16), np.float32),
              Bias=np.zeros((2, 1), np.float32)),
        layer("SoftmaxLayer", "softmax"),
        layer("ClassificationOutputLayer", "output", ClassNames=categories),
    ])
    return MatObject("SeriesNetwork", {"any": Struct(Version=np.array([[1.0]]), Layers=layers)},
                     saveobj=True)


def object_values() -> dict[str, Any]:
    shared = MatObject("pkg.Shared", {"v": np.array([[7.0]])})
    return {
        "net": series_network(),
        "str": String("Hello"),
        "strs": String(cell("ab", "", "xyz", "☃", shape=(2, 2))),
        "cat": Categorical(["x", "y", "z"], np.array([[1, 3, 0]], dtype=np.uint8), ordinal=True),
        "tab": Table({"Source": cell("a", "b", shape=(2, 1)),
                      "Destination": cell("b", "c", shape=(2, 1))}, nrows=2),
        "colors": Enumeration("pkg.Color", cell("red", "green", "red", "blue", shape=(2, 2))),
        "holder": MatObject("pkg.Holder", {
            "first": shared, "second": shared, "list": cell(shared, "text"),
            "inside": Struct(obj=shared),
        }),
    }


def matio_load(path: Path, strict: bool = True) -> dict[str, Any]:
    """mat-io's reading. ``strict``: fail on any warning about the subsystem's structure
    (metadata it does not understand, objects it cannot find); warnings about converting
    MATLAB types to pandas / numpy (time zones, formats) are mat-io's own business."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = matio.load_from_mat(str(path))
    structural = [str(w.message) for w in caught
                  if any(k in str(w.message) for k in ("subsystem", "metadata", "Returning"))
                  and "rounded to nanoseconds" not in str(w.message)]
    assert not (strict and structural), structural
    return decoded


@pytest.mark.parametrize("fmt", FORMATS)
def test_matio_decodes_objects(tmp_path: Path, fmt: str) -> None:
    m = matio_load(written(tmp_path, object_values(), fmt))
    assert str(m["str"][0, 0]) == "Hello"
    assert [[str(x) for x in row] for row in m["strs"]] == [["ab", "xyz"], ["", "☃"]]
    assert [str(x) if x == x else None for x in m["cat"].ravel()] == ["x", "z", None]
    assert list(m["cat"].categories) == ["x", "y", "z"] and m["cat"].ordered
    assert list(m["tab"].columns) == ["Source", "Destination"] and len(m["tab"]) == 2
    assert m["colors"].classname == "pkg.Color" and m["colors"].shape == (2, 2)
    net = m["net"]
    assert net.classname == "SeriesNetwork"
    layers = net.properties["any"][0, 0]["Layers"]
    assert layers.shape == (4, 1)
    fc = layers[1, 0].properties["any"][0, 0]
    assert str(fc["Name"][0]) == "fc"
    np.testing.assert_array_equal(fc["Weights"], series_network().props["any"]["Layers"]
                                  .elements[1].props["any"]["Weights"])
    holder = m["holder"].properties
    assert holder["first"] is holder["second"]  # one object, referenced twice
    assert holder["list"][0, 0] is holder["first"]
    assert holder["inside"][0, 0]["obj"] is holder["first"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_objects_round_trip_with_their_own_classes(tmp_path: Path, fmt: str) -> None:
    values = object_values()
    back = matport.mat.read(written(tmp_path, values, fmt))
    layers = back["net"].props["any"]["Layers"]
    assert isinstance(layers, ObjectArray) and layers.class_name == "nnet.cnn.layer.Layer"
    assert [e.short_name for e in layers] == [
        "ImageInputLayer", "FullyConnectedLayer", "SoftmaxLayer", "ClassificationOutputLayer"]
    assert back["str"] == "Hello" and back["strs"].tolist() == [["ab", "xyz"], ["", "☃"]]
    assert back["colors"].names.tolist() == [["red", "red"], ["green", "blue"]]
    holder = back["holder"]
    assert holder.props["first"] is holder.props["second"]
    assert back.object_counts["pkg.Shared"] == 1
    expected = dict(values, str="Hello", strs=values["strs"].value)
    assert first_difference(expected, {k: back[k] for k in values}) is None


def test_class_defaults_are_stored_once(tmp_path: Path) -> None:
    objs = ObjectArray("pkg.Thing", (1, 2), [
        MatObject("pkg.Thing", {"size": np.array([[1.0]]), "mode": "auto"}),
        MatObject("pkg.Thing", {"size": np.array([[2.0]]), "mode": "manual"}),
    ])
    path = written(tmp_path, {"t": objs}, "v7", defaults={"pkg.Thing": {"mode": "auto"}})
    records = _v7_metadata_regions(path)
    # names: properties, class, package, then the class-default fields
    assert records["names"] == ["size", "Thing", "pkg", "mode"]
    # normal-object records: the first object stores only 'size', the second both properties
    assert records["region4"] == [0, 0, 1, 1, 1, 0, 2, 1, 1, 1, 4, 1, 2, 0]
    back = matport.mat.read(path)["t"]
    assert [e.props["mode"] for e in back] == ["auto", "manual"]
    m = matio_load(path)["t"]
    assert [str(e.properties["mode"][0]) for e in m.ravel()] == ["auto", "manual"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_object_references_round_trip(tmp_path: Path, fmt: str) -> None:
    value = ObjectArray("pkg.Gone", (1, 1), [])
    back = matport.mat.read(written(tmp_path, {"holder": MatObject("pkg.H", {"w": value})}, fmt))
    w = back["holder"].props["w"]
    assert isinstance(w, ObjectArray) and w.class_name == "pkg.Gone" and w.elements == []


def _v7_metadata_regions(path: Path) -> dict[str, Any]:
    """The FileWrapper__ metadata blob of a written v7 file, decoded independently of matport:
    scipy returns the subsystem bytes, whose element layout is walked here by hand."""
    sub = scipy.io.loadmat(path)["__function_workspace__"].tobytes()
    pos = sub.index(b"FileWrapper__") + len("FileWrapper__")
    pos += -pos % 8  # elements are 8-byte aligned within the subsystem stream
    tags = [struct.unpack_from("<I", sub, pos + off)[0] for off in (0, 48, 96)]
    assert tags == [14, 14, 2]  # cell matrix, its first element (matrix), that one's uint8 data
    nbytes = struct.unpack_from("<I", sub, pos + 100)[0]
    blob = sub[pos + 104: pos + 104 + nbytes]
    words = np.frombuffer(blob, "<u4")
    offsets = words[2:10]
    names = [n.decode() for n in blob[40:offsets[0]].split(b"\0") if n]
    regions = {f"region{i + 1}": words[offsets[i] // 4: offsets[i + 1] // 4].tolist()
               for i in range(7)}
    return {"version": int(words[0]), "names": names, **regions}


def test_metadata_blob_layout(tmp_path: Path) -> None:
    regions = _v7_metadata_regions(written(tmp_path, {"net": series_network()}, "v7"))
    assert regions["version"] == 4
    # names as objects complete: property names, then class and package (default fields)
    assert regions["names"] == [
        "any", "ImageInputLayer", "nnet.cnn.layer", "FullyConnectedLayer", "SoftmaxLayer",
        "categoryNames", "codes", "categorical", "isProtected", "isOrdinal",
        "ClassificationOutputLayer", "Layer", "SeriesNetwork"]
    # object table: SeriesNetwork is object 1 (parent first) with saveobj record 1, but the
    # last class id and the last dependency id (its contents complete first)
    table = np.array(regions["region3"]).reshape(-1, 6)
    assert table[0].tolist() == [0] * 6
    assert table[1].tolist() == [table[:, 0].max(), 0, 0, 1, 0, len(table) - 1]
    assert regions["region5"] == [0, 0] * len(table)
    assert regions["region6"] == [] and regions["region7"] == [0, 0]


# ---- layout identical to MATLAB's own files --------------------------------------------------


def _v7_elements(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    out, pos = [], 128
    while pos < len(raw):
        kind, n = struct.unpack_from("<II", raw, pos)
        body = raw[pos + 8: pos + 8 + n]
        out.append(zlib.decompress(body) if kind == 15 else body)
        pos += 8 + n
    return out


def test_strings_written_byte_for_byte_as_matlab(tmp_path: Path) -> None:
    original = corpus_file("foreverallama__matio/test_string_v7.mat")
    values = {k: String(v) for k, v in matport.mat.read(original).items()}
    assert _v7_elements(written(tmp_path, values, "v7")) == _v7_elements(original)


def test_network_subsystem_written_byte_for_byte_as_matlab(tmp_path: Path) -> None:
    original = corpus_file("TomBennett2202__NeuroOrganoidAnalysis/trainedNetwork.mat")
    src = matport.mat.read(original)
    # class defaults are merged into each object on reading; hand them back to the writer
    defaults = {v.class_name: {k: x for k, x in v.props.items() if k != "any"}
                for _, v in src.walk() if isinstance(v, MatObject) and v.saveobj}
    defaults["nnet.cnn.layer.Layer"] = {"Version": np.array([[1.0]])}
    assert _v7_elements(written(tmp_path, dict(src), "v7", defaults=defaults)) == \
        _v7_elements(original)


def _h5_layout(path: Path) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            attrs = sorted((k, np.asarray(v).tobytes()) for k, v in obj.attrs.items())
            data = None
            if isinstance(obj, h5py.Dataset):
                data = ([f[r].name for r in obj[()].ravel()] if obj.dtype.kind == "O"
                        else obj[()].tobytes())
            out.append((name, type(obj).__name__, getattr(obj, "shape", None), attrs, data))
        f.visititems(visit)
    return out


def test_v73_strings_laid_out_as_matlab(tmp_path: Path) -> None:
    original = corpus_file("foreverallama__matio/test_string_v73.mat")
    values = {k: String(v) for k, v in matport.mat.read(original).items()}
    assert _h5_layout(written(tmp_path, values, "v7.3")) == _h5_layout(original)


# ---- round trips of the corpus ---------------------------------------------------------------

NOT_WRITABLE = {
    "test_corrupted_mcos_object_metadata.mat": "corrupt on purpose",
    "test_corrupted_subsystem.mat": "corrupt on purpose",
}
CORPUS_MATS = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("*/*.mat"))


@pytest.mark.skipif(not CORPUS_MATS, reason="shared corpus absent")
@pytest.mark.parametrize("relative", CORPUS_MATS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_corpus_file_round_trips(tmp_path: Path, relative: str, fmt: str) -> None:
    if Path(relative).name in NOT_WRITABLE:
        pytest.skip(NOT_WRITABLE[Path(relative).name])
    src = matport.mat.read(corpus_file(relative))
    back = matport.mat.read(written(tmp_path, dict(src), fmt))
    # v7.3 keeps variables by name; their save order is only a hint (even in MATLAB's files)
    assert first_difference(dict(src), {k: back[k] for k in src} if fmt == "v7.3" else dict(back),
                            Path(relative).name) is None
    assert set(back) == set(src)
    decoded = matio_load(written(tmp_path, dict(src), fmt))  # the independent decoder
    assert [(k, matio_difference(v, decoded[k], k)) for k, v in src.items()] == [
        (k, None) for k in src]
    networks = [(r.path, network_from_ref(r)) for r in find_networks(src)]
    again = [(r.path, network_from_ref(r)) for r in find_networks(back)]
    assert [p for p, _ in again] == [p for p, _ in networks]
    for (path, a), (_, b) in zip(networks, again, strict=True):
        assert network_difference(a, b, path) is None


@pytest.mark.skipif(not MATIO.is_dir(), reason="shared corpus absent")
@pytest.mark.parametrize("fmt", FORMATS)
def test_matio_reads_rewritten_corpus_tables(tmp_path: Path, fmt: str) -> None:
    src = matport.mat.read(MATIO / "test_tables_v7.mat")
    tables = {k: v for k, v in src.items() if isinstance(v, Table | Categorical)}
    m = matio_load(written(tmp_path, tables, fmt))
    ref = matio_load(MATIO / "test_tables_v7.mat", strict=False)
    for name, value in tables.items():
        if isinstance(value, Categorical):
            assert list(m[name].categories) == list(ref[name].categories), name
            assert m[name].codes.tolist() == ref[name].codes.tolist(), name
        elif name.startswith("table"):
            assert list(m[name].columns) == list(ref[name].columns), name
            assert len(m[name]) == len(ref[name]), name


# ---- errors and atomicity ------------------------------------------------------------------


def nested_cells(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("bad, message", [
    ({"1abc": 1.0}, "not a valid MATLAB variable name"),
    ({"x": object()}, "x: cannot write a value of type object"),
    ({"s": Struct(f=np.array(["2024-01-01"], dtype="datetime64[s]"))}, "s.f: cannot write"),
    ({"deep": nested_cells(5000)}, "nested too deeply"),
])
def test_bad_values_raise_naming_the_place(tmp_path: Path, bad: dict[str, Any],
                                           message: str) -> None:
    target = tmp_path / "bad.mat"
    with pytest.raises(MatFileError, match=message) as info:
        write(target, bad)
    assert str(target) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(MatFileError, match="cannot write"):
        write(tmp_path / "no" / "such" / "folder.mat", {"a": 1.0})


def test_write_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "data.mat"
    write(target, {"a": 1.0})
    with pytest.raises(MatFileError):
        write(target, {"a": 2.0, "b": object()})
    assert matport.mat.read(target)["a"].tolist() == [[1.0]]  # the old file is untouched
    write(target, {"a": 3.0}, format="v7.3")
    assert matport.mat.read(target)["a"].tolist() == [[3.0]]
    assert [p.name for p in tmp_path.iterdir()] == ["data.mat"]


# ---- fixtures ------------------------------------------------------------------------------------


def test_fixtures_regenerate_identically(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" /
                                                  "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path)])
    made = sorted(p.name for p in tmp_path.glob("*.mat"))
    assert made == sorted(p.name for p in FIXTURES.glob("*.mat"))
    for name in made:
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 6_000_000


@pytest.mark.parametrize("suffix", ["v7", "v73"])
def test_fixture_networks_read(suffix: str) -> None:
    expected = {"series_net": ("SeriesNetwork", 6), "dag_net": ("DAGNetwork", 6),
                "dlnetwork": ("dlnetwork", 5)}
    for stem, (kind, nlayers) in expected.items():
        refs = find_networks(matport.mat.read(FIXTURES / f"{stem}_{suffix}.mat"))
        assert [r.path for r in refs] == ["net"], stem
        net = build_network(refs[0].value, path="net")
        assert (net.kind, len(net.layers)) == (kind, nlayers), stem
        assert net.layers[1].learnables["Weights"].shape == (3, 3, 1, 4)
    series = build_network(find_networks(
        matport.mat.read(FIXTURES / f"series_net_{suffix}.mat"))[0].value)
    assert series.class_names == ["circle", "square", "triangle"]
    assert find_networks(matport.mat.read(FIXTURES / f"no_network_{suffix}.mat")) == []
    assert set(matport.mat.read(FIXTURES / f"plain_{suffix}.mat")) >= {"matrix", "records"}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.mat")
                                        if p.name.startswith(("corrupt_", "not_a_mat"))))
def test_corrupt_fixtures_raise_a_matport_error(name: str) -> None:
    with pytest.raises(MatportError, match=re.escape(str(FIXTURES / name))):
        matport.mat.read(FIXTURES / name)
