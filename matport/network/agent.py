"""Reinforcement Learning Toolbox agents (``rl.agent.rlDDPGAgent``, ``rlTD3Agent``,
``rlSACAgent``, ``rlPPOAgent``, ``rlACAgent``, ``rlDQNAgent`` ...): their networks by role and
their observation / action specifications (no torch).

An agent keeps each function approximator (actor, critic, their targets) in a property, with
the network saved some objects deeper (representation -> model -> ``dlnetwork`` /
``DAGNetwork``; how deep depends on the release). The *role* of a network is the agent
property it sits under, without MATLAB's trailing ``_`` of private properties and with the
element index of an array of approximators: ``Actor``, ``Critic``, ``TargetActor``,
``TargetCritic``, ``Critic(2)`` (TD3's second critic). Its *short path* is
``<agent path>.<role>`` (``saved_agent.Actor``); when one role holds several networks they keep
their full paths. ``ObservationInfo`` / ``ActionInfo`` are ``rl.util.rlNumericSpec``
(``Dimension``, ``LowerLimit``, ``UpperLimit``) or ``rl.util.rlFiniteSetSpec`` (``Elements``)
objects, one per channel.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from matport.errors import NetworkError
from matport.mat.values import MatFile, MatObject, ObjectArray, walk
from matport.network.build import NETWORK_CLASSES

if TYPE_CHECKING:
    from matport.network.find import NetworkRef

AGENT_PACKAGE = "rl.agent."
_SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(\([0-9,]+\)|\{[0-9,]+\})?")


@dataclass(eq=False)
class Spec:
    """One observation or action channel: ``rlNumericSpec`` (``kind="numeric"``: limits, which
    broadcast over ``dimension``) or ``rlFiniteSetSpec`` (``"finite"``: the allowed
    ``elements``, one per row)."""

    kind: Literal["numeric", "finite"]
    name: str
    dimension: tuple[int, ...]
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    elements: np.ndarray | None = None


@dataclass(eq=False)
class AgentInfo:
    """An agent in a file: its path, class, networks by role (:class:`NetworkRef` with the
    short paths) and specifications."""

    path: str
    class_name: str
    networks: dict[str, NetworkRef] = field(default_factory=dict)
    observation_info: list[Spec] = field(default_factory=list)
    action_info: list[Spec] = field(default_factory=list)


def is_agent(value: Any) -> bool:
    """Whether ``value`` is a saved reinforcement-learning agent.

    Args:
        value: any value :func:`matport.read` returns.

    Returns:
        True for an object of a class in ``rl.agent``.
    """
    return isinstance(value, MatObject) and value.class_name.startswith(AGENT_PACKAGE)


def agent_objects(matfile: MatFile) -> dict[str, MatObject]:
    """Every agent in the file, top level or nested (e.g. in a Reinforcement Learning Designer
    session).

    Args:
        matfile: the file.

    Returns:
        Path -> agent object.
    """
    def descend(v: Any) -> bool:  # agents hold no agents; networks hold none either
        return not is_agent(v) and not (isinstance(v, MatObject)
                                        and v.class_name in NETWORK_CLASSES)

    return {path: v for path, v in matfile.walk(descend) if is_agent(v)}


def with_agent_paths(refs: list[NetworkRef], agents: dict[str, MatObject]
                     ) -> list[NetworkRef]:
    """``refs`` with the networks inside agents renamed to their short paths (see the module
    docstring); the others unchanged.

    Args:
        refs: what :func:`matport.network.find.find_networks` found (full paths).
        agents: :func:`agent_objects` of the same file.

    Returns:
        The refs, in the same order.
    """
    from dataclasses import replace

    short = {r.path: _short_path(r.path, agents) for r in refs}
    counts = Counter(s for s in short.values() if s is not None)
    return [replace(r, path=s) if (s := short[r.path]) is not None and counts[s] == 1 else r
            for r in refs]


def read_agents(matfile: MatFile, refs: list[NetworkRef]) -> list[AgentInfo]:
    """Every agent of ``matfile`` with its networks (``refs`` from ``find_networks``) and
    specifications.

    Args:
        matfile: the file.
        refs: its networks, as :func:`matport.network.find.find_networks` lists them.

    Returns:
        One :class:`AgentInfo` per agent, in file order.

    Raises:
        NetworkError: a specification that is malformed, naming the file and the path.
    """
    agents = agent_objects(matfile)
    out = []
    for path, obj in agents.items():
        info = AgentInfo(path, obj.class_name)
        for r in refs:
            owner = _owner(r.path, agents)
            if owner == path:
                info.networks[r.path[len(path) + 1:]] = r
        fields = _fields(obj)
        _add_shared_roles(info, fields, refs)
        for key, target in (("ObservationInfo", info.observation_info),
                            ("ActionInfo", info.action_info)):
            value = fields.get(key, fields.get(key + "_"))
            target.extend(_spec(e, f"{matfile.path}:{path}.{key}") for e in _elements(value))
        out.append(info)
    return out


def _add_shared_roles(info: AgentInfo, fields: dict[str, Any], refs: list[NetworkRef]) -> None:
    """Roles whose approximator holds the very object another role holds (a target saved as
    the same object as its source) are listed once by ``find_networks``: give them that ref."""
    by_id = {id(r.value): r for r in refs}
    for key, value in fields.items():
        role = key.rstrip("_")
        if role in info.networks or not isinstance(value, MatObject):
            continue
        shared = [by_id[id(v)] for _, v in walk(value, key) if id(v) in by_id]
        if len(shared) == 1:
            info.networks[role] = shared[0]


def _owner(path: str, agents: dict[str, MatObject]) -> str | None:
    """The innermost agent whose property holds ``path`` (None when none does)."""
    owners = [a for a in agents if path.startswith(a + ".") or path.startswith(a + "(")]
    return max(owners, key=len) if owners else None


def _short_path(path: str, agents: dict[str, MatObject]) -> str | None:
    owner = _owner(path, agents)
    if owner is None:
        return None
    rest = path[len(owner):].lstrip(".")
    if rest.startswith("any."):  # the agent saved through saveobj: its struct
        rest = rest[len("any."):]
    m = _SEGMENT.match(rest)
    if m is None:
        return None
    return f"{owner}.{m.group(1).rstrip('_')}{m.group(2) or ''}"


def _fields(obj: MatObject) -> dict[str, Any]:
    payload = obj.props.get("any")
    return dict(payload) if obj.saveobj and isinstance(payload, dict) else obj.props


def _elements(value: Any) -> list[Any]:
    if isinstance(value, MatObject):
        return [value]
    if isinstance(value, ObjectArray):
        return list(value.elements)
    return []


def _spec(obj: Any, where: str) -> Spec:
    fields = _fields(obj) if isinstance(obj, MatObject) else {}
    finite = "Elements" in fields
    dims = np.asarray(fields.get("Dimension", np.zeros(0)), dtype=float).ravel()
    if dims.size == 0 or np.any(dims < 0) or np.any(dims != np.round(dims)):
        raise NetworkError(f"{where}: specification without a valid Dimension")
    name = fields.get("Name", "")
    spec = Spec("finite" if finite else "numeric", name if isinstance(name, str) else "",
                tuple(int(d) for d in dims))
    if finite:
        elements = fields["Elements"]
        if isinstance(elements, np.ndarray) and elements.dtype == object:
            elements = np.array([np.ravel(e) for e in elements.ravel(order="F")], dtype=float)
        spec.elements = np.asarray(elements, dtype=float).reshape(-1, 1) if np.ndim(
            elements) < 2 or min(np.shape(elements)) == 1 else np.asarray(elements, float)
        return spec
    for key, attr in (("LowerLimit", "lower"), ("UpperLimit", "upper")):
        v = fields.get(key)
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf" and v.size:
            setattr(spec, attr, v.astype(np.float64))
    return spec


def require_agent(agents: list[AgentInfo], source: str, variable: str | None) -> AgentInfo:
    """The one agent of the file (or the one at ``variable``).

    Args:
        agents: :func:`read_agents` of the file.
        source: the file, for messages.
        variable: the agent's path, or None when the file holds one agent.

    Returns:
        The agent.

    Raises:
        NetworkError: no agent, no agent at ``variable``, or several without ``variable``.
    """
    chosen = [a for a in agents if variable is None or a.path == variable]
    listing = ", ".join(f"{a.path} ({a.class_name})" for a in agents) or "none"
    if not chosen:
        where = f" at {variable!r}" if variable is not None else ""
        raise NetworkError(f"{source}: no reinforcement-learning agent{where} (agents: {listing})")
    if len(chosen) > 1:
        raise NetworkError(f"{source}: the file holds {len(chosen)} agents ({listing}); "
                           "choose one with variable=")
    return chosen[0]

