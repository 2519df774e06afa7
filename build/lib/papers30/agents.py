"""Small reinforcement-learning environments, simple agents and approximate universal intelligence.

Chapter 24 (Legg, *Machine Super Intelligence*) scores agents by Legg and
Hutter's universal intelligence, an agent's value in every environment
weighted by ``2^-K`` of the environment's complexity ``K``. Here the
"every computable environment" becomes a finite suite of small tabular
environments, and ``K`` becomes a computed upper bound: the compressed length
of each environment's canonical description.

* :class:`TabularEnv`: a finite environment with deterministic transitions
  and Bernoulli rewards; :meth:`TabularEnv.description` is its canonical byte
  string and :func:`complexity_bits` its compressed length in bits.
* :func:`chain`, :func:`bandit`, :func:`lock`, :func:`alternator`,
  :func:`random_env`: environment builders; :func:`small_suite`, the chapter's nine.
* :func:`universal_weights` and :func:`universal_score`: the weights
  ``2^(-beta K)`` normalised over the suite, and the weighted score.
* :func:`value_iteration`: the optimal discounted action values ``Q*``.
* :class:`RandomAgent`, :class:`GreedyAgent`, :class:`QLearningAgent`,
  :class:`MixtureAgent` and :class:`InformedAgent`, and :func:`run_agent`,
  which lets one agent interact with one environment and returns its rewards.

Shapes: ``S`` states (observations), ``A`` actions, ``N`` environments in a
suite, ``T`` interaction steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from papers30 import _checks
from papers30.complexity import compressed_bits

REWARD_LEVELS = 255  # reward probabilities are stored as k / 255, one byte each


@dataclass(frozen=True)
class TabularEnv:
    """A finite environment: the agent sees the state, acts, and gets reward 0 or 1.

    ``next_state`` is an ``(S, A)`` integer tensor (the state after action
    ``a`` in state ``s``); ``reward_prob`` is an ``(S, A)`` float tensor, the
    probability of reward 1, a multiple of 1/255 so that it is exactly one
    byte of the description. Every episode starts in state 0.
    """

    name: str
    next_state: torch.Tensor
    reward_prob: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)
        _checks.tensor("next_state", self.next_state, ndim=2, kind="int")
        _checks.tensor("reward_prob", self.reward_prob, ndim=2, kind="float")
        s, a = self.next_state.shape
        if tuple(self.reward_prob.shape) != (s, a):
            raise ValueError(f"reward_prob must have shape {(s, a)}, got {tuple(self.reward_prob.shape)}")
        if not 1 <= s <= 255 or not 1 <= a <= 255:
            raise ValueError(f"next_state must have 1..255 states and actions, got shape {(s, a)}")
        if self.next_state.min() < 0 or self.next_state.max() >= s:
            raise ValueError(f"next_state must hold states in 0..{s - 1}")
        p = self.reward_prob.double()
        if p.min() < 0 or p.max() > 1:
            raise ValueError("reward_prob must hold probabilities in [0, 1]")
        if not torch.allclose(p * REWARD_LEVELS, (p * REWARD_LEVELS).round(), atol=1e-9):
            raise ValueError("reward_prob must hold multiples of 1/255 (use quantise_prob)")

    @property
    def states(self) -> int:
        return int(self.next_state.shape[0])

    @property
    def actions(self) -> int:
        return int(self.next_state.shape[1])

    def description(self) -> bytes:
        """The canonical description: bytes ``S, A``, then ``next_state`` and ``255 * reward_prob`` row-major."""
        levels = (self.reward_prob.double() * REWARD_LEVELS).round().long()
        body = self.next_state.reshape(-1).tolist() + levels.reshape(-1).tolist()
        return bytes([self.states, self.actions] + body)


def quantise_prob(p: torch.Tensor | float) -> torch.Tensor:
    """Round probabilities to the nearest multiple of 1/255 (float64)."""
    t = torch.as_tensor(p, dtype=torch.float64)
    return (t * REWARD_LEVELS).round() / REWARD_LEVELS


@_checks.typed
def complexity_bits(env: TabularEnv, method: str = "zlib") -> int:
    """Upper bound on the environment's complexity: its compressed description length in bits."""
    return compressed_bits(env.description(), method)


