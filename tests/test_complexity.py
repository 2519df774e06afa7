"""papers30.complexity against closed forms, brute force and hand-computed examples."""

from __future__ import annotations

import bz2
import itertools
import lzma
import math
import zlib
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.complexity import (
    METHODS,
    arrangement_entropy_bits,
    block_average,
    coarse_grain,
    compressed_bits,
    cream_on_top,
    level_flip_probability,
    mix,
    mixing_run,
    quantise,
    state_bits,
    to_bytes,
)

# ------------------------------------------------------------------ to_bytes


def test_to_bytes_packs_bools_like_numpy_packbits(gen):
    """Reference: numpy.packbits (big-endian bit order, zero padding)."""
    np = pytest.importorskip("numpy")
    for n in (1, 7, 8, 9, 64, 1001):
        x = torch.rand(n, generator=gen) < 0.5
        assert to_bytes(x) == np.packbits(x.numpy()).tobytes()


def test_to_bytes_one_byte_per_integer_in_row_major_order():
    x = torch.tensor([[0, 1, 2], [253, 254, 255]])
    assert to_bytes(x) == bytes([0, 1, 2, 253, 254, 255])


def test_to_bytes_rejects_floats_and_out_of_range():
    with pytest.raises(TypeError, match="x"):
        to_bytes(torch.zeros(3))
    with pytest.raises(ValueError, match="x"):
        to_bytes(torch.tensor([0, 256]))
    with pytest.raises(TypeError, match="x"):
        to_bytes([0, 1])


# ------------------------------------------------------------------ compressed_bits


@pytest.mark.parametrize("method,fn", [
    ("zlib", lambda d: zlib.compress(d, 9)),
    ("bz2", lambda d: bz2.compress(d, 9)),
])
def test_compressed_bits_matches_the_library(method, fn):
    data = bytes(range(256)) * 7
    assert compressed_bits(data, method) == 8 * len(fn(data))


