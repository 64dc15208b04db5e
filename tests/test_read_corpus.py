"""Issue 2 on real files: every corpus network reads, with the layers MANIFEST.tsv lists, and
every learnable array equals MATLAB's own ONNX export of it bit for bit."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import matport
from matport.network.build import build_network
from matport.network.find import find_networks, read_network
from tests.support.paths import corpus_file, corpus_manifest

NETWORK_ROWS = [r for r in corpus_manifest()
                if r["kind"].startswith("mat") and "layer objs" in r["what"]
                and not r["what"].startswith("non-net")]
NON_NETWORK_ROWS = [r for r in corpus_manifest() if r["what"].startswith("non-net")]


def manifest_counts(what: str, section: str) -> Counter[str]:
    m = re.search(section + r": ([^;]*)", what)
    if not m:
        return Counter()
    return Counter({name: int(n) for name, n in re.findall(r"([\w.]+) x(\d+)", m.group(1))})


@pytest.mark.skipif(not NETWORK_ROWS, reason="corpus not available")
@pytest.mark.parametrize("row", NETWORK_ROWS, ids=lambda r: r["file"])
def test_corpus_network_reads_with_manifest_layers(row: dict[str, str]) -> None:
    path = corpus_file(row["file"])
    expected = manifest_counts(row["what"], "layer objs")
    others = manifest_counts(row["what"], "other classes")
    matfile = matport.read(path)
    # The object table holds exactly the layer objects the manifest counted ...
    table = Counter({k.rsplit(".", 1)[-1]: v for k, v in matfile.object_counts.items()
                     if k.rsplit(".", 1)[-1] in expected})
    assert table == expected
    # ... and the networks reachable from the variables hold no layer the manifest lacks.
    refs = find_networks(matfile)
    assert refs, "no network found"
    found: Counter[str] = Counter()
    for ref in refs:
        net = build_network(ref.value, str(path), ref.path)
        assert net.layers
        names = [lay.name for lay in net.layers]
        assert len(set(names)) == len(names)
        found.update(lay.type for lay in net.layers if lay.supported)
        # a layer of a class outside the toolbox is kept as "unsupported", with its raw fields
        for lay in net.layers:
            if not lay.supported:
                assert lay.class_name in others and lay.raw
    assert set(found) <= set(expected)
    first_size = re.search(r"first InputSize=\[([^\]]*)\]", row["what"])
    if first_size:
        want = tuple(int(float(x)) for x in first_size.group(1).split(","))
        net = build_network(refs[-1].value)
        inputs = net.input_layers
        assert inputs and inputs[0].params["InputSize"] == want


@pytest.mark.parametrize("row", NON_NETWORK_ROWS, ids=lambda r: r["file"])
def test_corpus_file_without_network_reads_and_says_so(row: dict[str, str]) -> None:
    path = corpus_file(row["file"])
    assert len(matport.read(path)) > 0
    with pytest.raises(matport.NetworkError, match="holds no network"):
        read_network(path)


ONNX_PAIRS = [
    ("ccnmaastricht__Object_recognition/net.mat", "ccnmaastricht__Object_recognition/net.onnx"),
    ("JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__ModeloReciclarIA_Entrenado.mat",
     "JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__cv_reciclaria.onnx"),
    ("Nisitka__AllMatLab/newNet.mat", "Nisitka__AllMatLab/net.onnx"),
]


def onnx_layouts(arr: np.ndarray) -> list[np.ndarray]:
    """The documented MATLAB -> ONNX permutations an array may have gone through."""
    out = [arr.ravel(order="F")]  # vectors: bias, BN statistics, 1x1xC
    if arr.ndim == 4:
        out.append(arr.transpose(3, 2, 0, 1))  # H x W x C x F -> F x C x H x W
    if arr.ndim == 2:
        out += [arr, arr.T]
    return [np.ascontiguousarray(a) for a in out]


@pytest.mark.parametrize("mat, onnx_file", ONNX_PAIRS, ids=lambda p: p.split("/")[0])
def test_learnables_equal_onnx_initializers_bit_for_bit(mat: str, onnx_file: str) -> None:
    net = read_network(corpus_file(mat))
    model = onnx.load(str(corpus_file(onnx_file)))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    by_bytes = {np.ascontiguousarray(a).tobytes(): name for name, a in inits.items()}
    checked = 0
    for lay in net.layers:
        for key, arr in {**lay.learnables, **lay.state}.items():
            matches = [by_bytes.get(c.tobytes()) for c in onnx_layouts(arr)]
            assert any(matches), f"{lay.name}.{key} {arr.shape} has no equal ONNX initializer"
            checked += 1
    assert checked >= 6
