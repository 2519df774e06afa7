"""Families of symbol sequences drawn from Markov chains, for chapter 25 (Kolmogorov complexity).

Each family is one first-order Markov chain over ``V`` symbols. The families
of a set are the *same* chain with its symbols renamed by a random
permutation, so every family has exactly the same entropy rate: a method
that tells them apart must use what two sequences share, not how
compressible each is on its own.

Shapes: ``V`` symbols, ``F`` families, ``n`` sequences per family, ``L``
symbols per sequence.
"""

from __future__ import annotations

import torch

from papers30 import _checks


def random_chain(symbols: int, concentration: float, generator: torch.Generator) -> torch.Tensor:
    """A transition matrix ``(V, V)`` whose rows are drawn from a symmetric Dirichlet(``concentration``).

    Small ``concentration`` gives peaked rows (a predictable, low-entropy
    chain); large gives rows near uniform.
    """
    _checks.positive_int("symbols", symbols)
    if isinstance(concentration, bool) or not isinstance(concentration, (int, float)) or not concentration > 0:
        raise ValueError(f"concentration must be a positive float, got {concentration!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    gamma = torch._standard_gamma(torch.full((symbols, symbols), float(concentration), dtype=torch.float64),
                                  generator=generator)
    return gamma / gamma.sum(dim=1, keepdim=True)


def sample_chain(transition: torch.Tensor, count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` sequences of ``length`` symbols from the chain, ``(count, L)`` long.

    The first symbol is drawn from the chain's stationary distribution.
    """
    v = _check_transition(transition).shape[0]
    _checks.positive_int("count", count)
    _checks.positive_int("length", length)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    stationary = stationary_distribution(transition)
    out = torch.empty(count, length, dtype=torch.long)
    out[:, 0] = torch.multinomial(stationary, count, replacement=True, generator=generator)
    cdf = transition.cumsum(dim=1)
    for t in range(1, length):
        u = torch.rand(count, 1, generator=generator, dtype=transition.dtype)
        out[:, t] = (u > cdf[out[:, t - 1]]).sum(dim=1).clamp(max=v - 1)
    return out


def _check_transition(transition: object) -> torch.Tensor:
    _checks.tensor("transition", transition, ndim=2, kind="float")
    v = transition.shape[0]
    if transition.shape != (v, v) or not torch.isfinite(transition).all() or (transition < 0).any():
        raise ValueError("transition must be a square matrix of finite, non-negative entries")
    if not torch.allclose(transition.sum(1), torch.ones(v, dtype=transition.dtype)):
        raise ValueError("transition must have rows that sum to 1")
    return transition


def stationary_distribution(transition: torch.Tensor) -> torch.Tensor:
    """The stationary distribution ``(V,)`` of a transition matrix: the left eigenvector of eigenvalue 1."""
    _check_transition(transition)
    values, vectors = torch.linalg.eig(transition.T.to(torch.float64))
    pi = vectors[:, torch.argmin((values - 1).abs())].real
    return (pi / pi.sum()).to(transition.dtype)


def entropy_rate_bits(transition: torch.Tensor) -> float:
    """The chain's entropy rate ``-sum_i pi_i sum_j P_ij log2 P_ij`` in bits per symbol."""
    pi = stationary_distribution(transition)
    p = transition.to(torch.float64)
    terms = torch.where(p > 0, -p * torch.log2(p.clamp_min(1e-300)), torch.zeros_like(p))
    return float((pi.to(torch.float64) * terms.sum(dim=1)).sum())


def permuted_families(
    transition: torch.Tensor, families: int, per_family: int, length: int, generator: torch.Generator
) -> tuple[list[bytes], torch.Tensor]:
    """``families`` relabelings of one chain, ``per_family`` sequences each, as bytes; and labels ``(F * n,)``.

    Family ``f`` renames symbol ``s`` to ``perm_f[s]`` (family 0 keeps the
    names). Sequences are written one byte per symbol, ``ord('a') + s``, so
    they can be printed.
    """
    _checks.positive_int("families", families)
    _checks.positive_int("per_family", per_family)
    v = _check_transition(transition).shape[0]
    items: list[bytes] = []
    labels: list[int] = []
    for f in range(families):
        perm = torch.arange(v) if f == 0 else torch.randperm(v, generator=generator)
        seqs = perm[sample_chain(transition, per_family, length, generator)]
        items += [bytes((97 + seqs[i]).tolist()) for i in range(per_family)]
        labels += [f] * per_family
    return items, torch.tensor(labels)
