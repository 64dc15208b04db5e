"""Find the networks a MATLAB file holds, top level or nested, and pick one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from matport.errors import NetworkError
from matport.mat import read
from matport.mat.values import MatFile, MatObject, ObjectArray, Struct
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
    arrays, Deep Network Designer parameter structs, shallow ``network`` objects), with the
    path to reach it; networks inside a reinforcement-learning agent get short paths such as
    ``saved_agent.Actor`` (:mod:`matport.network.agent`)."""
    from matport.network.agent import agent_objects, with_agent_paths
    from matport.network.designer import is_designer_params
    from matport.network.shallow import SHALLOW_CLASS, is_shallow_network

    def kind(v: Any) -> str | None:
        if isinstance(v, MatObject) and v.class_name in NETWORK_CLASSES:
            return v.class_name
        if is_shallow_network(v):
            return SHALLOW_CLASS
        if _is_layer_array(v):
            return "nnet.cnn.layer.Layer"
        if isinstance(v, Struct) and is_designer_params(v):
            return "struct (Deep Network Designer parameters)"
        return None

    refs = [NetworkRef(path, k, v) for path, v in matfile.walk(lambda v: kind(v) is None)
            if (k := kind(v)) is not None]
    return with_agent_paths(refs, agent_objects(matfile)) if refs else refs


def network_from_ref(ref: NetworkRef, source: str = "") -> Network:
    """The typed model of a network :func:`find_networks` found in the file ``source``."""
    from matport.network.designer import network_from_designer_struct
    from matport.network.shallow import is_shallow_network, read_shallow

    if is_shallow_network(ref.value):
        return read_shallow(ref.value, source=source, path=ref.path)
    if isinstance(ref.value, Struct):
        return network_from_designer_struct(ref.value, source=source, path=ref.path)
    return build_network(ref.value, source=source, path=ref.path)


def read_network(path: str | os.PathLike[str], variable: str | None = None) -> Network:
    """Read the one network in ``path`` (or the one at ``variable``) as a typed model."""
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
    return network_from_ref(chosen[0], spath)


def _is_layer_array(v: Any) -> bool:
    return (
        isinstance(v, ObjectArray)
        and bool(v.elements)
        and all(e.class_name.startswith(LAYER_PACKAGE) for e in v.elements)
    )