def test_compressed_bits_lzma_round_trips_through_the_library_decoder():
    """Reference: lzma's own decoder recovers the data, and the size is the stream's."""
    data = b"coffee and cream " * 300
    stream = lzma.compress(data, format=lzma.FORMAT_RAW,
                           filters=[{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 8192}])
    back = lzma.decompress(stream, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    assert back == data
    assert compressed_bits(data, "lzma") == 8 * len(stream)


@pytest.mark.parametrize("method", METHODS)
def test_constant_much_smaller_than_periodic_much_smaller_than_random(method, gen):
    """Theory: K(constant) = O(log n); K(periodic) = K(random motif) + O(log n); K(random) ~ n."""
    n, period = 8192, 64  # bytes
    constant = bytes(n)
    motif = bytes(torch.randint(0, 256, (period,), generator=gen).tolist())
    periodic = (motif * (n // period))[:n]
    random = bytes(torch.randint(0, 256, (n,), generator=gen).tolist())
    c, p, r = (compressed_bits(d, method) for d in (constant, periodic, random))
    assert c < 0.01 * 8 * n
    assert p >= c + 0.8 * 8 * period  # the random motif has to be stored once
    assert 10 * p < r


# (relative, absolute in bits) slack over the entropy: bz2's blocks and tables cost more
SLACK = {"zlib": (1.01, 400), "lzma": (1.01, 400), "bz2": (1.15, 800)}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_bits", [8 * 4096, 8 * 16384])
def test_random_bits_compress_to_close_above_their_entropy(method, n_bits, gen):
    """Reference: n fair coin flips have entropy n bits; no compressor gets below it."""
    x = torch.rand(n_bits, generator=gen) < 0.5
    bits = compressed_bits(x, method)
    rel, extra = SLACK[method]
    assert n_bits <= bits <= n_bits * rel + extra


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("p", [0.1, 0.25])
def test_biased_bits_compress_between_entropy_and_raw_size(method, p, gen):
    """Reference: the binary entropy h(p) bits per cell bounds any compressor from below."""
    n = 80000
    x = torch.rand(n, generator=gen) < p
    h = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    bits = compressed_bits(x, method)
    assert n * h <= bits < n
    if method != "bz2":  # bz2's block sorting gains little on bit-packed bytes
        assert bits <= n * (h + 1) / 2  # finds at least half the redundancy


def test_compressed_bits_rejects_bad_method_and_input():
    with pytest.raises(ValueError, match="method"):
        compressed_bits(b"abc", "gzip2")
    with pytest.raises(TypeError, match="x"):
        compressed_bits("abc")


# ------------------------------------------------------------------ coarse-graining


def test_block_average_2d_by_hand():
    x = torch.tensor([[1, 1, 0, 0, 1, 0],
                      [1, 0, 0, 0, 1, 1],
                      [0, 0, 1, 1, 1, 1],
                      [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    want = torch.tensor([[0.75, 0.0, 0.75],
                         [0.25, 1.0, 1.0]])
    torch.testing.assert_close(block_average(x, 2), want)
    # levels of thirds: 0.75 -> 2, 0.0 -> 0, 0.25 -> 0, 1.0 -> 2 (top level)
    assert coarse_grain(x, 2).tolist() == [[2, 0, 2], [0, 2, 2]]
    assert coarse_grain(x, 2, levels=2).tolist() == [[1, 0, 1], [0, 1, 1]]


def test_block_average_1d_by_hand():
    x = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    torch.testing.assert_close(block_average(x, 3), torch.tensor([1 / 3, 2 / 3, 0.0]))
    assert coarse_grain(x, 3).tolist() == [1, 2, 0]  # 1/3 and 2/3 sit on the lower edge of a level


@pytest.mark.parametrize("h,w,k", [(1, 1, 1), (4, 4, 4), (6, 9, 3), (8, 4, 2), (5, 10, 5)])
def test_block_average_matches_brute_force_loops(h, w, k, gen):
    x = torch.rand(h, w, generator=gen, dtype=torch.float64)
    got = block_average(x, k)
    assert got.shape == (h // k, w // k) and got.dtype == torch.float64
    for i in range(h // k):
        for j in range(w // k):
            want = sum(x[a, b].item() for a in range(i * k, i * k + k) for b in range(j * k, j * k + k))
            assert got[i, j].item() == pytest.approx(want / k**2, abs=1e-12)


@given(st.lists(st.integers(0, 60), min_size=1, max_size=30), st.integers(1, 7))
def test_quantise_matches_exact_fractions(numerators, levels):
    """Reference: level = floor(p * levels) computed in exact rational arithmetic."""
    p = torch.tensor([n / 60 for n in numerators], dtype=torch.float64)
    want = [min(math.floor(Fraction(n, 60) * levels), levels - 1) for n in numerators]
    assert quantise(p, levels).tolist() == want


def test_coarse_graining_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k"):
        block_average(torch.zeros(4, 6), 4)
    with pytest.raises(ValueError, match="x"):
        block_average(torch.zeros(2, 2, 2), 1)
    with pytest.raises(TypeError, match="k"):
        block_average(torch.zeros(4), 2.0)
    with pytest.raises(ValueError, match="p"):
        quantise(torch.tensor([1.5]), 3)
    with pytest.raises(TypeError, match="p"):
        quantise(torch.tensor([1]), 3)
    with pytest.raises(ValueError, match="levels"):
        quantise(torch.tensor([0.5]), 0)


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("n,m", [(1, 0), (1, 1), (10, 3), (64, 32), (200, 7)])
def test_arrangement_entropy_matches_math_comb(n, m):
    assert arrangement_entropy_bits(n, m) == pytest.approx(math.log2(math.comb(n, m)), abs=1e-9)


def test_arrangement_entropy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="m"):
        arrangement_entropy_bits(4, 5)
    with pytest.raises(TypeError, match="m"):
        arrangement_entropy_bits(4, 2.0)
    with pytest.raises(ValueError, match="n"):
        arrangement_entropy_bits(0, 0)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("levels", [2, 3, 5])
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_level_flip_probability_matches_enumeration(k, levels, p):
    """Reference: every 0/1 block of k*k cells, weighted by its probability, through quantise."""
    cells = k * k
    home = min(math.floor(Fraction(p) * levels), levels - 1)
    off = 0.0
    for bits in itertools.product((0, 1), repeat=cells):
        c = sum(bits)
        level = coarse_grain(torch.tensor(bits, dtype=torch.bool).view(k, k), k, levels).item()
        if level != home:
            off += p**c * (1 - p) ** (cells - c)
    assert level_flip_probability(cells, levels, p) == pytest.approx(off, abs=1e-12)


def test_level_flip_probability_rejects_bad_arguments():
    with pytest.raises(ValueError, match="p"):
        level_flip_probability(4, 3, 1.5)
    with pytest.raises(TypeError, match="cells"):
        level_flip_probability(4.0)


# ------------------------------------------------------------------ the mixing automaton


@pytest.mark.parametrize("h,w,b", [(2, 1, 1), (2, 5, 3), (6, 4, 2), (8, 8, 1)])
def test_mixing_conserves_cream_in_every_run(h, w, b, gen):
    state = cream_on_top(h, w, b)
    assert state.shape == (b, h, w) and state.dtype == torch.bool
    assert state[:, : h // 2].all() and not state[:, h // 2 :].any()
    after = mix(state, 25, gen)
    assert after.shape == state.shape
    assert after.sum(dim=(1, 2)).tolist() == [h // 2 * w] * b


def test_mixing_is_reproducible_with_a_seeded_generator():
    a = mix(cream_on_top(8, 8, 2), 30, torch.Generator().manual_seed(5))
    b = mix(cream_on_top(8, 8, 2), 30, torch.Generator().manual_seed(5))
    c = mix(cream_on_top(8, 8, 2), 30, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mix_moves_cells_only_between_neighbours(gen):
    """Reference: one sweep is a product of adjacent transpositions, so a lone cell moves at most 1."""
    from papers30.complexity import _swap_pairs

    state = torch.zeros(1, 7, 7, dtype=torch.bool)
    state[0, 3, 3] = True
    for axis in (1, 2):
        for offset in (0, 1):
            out = _swap_pairs(state, axis, offset, gen)
            (where,) = out[0].nonzero().tolist()
            assert abs(where[0] - 3) + abs(where[1] - 3) <= 1
            assert where[2 - axis] == 3  # moved along `axis` only


def test_stationary_distribution_is_uniform_on_a_tiny_grid():
    """Reference: the uniform distribution over C(4, 2) = 6 arrangements of a 2 x 2 cup."""
    g = torch.Generator().manual_seed(0)
    state = cream_on_top(2, 2, 6000)
    state = mix(state, 20, g)
    codes = (state.view(6000, 4).long() * torch.tensor([8, 4, 2, 1])).sum(1)
    counts = torch.bincount(codes, minlength=16).float()
    legal = [c for c in range(16) if bin(c).count("1") == 2]
    assert counts[[c for c in range(16) if c not in legal]].sum() == 0
    freq = counts[legal] / 6000
    assert (freq - 1 / 6).abs().max() < 0.03


def test_mixing_run_snapshots_equal_stepwise_mixing():
    times = [0, 3, 3, 10]
    runs = mixing_run(cream_on_top(6, 6, 2), times, torch.Generator().manual_seed(9))
    assert runs.shape == (4, 2, 6, 6)
    g = torch.Generator().manual_seed(9)
    s0 = cream_on_top(6, 6, 2)
    s1 = mix(s0, 3, g)
    s2 = mix(s1, 7, g)
    for got, want in zip(runs, [s0, s1, s1, s2]):
        assert torch.equal(got, want)


def test_state_bits_matches_compressed_bits_of_each_state(gen):
    states = torch.rand(3, 2, 8, 8, generator=gen) < 0.5
    fine = state_bits(states, "zlib")
    coarse = state_bits(states, "lzma", k=4)
    assert fine.shape == coarse.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert fine[i, j] == compressed_bits(states[i, j], "zlib")
            lv = coarse_grain(states[i, j], 4).to(torch.uint8)
            assert coarse[i, j] == compressed_bits(lv, "lzma")


def test_mixing_rejects_bad_arguments(gen):
    with pytest.raises(ValueError, match="height"):
        cream_on_top(3, 4)
    with pytest.raises(TypeError, match="state"):
        mix(torch.zeros(1, 2, 2), 1, gen)
    with pytest.raises(ValueError, match="state"):
        mix(torch.zeros(2, 2, dtype=torch.bool), 1, gen)
    with pytest.raises(ValueError, match="steps"):
        mix(cream_on_top(2, 2), -1, gen)
    with pytest.raises(TypeError, match="steps"):
        mix(cream_on_top(2, 2), 1.0, gen)
    with pytest.raises(ValueError, match="times"):
        mixing_run(cream_on_top(2, 2), [3, 1], gen)
    with pytest.raises(ValueError, match="times"):
        mixing_run(cream_on_top(2, 2), [], gen)
    with pytest.raises(TypeError, match="states"):
        state_bits(torch.zeros(2, 4, 4), "zlib")
    with pytest.raises(ValueError, match="states"):
        state_bits(torch.zeros(4, dtype=torch.bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixing_on_cuda_conserves_cream():
    g = torch.Generator(device="cuda").manual_seed(0)
    out = mix(cream_on_top(8, 8, 2, device="cuda"), 10, g)
    assert out.device.type == "cuda" and out.sum().item() == 64
    assert state_bits(out, k=4).shape == (2,)


def test_image_grid_from_plotting_lines_up_fine_and_coarse_images():
    """Reference: the matplotlib artists read back (extent, titles, labels, colour bar)."""
    from papers30.plotting import image_grid

    fine = torch.rand(8, 8) < 0.5
    coarse = coarse_grain(fine, 4).float() / 2
    fig = image_grid([[fine, fine], [coarse, coarse]], ["fine", "coarse"], ["t = 0", "t = 1"],
                     extent=(8, 8), colorbar_label="cream fraction")
    axes = fig.axes[:4]
    assert [ax.get_title() for ax in axes[:2]] == ["t = 0", "t = 1"]
    assert axes[0].get_ylabel().startswith("fine") and axes[2].get_ylabel().startswith("coarse")
    assert axes[2].get_xlabel() == "x (cells)"
    assert all(ax.images[0].get_extent() == [0, 8, 8, 0] for ax in axes)
    assert fig.axes[-1].get_ylabel() == "cream fraction"


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 4, 6), (2, 1, 3, 7)])
def test_row_arrangement_bits_matches_math_comb(shape, gen):
    from papers30.complexity import row_arrangement_bits

    states = torch.rand(*shape, generator=gen) < 0.4
    got = row_arrangement_bits(states)
    assert got.shape == shape[:-2] and got.dtype == torch.float64
    flat = states.reshape(-1, *shape[-2:])
    for i, s in enumerate(flat):
        want = sum(math.log2(math.comb(shape[-1], int(r.sum()))) for r in s)
        assert got.reshape(-1)[i].item() == pytest.approx(want, abs=1e-9)
    with pytest.raises(TypeError, match="states"):
        row_arrangement_bits(torch.zeros(2, 2))
