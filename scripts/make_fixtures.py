"""Regenerate the small MAT-files in ``fixtures/`` (deterministic: fixed seeds, fixed dates).

    python scripts/make_fixtures.py [--out fixtures]

Every file is written by ``matport.mat.writer`` as MATLAB lays it out; the corrupt variants are
made from those by truncating or patching bytes. To add a fixture, add an entry to ``FIXTURES``
(name -> function returning the variables, writer options). The SeriesNetwork is spelled out
object by object below; the other network kinds go through ``matport.network.encode``
(typed ``Network`` -> MATLAB objects).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from matport.mat.values import (
    Categorical,
    MatObject,
    ObjectArray,
    Struct,
    StructArray,
    Table,
)
from matport.mat.writer import String, write
from matport.network.build import build_network
from matport.network.encode import encode_network
from matport.synth.agent import agent_cases
from matport.synth.shallow import shallow_cases

ROOT = Path(__file__).resolve().parents[1]

CREATED = dt.datetime(2024, 5, 6, 7, 8, 9)
LAYER = "nnet.cnn.layer."
CLASS_NAMES = ["circle", "square", "triangle"]


def scalar(x: float) -> np.ndarray:
    return np.array([[float(x)]])


def row(*xs: float) -> np.ndarray:
    return np.array([[float(x) for x in xs]])


def cell(*items: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out.reshape(shape or (1, len(items)), order="F")


def learnable(value: np.ndarray, initializer: str, l2: float = 1.0) -> Struct:
    """A learnable parameter struct as Deep Learning Toolbox saves it."""
    return Struct(
        Version=scalar(2), Value=value, LearnRateFactor=scalar(1), L2Factor=scalar(l2),
        Initializer=Struct(Version=scalar(1),
                           Class=f"nnet.internal.cnn.layer.learnable.initializer.{initializer}",
                           ConstructorArguments=np.zeros((0, 0))),
    )


def layer(cls: str, **fields: Any) -> MatObject:
    return MatObject(LAYER + cls, {"any": Struct(**fields)}, saveobj=True)


def series_network(seed: int = 0) -> MatObject:
    """An 8x8 grey-image classifier: input (zerocenter), 3x3 conv with 4 filters, ReLU, fully
    connected to 3 classes, softmax, classification output. Field sets follow the struct
    Versions of class-fields.txt; the numbers are random."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    conv_w = rng.standard_normal((3, 3, 1, 4)).astype(f32) * f32(0.3)
    fc_w = rng.standard_normal((6, 6, 4, 3)).astype(f32) * f32(0.1)
    layers = [
        layer("ImageInputLayer", Version=scalar(5), Name="imageinput", InputSize=row(8, 8, 1),
              Normalization=Struct(Version=scalar(2), Type="zerocenter", ImageSize=row(8, 8, 1),
                                   AverageImage=rng.random((8, 8)).astype(f32),
                                   NumTrainingSamples=scalar(0)),
              Augmentations=np.zeros((1, 0)), NormalizationDimension="auto",
              SplitComplexInputs=np.array([[False]])),
        layer("Convolution2DLayer", Version=scalar(8), Name="conv", FilterSize=row(3, 3),
              NumChannels=scalar(1), NumFilters=scalar(4), Stride=row(1, 1),
              DilationFactor=row(1, 1), PaddingMode="manual", PaddingSize=row(0, 0, 0, 0),
              PaddingValue=scalar(0), Weights=learnable(conv_w, "Glorot"),
              Bias=learnable(rng.standard_normal((1, 1, 4)).astype(f32), "Zeros", l2=0.0),
              ConvolveOverTime=np.array([[False]]), DistributeOverTime=np.array([[False]]),
              ConvolutionDimIdx=row(1, 2), CudnnGPUAlgoForward=scalar(-1)),
        layer("ReLULayer", Version=scalar(1), Name="relu"),
        layer("FullyConnectedLayer", Version=scalar(3), Name="fc", InputSize=row(6, 6, 4),
              OutputSize=row(1, 1, 3), Weights=learnable(fc_w, "Glorot"),
              Bias=learnable(rng.standard_normal((1, 1, 3)).astype(f32), "Zeros", l2=0.0)),
        layer("SoftmaxLayer", Version=scalar(4), Name="softmax", ChannelDim=scalar(3),
              VectorFormat=np.array([[False]])),
        layer("ClassificationOutputLayer", Version=scalar(4), Name="classoutput",
              ObservationDim=scalar(4), NumClasses=scalar(3),
              Categories=Categorical(CLASS_NAMES, np.array([[1], [2], [3]], dtype=np.uint8)),
              ClassWeights=np.zeros((0, 0))),
    ]
    array = ObjectArray(LAYER + "Layer", (len(layers), 1), layers)
    return MatObject("SeriesNetwork", {"any": Struct(Version=scalar(1), Layers=array)},
                     saveobj=True)


LAYER_DEFAULTS: dict[str, dict[str, Any]] = {
    **{LAYER + c: {"Version": scalar(1)} for c in (
        "Layer", "ImageInputLayer", "Convolution2DLayer", "ReLULayer", "FullyConnectedLayer",
        "SoftmaxLayer")},
    LAYER + "ClassificationOutputLayer": {"LossFunction": "crossentropyex", "Version": scalar(1)},
}
"""Class defaults as MATLAB stores them for these layers (merged into each layer on reading)."""


