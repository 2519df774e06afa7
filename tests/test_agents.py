"""Tests for papers30.agents against independent references (brute force, hand computation, zlib)."""

from __future__ import annotations

import itertools
import math
import random
import zlib
from fractions import Fraction

import pytest
import torch

from papers30.agents import (GreedyAgent, InformedAgent, MixtureAgent, QLearningAgent, RandomAgent, TabularEnv,
                             alternator, bandit, chain, complexity_bits, lock, quantise_prob, random_env, run_agent,
                             small_suite, universal_score, universal_weights, value_iteration)


def _brute_force_q(env: TabularEnv, gamma: float) -> torch.Tensor:
    """Best Q over every deterministic stationary policy, each solved exactly as a linear system."""
    s, a = env.states, env.actions
    r = env.reward_prob.double()
    best_v = torch.full((s,), -math.inf, dtype=torch.float64)
    for policy in itertools.product(range(a), repeat=s):
        p = torch.zeros(s, s, dtype=torch.float64)
        rp = torch.zeros(s, dtype=torch.float64)
        for i, act in enumerate(policy):
            p[i, env.next_state[i, act]] = 1.0
            rp[i] = r[i, act]
        v = torch.linalg.solve(torch.eye(s, dtype=torch.float64) - gamma * p, rp)
        best_v = torch.maximum(best_v, v)
    return r + gamma * best_v[env.next_state]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_iteration_matches_policy_enumeration(seed):
    env = random_env("r", 4, 3, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(value_iteration(env, 0.9), _brute_force_q(env, 0.9), atol=1e-8, rtol=0)


def test_value_iteration_chain_closed_form():
    # at the paying end of a chain every step pays 1, so Q = 1 / (1 - gamma)
    q = value_iteration(chain("c", 3), 0.5)
    assert q[3, 0].item() == pytest.approx(2.0)
    # three steps to the end from state 0: gamma^3 / (1 - gamma)
    assert q[0, 1].item() == pytest.approx(0.5**3 * 2.0)


def test_description_and_complexity():
    env = lock("l", [1, 0], 0.2)
    d = env.description()
    s, a = d[0], d[1]
    assert (s, a) == (3, 2)
    assert list(d[2:2 + 6]) == env.next_state.reshape(-1).tolist()
    assert [x / 255 for x in d[8:]] == pytest.approx(env.reward_prob.reshape(-1).tolist())
    assert complexity_bits(env) == 8 * len(zlib.compress(d, 9))
    assert complexity_bits(bandit("b", [0.0, 1.0])) < complexity_bits(chain("c", 8, 0.2))


def test_builders():
    env = lock("l", [1, 0, 1])
    s = 0
    for c in [1, 0, 1]:
        assert env.reward_prob[s, c] == 0
        s = int(env.next_state[s, c])
    assert s == 3 and env.reward_prob[3].tolist() == [1.0, 1.0]
    assert int(env.next_state[1, 1]) == 0  # the wrong action resets
    alt = alternator("a")
    assert alt.next_state.tolist() == [[0, 1], [0, 1]]
    assert alt.reward_prob.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert quantise_prob(0.3).item() == round(0.3 * 255) / 255
    suite = small_suite(torch.Generator().manual_seed(0))
    assert len(suite) == 9 and len({e.name for e in suite}) == 9


def test_universal_weights_hand_computation():
    bits = [3, 5, 5]
    total = Fraction(1, 8) + 2 * Fraction(1, 32)
    want = [float(Fraction(1, 8) / total), float(Fraction(1, 32) / total), float(Fraction(1, 32) / total)]
    assert universal_weights(bits).tolist() == pytest.approx(want)
    assert universal_weights(bits, 0.0).tolist() == pytest.approx([1 / 3] * 3)
    # thousands of bits do not underflow; only differences matter
    assert universal_weights([3000, 3002]).tolist() == pytest.approx([0.8, 0.2])
    assert universal_score([1.0, 0.0, 0.5], bits) == pytest.approx(want[0] + 0.5 * want[2])


def test_mixture_posterior_matches_hand_bayes():
    suite = [bandit("a", [0.2, 0.8]), bandit("b", [0.8, 0.2]), chain("c", 1)]
    bits = [8.0, 9.0, 10.0]
    agent = MixtureAgent(suite, bits)
    history = [(1, 1.0), (1, 0.0), (0, 1.0), (1, 1.0)]
    for act, r in history:
        agent.update(0, act, r, 0)
    pa, pb = quantise_prob([0.2, 0.8]).tolist()
    like_a = pb * (1 - pb) * pa * pb
    like_b = pa * (1 - pa) * pb * pa
    # the chain moves on action 1, so it is ruled out at the first step
    post = torch.tensor([2.0**-8 * like_a, 2.0**-9 * like_b, 0.0])
    torch.testing.assert_close(agent.posterior(), (post / post.sum()).double())


def test_mixture_acts_on_posterior_mean():
    suite = [bandit("a", [0.0, 1.0]), bandit("b", [1.0, 0.0])]
    agent = MixtureAgent(suite, [8, 16])  # prior favours "a", so action 1
    assert agent.act(0, random.Random(0)) == 1
    agent.update(0, 1, 0.0, 0)  # no reward: "a" is ruled out
    assert agent.posterior().tolist() == [0.0, 1.0]
    assert agent.act(0, random.Random(0)) == 0


def test_q_learning_and_greedy_updates():
    q = QLearningAgent(2, 2, epsilon=0.0, alpha=0.5, gamma=0.9, initial=0.0)
    q.q[1] = [1.0, 2.0]
    q.update(0, 1, 1.0, 1)
    assert q.q[0][1] == pytest.approx(0.5 * (1.0 + 0.9 * 2.0))
    g = GreedyAgent(1, 2, epsilon=0.0, initial=1.0)
    for r in [0.0, 1.0, 1.0]:
        g.update(0, 0, r, 0)
    assert g.mean[0][0] == pytest.approx(2 / 3)
    assert g.act(0, random.Random(0)) == 1  # untried action keeps its optimistic 1.0


def test_run_agent():
    env = bandit("b", [0.0, 1.0])
    r = run_agent(InformedAgent(env), env, 50, torch.Generator().manual_seed(0))
    assert r.shape == (50,) and r.sum().item() == 50
    r1 = run_agent(RandomAgent(2), env, 2000, torch.Generator().manual_seed(1))
    r2 = run_agent(RandomAgent(2), env, 2000, torch.Generator().manual_seed(1))
    assert torch.equal(r1, r2)
    assert abs(r1.mean().item() - 0.5) < 0.05
    learner = QLearningAgent(5, 2)
    assert run_agent(learner, chain("c", 4), 300, torch.Generator().manual_seed(0))[-50:].mean() > 0.8


def test_bad_inputs():
    with pytest.raises(ValueError, match="next_state"):
        TabularEnv("x", torch.tensor([[0, 2]]), torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="reward_prob"):
        TabularEnv("x", torch.zeros(1, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="reward_prob"):
        TabularEnv("x", torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0.1234, 0.0]], dtype=torch.float64))
    with pytest.raises(TypeError, match="next_state"):
        TabularEnv("x", torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="name"):
        TabularEnv(3, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="code"):
        lock("l", [0, 2])
    with pytest.raises(ValueError, match="probs"):
        bandit("b", [])
    with pytest.raises(ValueError, match="length"):
        chain("c", 0)
    with pytest.raises(ValueError, match="bits"):
        universal_weights([])
    with pytest.raises(ValueError, match="beta"):
        universal_weights([1.0], -1.0)
    with pytest.raises(ValueError, match="values"):
        universal_score([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="gamma"):
        value_iteration(chain("c", 2), 1.0)
    with pytest.raises(TypeError, match="env"):
        complexity_bits("env")
    with pytest.raises(ValueError, match="epsilon"):
        QLearningAgent(2, 2, epsilon=1.5)
    with pytest.raises(ValueError, match="actions"):
        RandomAgent(0)
    with pytest.raises(ValueError, match="suite"):
        MixtureAgent([], [])
    with pytest.raises(ValueError, match="bits"):
        MixtureAgent([chain("c", 2)], [1.0, 2.0])
    with pytest.raises(ValueError, match="steps"):
        run_agent(RandomAgent(2), chain("c", 2), 0, torch.Generator())
    with pytest.raises(TypeError, match="agent"):
        run_agent(object(), chain("c", 2), 5, torch.Generator())
    with pytest.raises(ValueError, match="action"):
        run_agent(RandomAgent(3), bandit("b", [0.0, 1.0]), 50, torch.Generator().manual_seed(0))
