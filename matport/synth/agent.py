"""Synthetic Reinforcement Learning Toolbox agents, as MATLAB saves them: an agent object whose
properties hold the function approximators (each wrapping its network some objects deep), the
target copies, the options and the observation / action specifications.

Two layouts: the one of the published ``rlDDPGAgent`` source of R2020 (private properties
``Actor``, ``Critic``, ``TargetActor``, ``TargetCritic`` holding
``rl.representation.*Representation`` objects whose ``Model`` holds the network) and a newer
one (``Actor_``, ``Critic_`` ... holding ``rl.function.*`` approximators with ``Model_``; TD3's
two critics as an object array). Weights come from :func:`mlp_weights` so that tests can
compute the reference themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from matport.mat.values import MatObject, ObjectArray, Struct
from matport.mat.writer import String
from matport.network.encode import encode_network
from matport.network.model import Connection, Layer, Network, Normalization


def mlp_weights(seed: int, sizes: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W, b)`` per fully connected layer of an MLP with these layer sizes (W out x in)."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((o, i)).astype(np.float32) / np.sqrt(i),
             rng.standard_normal((o, 1)).astype(np.float32) * 0.1)
            for i, o in zip(sizes[:-1], sizes[1:], strict=True)]


def mlp(seed: int, sizes: Sequence[int], last: str | None) -> MatObject | ObjectArray:
    """A ``dlnetwork``: feature input, fully connected layers with ReLU between them, then
    ``last`` (``TanhLayer``, ``SoftmaxLayer`` or None)."""
    weights = mlp_weights(seed, sizes)
    layers = [Layer("obs", "nnet.cnn.layer.FeatureInputLayer",
                    params={"InputSize": (sizes[0],)}, normalization=Normalization())]
    for k, (w, b) in enumerate(weights):
        layers.append(Layer(f"fc{k + 1}", "nnet.cnn.layer.FullyConnectedLayer",
                            params={"InputSize": (w.shape[1],), "OutputSize": (w.shape[0],)},
                            learnables={"Weights": w, "Bias": b}))
        if k < len(weights) - 1:
            layers.append(Layer(f"relu{k + 1}", "nnet.cnn.layer.ReLULayer"))
    if last is not None:
        layers.append(Layer("out", "nnet.cnn.layer." + last))
    connections = [Connection(a.name, b.name) for a, b in zip(layers, layers[1:], strict=False)]
    return encode_network(Network("dlnetwork", layers, connections))


def numeric_spec(dimension: int, lower: Any, upper: Any, name: str) -> MatObject:
    """An ``rl.util.rlNumericSpec`` of ``dimension`` x 1."""
    return MatObject("rl.util.rlNumericSpec", {
        "LowerLimit": np.asarray(lower, float).reshape(-1, 1),
        "UpperLimit": np.asarray(upper, float).reshape(-1, 1),
        "Name": String(name), "Description": String(""),
        "Dimension": np.array([[float(dimension), 1.0]]), "DataType": "double"})


def finite_spec(elements: Sequence[float], name: str) -> MatObject:
    """An ``rl.util.rlFiniteSetSpec`` of scalar elements."""
    return MatObject("rl.util.rlFiniteSetSpec", {
        "Elements": np.asarray(elements, float).reshape(-1, 1), "Name": String(name),
        "Description": String(""), "Dimension": np.array([[1.0, 1.0]]), "DataType": "double"})


def _options(cls: str, **values: float) -> MatObject:
    return MatObject(cls, {k: np.array([[v]]) for k, v in values.items()})


def ddpg_agent(obs: MatObject, act: MatObject, seed: int, shared_targets: bool = False
               ) -> MatObject:
    """An ``rl.agent.rlDDPGAgent`` in the R2020 layout (see the module docstring);
    ``shared_targets``: the targets are the very objects of the actor and critic (an agent
    saved before training, ``TargetActor = Actor``)."""
    n_obs, n_act = int(obs.props["Dimension"][0, 0]), int(act.props["Dimension"][0, 0])

    def representation(kind: str, network: Any) -> MatObject:
        model = MatObject("rl.representation.model.rlDLNetworkModel", {"Network": network})
        return MatObject(f"rl.representation.{kind}", {
            "Options_": _options("rl.option.rlRepresentationOptions", LearnRate=1e-3),
            "ObservationInfo_": obs, "ActionInfo_": act, "Model": model})

    actor = representation("rlDeterministicActorRepresentation",
                           mlp(seed, [n_obs, 16, n_act], "TanhLayer"))
    critic = representation("rlQValueRepresentation", mlp(seed + 1, [n_obs + n_act, 16, 1], None))
    target_critic = critic if shared_targets else representation(
        "rlQValueRepresentation", mlp(seed + 2, [n_obs + n_act, 16, 1], None))
    target_actor = actor if shared_targets else representation(
        "rlDeterministicActorRepresentation", mlp(seed + 3, [n_obs, 16, n_act], "TanhLayer"))
    return MatObject("rl.agent.rlDDPGAgent", {
        "AgentOptions_": _options("rl.option.rlDDPGAgentOptions", SampleTime=0.05,
                                  DiscountFactor=0.99, TargetSmoothFactor=1e-3),
        "ExperienceBuffer": np.zeros((0, 0)),
        "Critic": critic,
        "TargetCritic": target_critic,
        "Actor": actor,
        "TargetActor": target_actor,
        "NoiseModel": np.zeros((0, 0)),
        "ObservationInfo": obs, "ActionInfo": act, "SampleTime": np.array([[0.05]]),
    })


def _function(cls: str, network: Any, obs: MatObject, act: MatObject) -> MatObject:
    return MatObject(f"rl.function.{cls}", {
        "Model_": MatObject("rl.internal.model.DLNetworkModel", {"Network_": network}),
        "ObservationInfo_": obs, "ActionInfo_": act, "UseDevice": "cpu"})


def td3_agent(obs: MatObject, act: MatObject, seed: int) -> MatObject:
    """An ``rl.agent.rlTD3Agent`` in the newer layout, two critics as an object array."""
    n_obs, n_act = int(obs.props["Dimension"][0, 0]), int(act.props["Dimension"][0, 0])
    critics = [_function("rlQValueFunction", mlp(seed + k, [n_obs + n_act, 8, 1], None), obs, act)
               for k in (1, 2)]
    targets = [_function("rlQValueFunction", mlp(seed + k, [n_obs + n_act, 8, 1], None), obs, act)
               for k in (3, 4)]
    return MatObject("rl.agent.rlTD3Agent", {
        "AgentOptions_": _options("rl.option.rlTD3AgentOptions", SampleTime=0.1),
        "Actor_": _function("rlContinuousDeterministicActor",
                            mlp(seed, [n_obs, 8, n_act], "TanhLayer"), obs, act),
        "TargetActor_": _function("rlContinuousDeterministicActor",
                                  mlp(seed + 5, [n_obs, 8, n_act], "TanhLayer"), obs, act),
        "Critic_": ObjectArray("rl.function.rlQValueFunction", (1, 2), critics),
        "TargetCritic_": ObjectArray("rl.function.rlQValueFunction", (1, 2), targets),
        "ObservationInfo": obs, "ActionInfo": act,
    })


def dqn_agent(obs: MatObject, act: MatObject, seed: int) -> MatObject:
    """An ``rl.agent.rlDQNAgent`` (newer layout): a vector Q-value critic and its target."""
    n_obs, n_act = int(obs.props["Dimension"][0, 0]), act.props["Elements"].size
    return MatObject("rl.agent.rlDQNAgent", {
        "AgentOptions_": _options("rl.option.rlDQNAgentOptions", SampleTime=1.0),
        "Critic_": _function("rlVectorQValueFunction", mlp(seed, [n_obs, 12, n_act], None),
                             obs, act),
        "TargetCritic_": _function("rlVectorQValueFunction",
                                   mlp(seed + 1, [n_obs, 12, n_act], None), obs, act),
        "ObservationInfo": obs, "ActionInfo": act,
    })


def ac_agent(obs: MatObject, act: MatObject, seed: int) -> MatObject:
    """An ``rl.agent.rlACAgent`` saved through ``saveobj`` (its properties in a struct): a
    discrete stochastic actor (softmax over the actions) and a value critic."""
    n_obs, n_act = int(obs.props["Dimension"][0, 0]), act.props["Elements"].size
    return MatObject("rl.agent.rlACAgent", {"any": Struct(
        Version=np.array([[3.0]]),
        Actor=_function("rlDiscreteCategoricalActor", mlp(seed, [n_obs, 8, n_act], "SoftmaxLayer"),
                        obs, act),
        Critic=_function("rlValueFunction", mlp(seed + 1, [n_obs, 8, 1], None), obs, act),
        ObservationInfo=obs, ActionInfo=act)}, saveobj=True)


def agent_cases() -> dict[str, Any]:
    """Variable name -> agent: ``saved_agent`` (DDPG, 3 observations, 2 actions in
    [-2, 2] x [0, 1]), ``untrained`` (the same, targets shared with actor and critic), ``td3``,
    ``dqn`` (actions -10, 0, 10), ``ac`` (saved through ``saveobj``) and ``session``, a struct
    holding an agent the way an app session nests it."""
    obs = numeric_spec(3, -np.inf, np.inf, "observations")
    act = numeric_spec(2, [-2.0, 0.0], [2.0, 1.0], "force")
    return {
        "saved_agent": ddpg_agent(obs, act, seed=100),
        "untrained": ddpg_agent(obs, act, seed=100, shared_targets=True),
        "td3": td3_agent(numeric_spec(4, -1.0, 1.0, "state"),
                         numeric_spec(1, -0.5, 0.5, "torque"), seed=200),
        "dqn": dqn_agent(numeric_spec(2, -np.inf, np.inf, "obs"),
                         finite_spec([-10.0, 0.0, 10.0], "push"), seed=300),
        "ac": ac_agent(numeric_spec(3, -np.inf, np.inf, "obs"), finite_spec([0.0, 1.0], "a"),
                       seed=500),
        "session": Struct(Agents=np.array([[dqn_agent(
            numeric_spec(2, -np.inf, np.inf, "obs"), finite_spec([1.0, 2.0], "a"), seed=400)]],
            dtype=object)),
    }
