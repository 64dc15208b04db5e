"""``matport.load_agent``: a saved Reinforcement Learning Toolbox agent -> its networks as
PyTorch modules by role, with its observation and action specifications.

```python
agent = matport.load_agent("agent.mat")          # variable="saved_agent" when several
agent.networks["Actor"], agent.networks["Critic"], agent.networks["TargetActor"]
agent.action_info[0].lower, agent.action_info[0].upper
action = agent.act(observation)                  # N x obs features -> N x action features
```

Each network is what :func:`matport.load` returns for it (``matport.load(path,
variable="saved_agent.Actor")`` gives the same module). :meth:`Agent.act` is the greedy policy of
the agents whose policy is deterministic: DDPG and TD3 (the actor's output saturated to the action
limits, as MATLAB's ``getAction``) and DQN (the action element with the largest Q value).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from matport.errors import ConversionError
from matport.mat import read
from matport.network.agent import Spec, read_agents, require_agent
from matport.network.find import find_networks, network_from_ref

DETERMINISTIC_ACTOR_AGENTS = frozenset({"rlDDPGAgent", "rlTD3Agent"})
Q_AGENTS = frozenset({"rlDQNAgent"})


@dataclass(eq=False)
class Agent:
    """A converted agent: ``networks`` maps roles (``Actor``, ``Critic``, ``TargetActor``,
    ``TargetCritic``, ``Critic(2)`` ...) to modules; the specifications are MATLAB's."""

    source: str
    path: str
    class_name: str
    networks: dict[str, nn.Module] = field(default_factory=dict)
    observation_info: list[Spec] = field(default_factory=list)
    action_info: list[Spec] = field(default_factory=list)

    def act(self, *observations: Any) -> torch.Tensor:
        """The agent's greedy action for a batch of observations (one channel each, in
        ``observation_info`` order, one sample per row: ``N x features``).

        Args:
            observations: numpy arrays or tensors, one per observation channel.

        Returns:
            N x action features: the actor's output clipped to the action limits (DDPG,
            TD3), or the element of the finite action set with the largest Q value (DQN).

        Raises:
            ConversionError: an agent whose policy is stochastic (PPO, SAC, AC): run
            ``networks["Actor"]`` and sample from its output yourself.
        """
        kind = self.class_name.rsplit(".", 1)[-1]
        if kind in DETERMINISTIC_ACTOR_AGENTS and "Actor" in self.networks:
            actor = self.networks["Actor"]
            out = actor(*_inputs(actor, observations))
            return _saturate(out, self.action_info[0]) if self.action_info else out
        action = self.action_info[0] if self.action_info else None
        if kind in Q_AGENTS and "Critic" in self.networks and action is not None and (
                action.elements is not None):
            critic = self.networks["Critic"]
            q = critic(*_inputs(critic, observations))
            elements = torch.as_tensor(action.elements, dtype=q.dtype)
            return elements[q.argmax(1)]
        raise ConversionError(
            f"{self.source}:{self.path}: {kind} has a stochastic or unsupported policy; "
            f"run agent.networks[...] ({', '.join(self.networks)}) and sample yourself")


def load_agent(path: str | os.PathLike[str], variable: str | None = None) -> Agent:
    """Convert the networks of a saved reinforcement-learning agent.

    Args:
        path: the ``.mat`` file.
        variable: the agent's path in the file (``saved_agent``, ``session.Agents{1}``) when
            it holds several agents.

    Returns:
        The :class:`Agent`: its networks by role, its observation and action specifications.

    Raises:
        NetworkError: no agent (or none at ``variable``), several agents without ``variable``.
        ConversionError: a network of the agent that does not convert.
    """
    from matport.convert.api import load

    source = os.fspath(path)
    matfile = read(source)
    info = require_agent(read_agents(matfile, find_networks(matfile)), source, variable)
    return Agent(source, info.path, info.class_name,
                 {role: load(network_from_ref(ref, source)) for role, ref in
                  info.networks.items()},
                 info.observation_info, info.action_info)


def _inputs(model: nn.Module, observations: tuple[Any, ...]) -> list[torch.Tensor]:
    info = getattr(model, "matport", None)
    if len(observations) == 1 and info is not None:
        return [info.preprocess(observations[0])]
    return [torch.as_tensor(o, dtype=torch.float32) for o in observations]


def _saturate(action: torch.Tensor, spec: Spec) -> torch.Tensor:
    """MATLAB's ``saturate``: clip to ``LowerLimit`` / ``UpperLimit`` (a scalar limit applies to
    every feature)."""
    if spec.lower is not None:
        action = torch.maximum(action, torch.as_tensor(spec.lower.ravel(), dtype=action.dtype))
    if spec.upper is not None:
        action = torch.minimum(action, torch.as_tensor(spec.upper.ravel(), dtype=action.dtype))
    return action
