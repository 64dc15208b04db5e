"""Find the networks a MATLAB file holds, top level or nested, and pick one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from matport.errors import NetworkError
from matport.mat import read
from matport.mat.values import MatFile, MatObject, ObjectArray, Struct, StructArray, Table
from matport.network.build import LAYER_PACKAGE, NETWORK_CLASSES, build_network
from matport.network.model import Network


@dataclass(frozen=True)
class NetworkRef:
    """Where a network sits in a file: its variable path and MATLAB class."""

    path: str
    class_name: str
    value: Any


def find_networks(matfile: MatFile) -> list[NetworkRef]:
    """Every network in the file (SeriesNetwork, DAGNetwork, dlnetwork, LayerGraph, layer
    arrays, Deep Network Designer parameter structs), with the path to reach it."""
    from matport.network.designer import is_designer_params

    found: list[NetworkRef] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(k, v) for k, v in reversed(list(matfile.items()))]
    while stack:
        path, v = stack.pop()
        if isinstance(v, MatObject | ObjectArray | Struct | StructArray | Table | np.ndarray):
            if id(v) in seen:
                continue
            seen.add(id(v))
        if isinstance(v, MatObject) and v.class_name in NETWORK_CLASSES:
            found.append(NetworkRef(path, v.class_name, v))
            continue
        if _is_layer_array(v):
            found.append(NetworkRef(path, "nnet.cnn.layer.Layer", v))
            continue
        if isinstance(v, Struct) and is_designer_params(v):
            found.append(NetworkRef(path, "struct (Deep Network Designer parameters)", v))
            continue
        stack.extend(reversed(_children(path, v)))
    return found


def read_network(path: str | os.PathLike[str], variable: str | None = None) -> Network:
    """Read the one network in ``path`` (or the one at ``variable``) as a typed model."""
    from matport.network.designer import network_from_designer_struct

    spath = os.fspath(path)
    matfile = read(spath)
    refs = find_networks(matfile)
    if variable is not None:
        chosen = [r for r in refs if r.path == variable]
        if not chosen:
            listing = ", ".join(r.path for r in refs) or "none"
            raise NetworkError(f"{spath}: no network at {variable!r} (networks: {listing})")
    else:
        chosen = refs
    if not chosen:
        names = ", ".join(f"{k} ({type(v).__name__})" for k, v in matfile.items()) or "none"
        raise NetworkError(f"{spath}: the file holds no network (variables: {names})")
    if len(chosen) > 1:
        listing = ", ".join(f"{r.path} ({r.class_name})" for r in chosen)
        raise NetworkError(f"{spath}: the file holds {len(chosen)} networks ({listing}); "
                           "choose one with variable=")
    ref = chosen[0]
    if isinstance(ref.value, Struct):
        return network_from_designer_struct(ref.value, source=spath, path=ref.path)
    return build_network(ref.value, source=spath, path=ref.path)


def _is_layer_array(v: Any) -> bool:
    return (
        isinstance(v, ObjectArray)
        and bool(v.elements)
        and all(e.class_name.startswith(LAYER_PACKAGE) for e in v.elements)
    )


def _children(path: str, v: Any) -> list[tuple[str, Any]]:
    if isinstance(v, Struct):
        return [(f"{path}.{k}", x) for k, x in v.items()]
    if isinstance(v, MatObject):
        return [(f"{path}.{k}", x) for k, x in v.props.items()]
    if isinstance(v, StructArray | ObjectArray):
        return [(f"{path}({i + 1})", x) for i, x in enumerate(v.elements)]
    if isinstance(v, Table):
        return [(f"{path}.{k}", x) for k, x in v.columns.items()]
    if isinstance(v, np.ndarray) and v.dtype == object:
        return [(f"{path}{{{i + 1}}}", x) for i, x in enumerate(v.ravel(order="F"))]
    return []
