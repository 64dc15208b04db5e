"""Reinforcement-learning agents (issue 13 item 3): networks by role with short paths, the
specifications, and the policy in Python against a reference written from the formulas
(``tanh(W2 * relu(W1 * o + b1) + b2)`` saturated to the action limits for DDPG/TD3, the
action element of the largest Q value for DQN), from the weights the fixture was made with."""

from __future__ import annotations

import functools
import json

import jsonschema
import numpy as np
import pytest
import torch

import matport
from matport.cli import main
from matport.errors import ConversionError, NetworkError
from matport.mat.values import MatFile
from matport.network import find_networks
from matport.network.summary import INSPECT_SCHEMA
from matport.synth.agent import mlp_weights
from tests.support.paths import FIXTURES

FILES = ["agents_v7.mat", "agents_v73.mat"]
OBS = np.random.default_rng(11).uniform(-3.0, 3.0, (64, 4))


@functools.cache
def fixture(name: str) -> MatFile:
    return matport.read(FIXTURES / name)


def mlp(x: np.ndarray, seed: int, sizes: list[int]) -> np.ndarray:
    """The fixture's MLP on ``x`` (N x features): ReLU between the fully connected layers."""
    weights = mlp_weights(seed, sizes)
    for k, (w, b) in enumerate(weights):
        x = x @ w.T.astype(np.float64) + b.ravel()
        if k < len(weights) - 1:
            x = np.maximum(x, 0.0)
    return x


@pytest.mark.parametrize("name", FILES)
def test_networks_get_short_paths_by_role(name: str) -> None:
    paths = sorted(r.path for r in find_networks(fixture(name)))
    assert paths == sorted([
        "saved_agent.Critic", "saved_agent.TargetCritic", "saved_agent.Actor",
        "saved_agent.TargetActor", "untrained.Critic", "untrained.Actor", "td3.Actor",
        "td3.TargetActor", "td3.Critic(1)",
        "td3.Critic(2)", "td3.TargetCritic(1)", "td3.TargetCritic(2)", "dqn.Critic",
        "dqn.TargetCritic", "ac.Actor", "ac.Critic", "session.Agents{1}.Critic",
        "session.Agents{1}.TargetCritic"])


def test_the_error_listing_networks_shows_short_paths() -> None:
    with pytest.raises(NetworkError) as err:
        matport.load(FIXTURES / "agents_v7.mat")
    assert "saved_agent.Actor (dlnetwork)" in str(err.value)
    assert "td3.Critic(2) (dlnetwork)" in str(err.value)


