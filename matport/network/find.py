"""Find the networks a MATLAB file holds, top level or nested, and pick one."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from matport.errors import NetworkError
from matport.mat import read
from matport.mat.values import MatFile, MatObject, ObjectArray, Struct
from matport.network.build import LAYER_PACKAGE, NETWORK_CLASSES, build_network
from matport.network.model import Network

log = logging.getLogger(__name__)

LAYER_ARRAY = "nnet.cnn.layer.Layer"
#: Classes that describe an architecture rather than a trained network: the layers a network is
#: built from (``save net.mat net layers``) or assembled into a graph before training.
UNTRAINED_CLASSES = frozenset({"nnet.cnn.LayerGraph", LAYER_ARRAY})


@dataclass(frozen=True)
class NetworkRef:
    """Where a network sits in a file: its variable path and MATLAB class."""

    path: str
    class_name: str
    value: Any

    @property
    def trained(self) -> bool:
        """True for a trained network (SeriesNetwork, DAGNetwork, dlnetwork, Deep Network
        Designer parameters), False for a LayerGraph or layer array (an architecture)."""
        return self.class_name not in UNTRAINED_CLASSES

    def __str__(self) -> str:
        return f"{self.path} ({self.class_name}{'' if self.trained else ', untrained'})"


def find_networks(matfile: MatFile) -> list[NetworkRef]:
    """Every network in the file (SeriesNetwork, DAGNetwork, dlnetwork, LayerGraph, layer
    arrays, Deep Network Designer parameter structs, shallow ``network`` objects), with the
    path to reach it; networks inside a reinforcement-learning agent get short paths such as
    ``saved_agent.Actor`` (:mod:`matport.network.agent`)."""
    from matport.network.agent import agent_objects, with_agent_paths

    refs = [NetworkRef(path, k, v) for path, v in matfile.walk(lambda v: _kind(v) is None)
            if (k := _kind(v)) is not None]
    # only a network inside some value can be inside an agent: else no second walk
    nested = any("." in r.path or "(" in r.path for r in refs)
    return with_agent_paths(refs, agent_objects(matfile)) if nested else refs


def _kind(v: Any) -> str | None:
    """The kind of network ``v`` is (its class, for a network object), or None."""
    if type(v) is np.ndarray or type(v) is str:  # most values: never a network
        return None
    from matport.network.designer import is_designer_params
    from matport.network.shallow import SHALLOW_CLASS, is_shallow_network

    if isinstance(v, MatObject) and v.class_name in NETWORK_CLASSES:
        return v.class_name
    if is_shallow_network(v):
        return SHALLOW_CLASS
    if _is_layer_array(v):
        return LAYER_ARRAY
    if isinstance(v, Struct) and is_designer_params(v):
        return "struct (Deep Network Designer parameters)"
    return None


def network_from_ref(ref: NetworkRef, source: str = "") -> Network:
    """The typed model of a network :func:`find_networks` found in the file ``source``."""
    from matport.network.designer import network_from_designer_struct
    from matport.network.shallow import is_shallow_network, read_shallow

    if is_shallow_network(ref.value):
        return read_shallow(ref.value, source=source, path=ref.path)
    if isinstance(ref.value, Struct):
        return network_from_designer_struct(ref.value, source=source, path=ref.path)
    return build_network(ref.value, source=source, path=ref.path)


def choose_network(refs: list[NetworkRef], where: str = "file") -> NetworkRef:
    """The network a file means when no variable is named.

    Args:
        refs: the networks :func:`find_networks` found (at least one).
        where: the file, for messages.

    Returns:
        The only network; or the only trained one when the others are untrained layer arrays or
        layer graphs (the choice is logged at INFO level).

    Raises:
        NetworkError: several trained networks (or several untrained ones and no trained one),
            listing them; choose one with ``variable=``.
    """
    trained = [r for r in refs if r.trained]
    if len(refs) == 1:
        return refs[0]
    if len(trained) == 1:
        others = ", ".join(str(r) for r in refs if r is not trained[0])
        log.info("%s: chose %s, the only trained network (also in the file: %s)",
                 where, trained[0], others)
        return trained[0]
    listing = ", ".join(str(r) for r in refs)
    raise NetworkError(f"{where}: the file holds {len(refs)} networks ({listing}); "
                       "choose one with variable=")


def read_network(path: str | os.PathLike[str], variable: str | None = None) -> Network:
    """Read a network of a MATLAB file as a typed model.

    Args:
        path: a ``.mat`` file (v7 or v7.3).
        variable: the variable path of the network (``"net"``, ``"agent.Critic"``); None picks
            the file's network as :func:`choose_network` does.

    Returns:
        The :class:`~matport.network.model.Network`.

    Raises:
        NetworkError: no network (at ``variable``), several when none is named, or one that
            cannot be read.
    """
    spath = os.fspath(path)
    matfile = read(spath)
    if variable is not None:
        kind = _kind(matfile[variable]) if variable in matfile else None
        if kind is not None:  # a variable of the file: what find_networks would find there
            return network_from_ref(NetworkRef(variable, kind, matfile[variable]), spath)
        refs = find_networks(matfile)
        chosen = [r for r in refs if r.path == variable]
        if not chosen:
            listing = ", ".join(r.path for r in refs) or "none"
            raise NetworkError(f"{spath}: no network at {variable!r} (networks: {listing})")
        return network_from_ref(chosen[0], spath)
    refs = find_networks(matfile)
    if not refs:
        names = ", ".join(f"{k} ({type(v).__name__})" for k, v in matfile.items()) or "none"
        raise NetworkError(f"{spath}: the file holds no network (variables: {names})")
    return network_from_ref(choose_network(refs, spath), spath)


def _is_layer_array(v: Any) -> bool:
    return (
        isinstance(v, ObjectArray)
        and bool(v.elements)
        and all(e.class_name.startswith(LAYER_PACKAGE) for e in v.elements)
    )