@_checks.typed
def bandit(name: str, probs: Sequence[float]) -> TabularEnv:
    """One state; action ``a`` pays 1 with probability ``probs[a]``."""
    _checks.nonempty("probs", probs)
    return TabularEnv(name, torch.zeros(1, len(probs), dtype=torch.long), quantise_prob([list(probs)]))


@_checks.typed
def lock(name: str, code: Sequence[int], reset_reward: float = 0.0) -> TabularEnv:
    """A combination lock with two actions: in state ``s`` action ``code[s]`` advances, the other resets.

    There are ``len(code) + 1`` states; in the last one every action pays 1
    and stays. Resetting pays 1 with probability ``reset_reward``: a small
    sure reward at the start is a trap for an agent that only looks one step
    ahead.
    """
    _checks.nonempty("code", code)
    if any(c not in (0, 1) for c in code):
        raise ValueError(f"code must hold actions 0 or 1, got {list(code)}")
    n = len(code) + 1
    nxt = torch.zeros(n, 2, dtype=torch.long)
    rew = torch.zeros(n, 2, dtype=torch.float64)
    for s, c in enumerate(code):
        nxt[s, c] = s + 1
        rew[s, 1 - c] = reset_reward
    nxt[n - 1] = n - 1
    rew[n - 1] = 1.0
    return TabularEnv(name, nxt, quantise_prob(rew))


@_checks.typed
def chain(name: str, length: int, reset_reward: float = 0.0) -> TabularEnv:
    """A lock whose code is all ones: keep taking action 1 to reach the paying end."""
    _checks.positive_int("length", length)
    return lock(name, [1] * length, reset_reward)


@_checks.typed
def alternator(name: str) -> TabularEnv:
    """Two states remembering the last action; an action pays 1 when it differs from the last one."""
    nxt = torch.tensor([[0, 1], [0, 1]])
    return TabularEnv(name, nxt, quantise_prob([[0.0, 1.0], [1.0, 0.0]]))


@_checks.typed
def random_env(name: str, states: int, actions: int, generator: torch.Generator) -> TabularEnv:
    """Uniformly random transitions and reward probabilities (an incompressible table)."""
    _checks.positive_int("states", states)
    _checks.positive_int("actions", actions)
    nxt = torch.randint(0, states, (states, actions), generator=generator)
    rew = torch.rand(states, actions, generator=generator, dtype=torch.float64)
    return TabularEnv(name, nxt, quantise_prob(rew))


