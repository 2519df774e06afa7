"""Markov-chain sequence families (papers30.data.sequences), against counting and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from papers30.data.sequences import (entropy_rate_bits, permuted_families, random_chain, sample_chain,
                                     stationary_distribution)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_chain_rows_are_distributions():
    p = random_chain(6, 0.5, gen())
    assert p.shape == (6, 6) and torch.all(p >= 0)
    torch.testing.assert_close(p.sum(1), torch.ones(6, dtype=p.dtype))


def test_sample_chain_transition_frequencies_match_the_matrix():
    p = random_chain(4, 1.0, gen(1))
    seqs = sample_chain(p, 200, 500, gen(2))
    counts = torch.zeros(4, 4, dtype=torch.float64)
    for row in seqs.tolist():
        for a, b in zip(row, row[1:]):
            counts[a, b] += 1
    freq = counts / counts.sum(1, keepdim=True)
    assert (freq - p).abs().max() < 0.02


def test_stationary_distribution_is_invariant_and_matches_the_two_state_closed_form():
    p = torch.tensor([[0.9, 0.1], [0.3, 0.7]], dtype=torch.float64)
    pi = stationary_distribution(p)
    torch.testing.assert_close(pi, torch.tensor([0.75, 0.25], dtype=torch.float64))
    q = random_chain(5, 1.0, gen(3))
    torch.testing.assert_close(stationary_distribution(q) @ q, stationary_distribution(q))


def test_entropy_rate_two_state_closed_form():
    p = torch.tensor([[0.9, 0.1], [0.3, 0.7]], dtype=torch.float64)

    def h(x):
        return -(x * math.log2(x) + (1 - x) * math.log2(1 - x))

    assert entropy_rate_bits(p) == pytest.approx(0.75 * h(0.1) + 0.25 * h(0.3))
    assert entropy_rate_bits(torch.full((4, 4), 0.25, dtype=torch.float64)) == pytest.approx(2.0)


def test_permuted_families_are_relabelings_of_one_chain():
    p = random_chain(5, 1.0, gen(4))
    items, labels = permuted_families(p, 3, 4, 50, gen(5))
    assert len(items) == 12 and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(len(x) == 50 and set(x) <= set(range(97, 102)) for x in items)


def test_sequence_generators_reject_bad_input():
    with pytest.raises(ValueError, match="concentration"):
        random_chain(3, 0.0, gen())
    with pytest.raises(TypeError, match="generator"):
        random_chain(3, 1.0, 0)
    with pytest.raises(ValueError, match="transition"):
        sample_chain(torch.ones(3, 3, dtype=torch.float64), 2, 5, gen())
    with pytest.raises(ValueError, match="length"):
        sample_chain(torch.eye(3, dtype=torch.float64), 2, 0, gen())