def plain_values() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {
        "matrix": rng.standard_normal((3, 4)),
        "volume": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "counts": np.array([[1, 2, 3]], dtype=np.int32),
        "mask": np.array([[True, False, True]]),
        "complex": np.array([[1 + 2j, 3 - 4j]]),
        "label": "hello",
        "unicode": "héllo ☃",
        "letters": np.array([["a", "b"], ["c", "d"]]),
        "empty": np.zeros((0, 0)),
        "cells": cell(scalar(1), "two", cell("nested")),
        "options": Struct(rate=scalar(0.01), name="adam", sizes=row(8, 16)),
        "records": StructArray((1, 2), ("id", "tag"), [Struct(id=scalar(1), tag="a"),
                                                       Struct(id=scalar(2), tag="b")]),
    }


def no_network() -> dict[str, Any]:
    """Variables a training script leaves beside a network, but no network."""
    rng = np.random.default_rng(2)
    return {
        "images": rng.integers(0, 255, (8, 8, 1, 4), dtype=np.uint8),
        "labels": Categorical(CLASS_NAMES, np.array([[1], [3], [2], [1]], dtype=np.uint8)),
        "names": String(cell("first", "second")),
        "results": Table({"Epoch": np.array([[1.0], [2.0]]), "Loss": np.array([[0.9], [0.4]])},
                         nrows=2),
        "options": Struct(MaxEpochs=scalar(2), Solver="sgdm"),
    }


def network_file() -> dict[str, Any]:
    return {"net": series_network(), "classNames": String(cell(*CLASS_NAMES))}


def encoded_network(kind: str) -> dict[str, Any]:
    """The fixture network as another kind, through matport.network.encode. A dlnetwork has
    no output layer."""
    net = build_network(series_network(), path="net")
    if kind == "dlnetwork":
        layers = [lay for lay in net.layers if lay.type != "ClassificationOutputLayer"]
        net = dataclasses.replace(net, layers=layers, connections=net.connections[:-1],
                                  class_names=None)
    return {"net": encode_network(dataclasses.replace(net, kind=kind))}


def layer_cases() -> dict[str, Any]:
    """Every layer kind matport converts: one small network per case of
    matport/synth/layer_cases.py, each as a variable named after its case (the suite checks them
    against its reference)."""
    from matport.synth import networks as matlab_networks
    from matport.synth.layer_cases import CASES

    matlab_networks.RNG.bit_generator.state = np.random.default_rng(20261126).bit_generator.state
    return {name: encode_network(CASES[name]()) for name in sorted(CASES)}


FIXTURES: dict[str, tuple[Callable[[], dict[str, Any]], dict[str, Any]]] = {
    "plain": (plain_values, {}),
    "series_net": (network_file, {"defaults": LAYER_DEFAULTS}),
    "no_network": (no_network, {}),
    "dag_net": (lambda: encoded_network("DAGNetwork"), {}),
    "dlnetwork": (lambda: encoded_network("dlnetwork"), {}),
    "layers": (layer_cases, {}),
    "shallow": (shallow_cases, {}),
    "agents": (agent_cases, {}),
}
"""name -> (variables, writer options); written as ``<name>_v7.mat`` and ``<name>_v73.mat``."""


def _subsystem_blob_offset(raw: bytes) -> int:
    """Where the FileWrapper__ metadata blob starts in an uncompressed v7 file."""
    pos = raw.index(b"FileWrapper__") + len("FileWrapper__")
    pos += -(pos - 128 - 8) % 8  # realign on the subsystem stream's 8-byte grid
    while struct.unpack_from("<I", raw, pos)[0] != 2:  # walk to the first miUINT8 data tag
        pos += 8
    return pos + 8


def corrupt_variants(out: Path) -> dict[str, bytes]:
    """Broken files for bad-input tests, made from the network fixture."""
    good = (out / "series_net_v7.mat").read_bytes()
    good73 = (out / "series_net_v73.mat").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    oversized = bytearray(good)
    struct.pack_into("<I", oversized, 132, 0x7FFFFFF0)  # first element claims ~2 GB
    plain = out / "series_net_uncompressed.tmp"
    write(plain, network_file(), compress=False, defaults=LAYER_DEFAULTS, created=CREATED)
    bad_version = bytearray(plain.read_bytes())
    plain.unlink()
    struct.pack_into("<I", bad_version, _subsystem_blob_offset(bytes(bad_version)), 99)
    return {
        "corrupt_truncated_v7.mat": good[: len(good) * 3 // 5],
        "corrupt_bitflip_v7.mat": bytes(flipped),
        "corrupt_oversized_length_v7.mat": bytes(oversized),
        "corrupt_subsystem_version_v7.mat": bytes(bad_version),
        "corrupt_truncated_v73.mat": good73[: len(good73) // 2],
        "not_a_mat_file.mat": b"This is a text file, not a MATLAB MAT-file.\n" * 4,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "fixtures")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for name, (variables, options) in FIXTURES.items():
        for fmt, suffix in (("v7", "v7"), ("v7.3", "v73")):
            write(out / f"{name}_{suffix}.mat", variables(), format=fmt,  # type: ignore[arg-type]
                  created=CREATED, **options)
    for name, data in corrupt_variants(out).items():
        (out / name).write_bytes(data)
    for path in sorted(out.glob("*.mat")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        print(f"{path.name:40s} {path.stat().st_size:8d} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()