@_checks.typed
def universal_weights(bits: Sequence[float] | torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Weights ``2^(-beta K_i) / sum_j 2^(-beta K_j)`` of ``N`` environments of complexities ``bits``: ``(N,)``.

    ``beta = 1`` is Legg and Hutter's ``2^-K`` weighting, normalised over the
    suite; ``beta = 0`` weights every environment equally. Computed from
    log-weights, so complexities of thousands of bits do not underflow.
    """
    k = torch.as_tensor(bits, dtype=torch.float64)
    if k.dim() != 1 or k.numel() == 0:
        raise ValueError(f"bits must be a non-empty 1-D sequence, got shape {tuple(k.shape)}")
    if isinstance(beta, bool) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    return torch.softmax(-beta * math.log(2.0) * k, dim=0)


@_checks.typed
def universal_score(values: Sequence[float] | torch.Tensor, bits: Sequence[float] | torch.Tensor,
                    beta: float = 1.0) -> float:
    """Approximate universal intelligence: ``sum_i w_i V_i`` with the weights of :func:`universal_weights`."""
    v = torch.as_tensor(values, dtype=torch.float64)
    w = universal_weights(bits, beta)
    if v.shape != w.shape:
        raise ValueError(f"values must have one entry per environment ({w.numel()}), got shape {tuple(v.shape)}")
    return float((w * v).sum())


@_checks.typed
def value_iteration(env: TabularEnv, gamma: float = 0.95, tol: float = 1e-10) -> torch.Tensor:
    """Optimal discounted action values ``Q*(s, a) = p(s, a) + gamma max_b Q*(s', b)``: ``(S, A)`` float64."""
    _checks.probability("gamma", gamma)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    r = env.reward_prob.tolist()
    nxt = env.next_state.tolist()
    q = [[0.0] * env.actions for _ in range(env.states)]
    while True:
        v = [max(row) for row in q]
        new = [[r[s][a] + gamma * v[nxt[s][a]] for a in range(env.actions)] for s in range(env.states)]
        change = max(abs(x - y) for row, old in zip(new, q) for x, y in zip(row, old))
        q = new
        if change < tol:
            return torch.tensor(q, dtype=torch.float64)


def _argmax(values: Sequence[float], rng: random.Random) -> int:
    best = max(values)
    ties = [i for i, v in enumerate(values) if v >= best - 1e-12]
    return ties[rng.randrange(len(ties))] if len(ties) > 1 else ties[0]


def _explore(epsilon: float, rng: random.Random) -> bool:
    return epsilon > 0 and rng.random() < epsilon


class RandomAgent:
    """Picks every action uniformly at random: the control."""

    def __init__(self, actions: int) -> None:
        self.actions = _checks.positive_int("actions", actions)

    def act(self, state: int, rng: random.Random) -> int:
        return rng.randrange(self.actions)

    def update(self, state: int, action: int, reward: float, next_state: int) -> None:
        pass


class GreedyAgent:
    """Myopic: acts on the mean immediate reward of each (state, action), epsilon-greedy.

    Means start at ``initial`` (optimism makes it try every action); it never
    looks past the next reward.
    """

    def __init__(self, states: int, actions: int, epsilon: float = 0.1, initial: float = 1.0) -> None:
        _checks.positive_int("states", states)
        self.actions = _checks.positive_int("actions", actions)
        self.epsilon = _checks.probability("epsilon", epsilon)
        if isinstance(initial, bool) or not isinstance(initial, (int, float)):
            raise TypeError(f"initial must be a float, got {type(initial).__name__}")
        self.mean = [[float(initial)] * actions for _ in range(states)]
        self.count = [[0] * actions for _ in range(states)]

    def act(self, state: int, rng: random.Random) -> int:
        if _explore(self.epsilon, rng):
            return rng.randrange(self.actions)
        return _argmax(self.mean[state], rng)

    def update(self, state: int, action: int, reward: float, next_state: int) -> None:
        self.count[state][action] += 1
        self.mean[state][action] += (reward - self.mean[state][action]) / self.count[state][action]


class QLearningAgent:
    """Tabular Q-learning, epsilon-greedy, with optimistic initial values ``initial``.

    ``Q(s, a) += alpha (r + gamma max_b Q(s', b) - Q(s, a))``.
    """

    def __init__(self, states: int, actions: int, epsilon: float = 0.1, alpha: float = 0.5,
                 gamma: float = 0.95, initial: float | None = None) -> None:
        _checks.positive_int("states", states)
        self.actions = _checks.positive_int("actions", actions)
        self.epsilon = _checks.probability("epsilon", epsilon)
        self.alpha = _checks.probability("alpha", alpha, inclusive_one=True)
        if initial is not None and (isinstance(initial, bool) or not isinstance(initial, (int, float))):
            raise TypeError(f"initial must be a float or None, got {type(initial).__name__}")
        self.gamma = _checks.probability("gamma", gamma)
        start = 1.0 / (1.0 - gamma) if initial is None else float(initial)
        self.q = [[start] * actions for _ in range(states)]

    def act(self, state: int, rng: random.Random) -> int:
        if _explore(self.epsilon, rng):
            return rng.randrange(self.actions)
        return _argmax(self.q[state], rng)

    def update(self, state: int, action: int, reward: float, next_state: int) -> None:
        target = reward + self.gamma * max(self.q[next_state])
        self.q[state][action] += self.alpha * (target - self.q[state][action])


class InformedAgent:
    """Knows the environment: acts greedily on its ``Q*`` (a reference, not a learner)."""

    def __init__(self, env: TabularEnv, gamma: float = 0.95) -> None:
        self.q = value_iteration(env, gamma).tolist()

    def act(self, state: int, rng: random.Random) -> int:
        return _argmax(self.q[state], rng)

    def update(self, state: int, action: int, reward: float, next_state: int) -> None:
        pass


class MixtureAgent:
    """A Bayes mixture over a suite of environments, with prior ``2^-K``.

    It keeps the posterior ``w(nu | history)`` over the suite (prior weight
    times the probability ``nu`` gave every observed transition and reward),
    and acts on the posterior mean of the suite's optimal values,
    ``argmax_a sum_nu w(nu) Q*_nu(s, a)``. This plans as if the environment
    were about to be revealed; AIXI would also value what an action teaches
    it, which is intractable even here.
    """

    def __init__(self, suite: Sequence[TabularEnv], bits: Sequence[float] | torch.Tensor,
                 gamma: float = 0.95) -> None:
        _checks.nonempty("suite", suite)
        if any(not isinstance(e, TabularEnv) for e in suite):
            raise TypeError("suite must hold TabularEnv objects")
        self.suite = list(suite)
        self.actions = self.suite[0].actions
        if any(e.actions != self.actions for e in self.suite):
            raise ValueError("suite must hold environments with the same number of actions")
        prior = universal_weights(bits)
        if prior.numel() != len(self.suite):
            raise ValueError(f"bits must have one entry per environment ({len(self.suite)}), got {prior.numel()}")
        self.log_w = prior.log().tolist()
        self.q = [value_iteration(e, gamma).tolist() for e in self.suite]
        self.next = [e.next_state.tolist() for e in self.suite]
        self.prob = [e.reward_prob.tolist() for e in self.suite]

    def posterior(self) -> torch.Tensor:
        """Posterior weights over the suite: ``(N,)``, summing to one."""
        return torch.tensor(self._weights(), dtype=torch.float64)

    def _weights(self) -> list[float]:
        top = max(self.log_w)
        w = [math.exp(x - top) if x > -math.inf else 0.0 for x in self.log_w]
        total = sum(w)
        return [x / total for x in w]

    def act(self, state: int, rng: random.Random) -> int:
        w = self._weights()
        scores = [0.0] * self.actions
        for wi, q, e in zip(w, self.q, self.suite):
            if wi > 0 and state < e.states:
                for a in range(self.actions):
                    scores[a] += wi * q[state][a]
        return _argmax(scores, rng)

    def update(self, state: int, action: int, reward: float, next_state: int) -> None:
        for i, e in enumerate(self.suite):
            if self.log_w[i] == -math.inf:
                continue
            if state >= e.states or self.next[i][state][action] != next_state:
                self.log_w[i] = -math.inf
                continue
            p = self.prob[i][state][action]
            like = p if reward > 0 else 1.0 - p
            self.log_w[i] += math.log(like) if like > 0 else -math.inf


@_checks.typed
def run_agent(agent: object, env: TabularEnv, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Let ``agent`` interact with ``env`` for ``steps`` steps from state 0; return the rewards: ``(T,)``.

    ``agent`` has ``act(state, rng) -> action`` (``rng`` a :class:`random.Random`
    seeded from ``generator``) and ``update(state, action, reward, next_state)``.
    Rewards are drawn from ``generator`` before the run.
    """
    _checks.positive_int("steps", steps)
    if not callable(getattr(agent, "act", None)) or not callable(getattr(agent, "update", None)):
        raise TypeError(f"agent must have act and update methods, got {type(agent).__name__}")
    nxt = env.next_state.tolist()
    prob = env.reward_prob.tolist()
    rewards = torch.rand(steps, generator=generator, dtype=torch.float64).tolist()
    rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
    out = [0.0] * steps
    s = 0
    for t in range(steps):
        a = agent.act(s, rng)
        if not 0 <= a < env.actions:
            raise ValueError(f"agent chose action {a}, outside 0..{env.actions - 1}")
        r = 1.0 if rewards[t] < prob[s][a] else 0.0
        s2 = nxt[s][a]
        agent.update(s, a, r, s2)
        out[t] = r
        s = s2
    return torch.tensor(out, dtype=torch.float64)


@_checks.typed
def small_suite(generator: torch.Generator) -> list[TabularEnv]:
    """The chapter's suite of nine two-action environments, from simple to incompressible.

    Three one-state bandits (pay on action 1, pay on action 0, pay with
    probability 0.3 or 0.7), an alternator, chains of 4 and 8 steps and a
    6-step lock with a 0.2 reset reward, and random tables of 4 and 8 states
    drawn from ``generator``.
    """
    return [
        bandit("bandit 1", [0.0, 1.0]),
        bandit("bandit 0", [1.0, 0.0]),
        bandit("noisy bandit", [0.3, 0.7]),
        alternator("alternator"),
        chain("chain 4", 4, 0.2),
        chain("chain 8", 8, 0.2),
        lock("lock 6", [1, 0, 0, 1, 0, 1], 0.2),
        random_env("random 4", 4, 2, generator),
        random_env("random 8", 8, 2, generator),
    ]