@pytest.mark.parametrize("name", FILES)
def test_ddpg_actor_matches_the_reference(name: str) -> None:
    obs = OBS[:, :3]
    actor = matport.load(FIXTURES / name, variable="saved_agent.Actor")
    raw = np.tanh(mlp(obs, 100, [3, 16, 2]))
    got = actor(torch.tensor(obs, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, raw, rtol=1e-5, atol=1e-5)

    agent = matport.load_agent(FIXTURES / name, variable="saved_agent")
    assert agent.class_name == "rl.agent.rlDDPGAgent"
    assert sorted(agent.networks) == ["Actor", "Critic", "TargetActor", "TargetCritic"]
    (act,) = agent.action_info
    assert act.kind == "numeric" and act.dimension == (2, 1) and act.name == "force"
    assert act.lower.ravel().tolist() == [-2.0, 0.0] and act.upper.ravel().tolist() == [2.0, 1.0]
    (ob,) = agent.observation_info
    assert ob.dimension == (3, 1) and np.all(np.isinf(ob.lower))
    expected = np.clip(raw, [-2.0, 0.0], [2.0, 1.0])
    assert (raw[:, 1] < 0).any()  # the limits matter
    np.testing.assert_allclose(agent.act(obs).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FILES)
def test_td3_actions_and_critics(name: str) -> None:
    agent = matport.load_agent(FIXTURES / name, variable="td3")
    assert sorted(agent.networks) == ["Actor", "Critic(1)", "Critic(2)", "TargetActor",
                                      "TargetCritic(1)", "TargetCritic(2)"]
    expected = np.clip(np.tanh(mlp(OBS, 200, [4, 8, 1])), -0.5, 0.5)
    np.testing.assert_allclose(agent.act(OBS).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    obs_act = np.hstack([OBS, expected])  # the critic takes observation and action
    q2 = agent.networks["Critic(2)"](torch.tensor(obs_act, dtype=torch.float32))
    np.testing.assert_allclose(q2.detach().numpy(), mlp(obs_act, 202, [5, 8, 1]), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("name", FILES)
def test_dqn_picks_the_action_of_the_largest_q(name: str) -> None:
    agent = matport.load_agent(FIXTURES / name, variable="dqn")
    (act,) = agent.action_info
    assert act.kind == "finite" and act.elements.ravel().tolist() == [-10.0, 0.0, 10.0]
    obs = OBS[:, :2]
    expected = np.array([-10.0, 0.0, 10.0])[mlp(obs, 300, [2, 12, 3]).argmax(1)]
    assert len(set(expected)) > 1
    np.testing.assert_array_equal(agent.act(obs).numpy().ravel(), expected)


def test_agents_nested_in_a_session_and_choice_errors() -> None:
    agent = matport.load_agent(FIXTURES / "agents_v7.mat", variable="session.Agents{1}")
    assert sorted(agent.networks) == ["Critic", "TargetCritic"]
    with pytest.raises(NetworkError, match="holds 6 agents .*saved_agent"):
        matport.load_agent(FIXTURES / "agents_v7.mat")
    with pytest.raises(NetworkError, match="no reinforcement-learning agent at 'nope'"):
        matport.load_agent(FIXTURES / "agents_v7.mat", variable="nope")
    with pytest.raises(NetworkError, match="no reinforcement-learning agent"):
        matport.load_agent(FIXTURES / "shallow_v7.mat")


@pytest.mark.parametrize("name", FILES)
def test_agent_saved_through_saveobj_and_its_stochastic_policy(name: str) -> None:
    agent = matport.load_agent(FIXTURES / name, variable="ac")
    assert sorted(agent.networks) == ["Actor", "Critic"]
    assert agent.action_info[0].elements.ravel().tolist() == [0.0, 1.0]
    logits = mlp(OBS[:, :3], 500, [3, 8, 2])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    actor = agent.networks["Actor"]
    got = actor(torch.tensor(OBS[:, :3], dtype=torch.float32))  # logits, like every model
    np.testing.assert_allclose(got.detach().numpy(), logits, rtol=1e-5, atol=1e-5)
    got_probs = actor.matport.postprocess_outputs(got).detach().numpy()
    np.testing.assert_allclose(got_probs, probs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConversionError, match="rlACAgent has a stochastic"):
        agent.act(OBS[:, :3])


def test_inspect_lists_agent_networks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(FIXTURES / "agents_v7.mat"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, INSPECT_SCHEMA)
    nets = {n["path"]: n for n in doc["networks"]}
    assert nets["saved_agent.Actor"]["kind"] == "dlnetwork"
    assert [lay["type"] for lay in nets["saved_agent.Actor"]["layers"]] == [
        "FeatureInputLayer", "FullyConnectedLayer", "ReLULayer", "FullyConnectedLayer",
        "TanhLayer"]


@pytest.mark.parametrize("name", FILES)
def test_targets_saved_as_the_same_objects_keep_their_roles(name: str) -> None:
    agent = matport.load_agent(FIXTURES / name, variable="untrained")
    assert sorted(agent.networks) == ["Actor", "Critic", "TargetActor", "TargetCritic"]
    x = torch.tensor(OBS[:, :3], dtype=torch.float32)
    assert torch.equal(agent.networks["TargetActor"](x), agent.networks["Actor"](x))
