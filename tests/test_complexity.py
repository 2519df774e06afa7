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


# ------------------------------------------------------------------ chapter 19: the coffee automaton


def _swap_reference_loop(state, u):
    """Slow reference for one step of :func:`mix`: the four sweeps as Python loops over pairs,
    driven by the same uniform draws ``u`` (one tensor per sweep)."""
    s = state.clone()
    b, h, w = s.shape
    sweeps = [(1, 0), (1, 1), (2, 0), (2, 1)]
    for (axis, off), draws in zip(sweeps, u):
        for n in range(b):
            if axis == 1:
                for i in range((h - off) // 2):
                    for x in range(w):
                        y = off + 2 * i
                        if draws[n, i, x] < 0.5:
                            s[n, y, x], s[n, y + 1, x] = s[n, y + 1, x].clone(), s[n, y, x].clone()
            else:
                for y in range(h):
                    for j in range((w - off) // 2):
                        x = off + 2 * j
                        if draws[n, y, j] < 0.5:
                            s[n, y, x], s[n, y, x + 1] = s[n, y, x + 1].clone(), s[n, y, x].clone()
    return s


@pytest.mark.parametrize("b,h,w", [(1, 2, 1), (2, 4, 5), (1, 6, 6), (3, 5, 3)])
def test_interacting_step_matches_slow_loop_with_same_draws(b, h, w):
    """Reference: the swaps done one pair at a time with the generator's same uniform draws."""
    state = torch.rand(b, h, w, generator=torch.Generator().manual_seed(7)) < 0.5
    got = mix(state, 1, torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    shapes = [(b, h // 2, w), (b, (h - 1) // 2, w), (b, h, w // 2), (b, h, (w - 1) // 2)]
    u = [torch.rand(s, generator=g) for s in shapes]
    assert torch.equal(got, _swap_reference_loop(state, u))


@pytest.mark.parametrize("b,h,w,steps", [(1, 2, 1, 3), (2, 4, 6, 2), (3, 6, 3, 1), (1, 8, 8, 0)])
def test_random_walk_matches_slow_loop_with_same_draws(b, h, w, steps):
    """Reference: each particle moved in a Python loop with the generator's same direction draws."""
    from papers30.complexity import cream_particles, random_walk

    pos = cream_particles(h, w, b)
    got = random_walk(pos, h, w, steps, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    want = pos.tolist()
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    for _ in range(2 * steps):
        d = torch.randint(0, 4, pos.shape[:2], generator=g)
        for n in range(b):
            for m in range(pos.shape[1]):
                r, c = want[n][m][0] + moves[d[n, m]][0], want[n][m][1] + moves[d[n, m]][1]
                if 0 <= r < h and 0 <= c < w:
                    want[n][m] = [r, c]
    assert got.dtype == pos.dtype and got.tolist() == want


@pytest.mark.parametrize("model", ["interacting", "non-interacting"])
@pytest.mark.parametrize("size,batch", [(2, 1), (6, 2), (10, 3)])
def test_coffee_run_conserves_cream_in_both_models(model, size, batch, gen):
    """Reference: the cream of the unmixed cup, size**2 / 2 cells, counted in every snapshot."""
    from papers30.complexity import coffee_run

    times = [0, 1, 5, 20]
    snaps = coffee_run(size, times, model, batch, gen)
    assert snaps.shape == (len(times), batch, size, size)
    assert snaps.dtype == (torch.bool if model == "interacting" else torch.int64)
    totals = snaps.reshape(len(times), batch, -1).sum(-1)
    assert (totals == size * size // 2).all()
    assert torch.equal(snaps[0], cream_on_top(size, size, batch).to(snaps.dtype))
    if size > 2:  # a 2x2 cup can come back to its start by chance
        assert not torch.equal(snaps[-1], snaps[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["interacting", "non-interacting"])
def test_coffee_run_on_cuda_conserves_cream(model):
    from papers30.complexity import coffee_run

    g = torch.Generator("cuda").manual_seed(0)
    snaps = coffee_run(16, [0, 10, 100], model, 2, g, device="cuda")
    assert snaps.device.type == "cuda"
    assert (snaps.reshape(3, 2, -1).sum(-1) == 128).all()


def test_occupancy_counts_shared_cells_by_hand():
    from papers30.complexity import occupancy

    pos = torch.tensor([[[0, 0], [0, 0], [1, 2]], [[1, 1], [0, 2], [0, 2]]])
    want = torch.tensor([[[2, 0, 0], [0, 0, 1]], [[0, 0, 2], [0, 1, 0]]])
    assert torch.equal(occupancy(pos, 2, 3), want)


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 7), (2, 5, 6), (9, 2)])
@pytest.mark.parametrize("g", [1, 3, 5, 11])
def test_window_sums_match_brute_force_loops(shape, g, gen):
    """Reference: the clipped window summed cell by cell."""
    from papers30.complexity import window_sums

    x = torch.randint(0, 3, shape, generator=gen)
    sums, cells = window_sums(x, g)
    h, w = shape[-2:]
    r = g // 2
    flat = x.reshape(-1, h, w)
    for i in range(h):
        for j in range(w):
            lo_y, hi_y, lo_x, hi_x = max(0, i - r), min(h, i + r + 1), max(0, j - r), min(w, j + r + 1)
            assert cells[i, j] == (hi_y - lo_y) * (hi_x - lo_x)
            want = flat[:, lo_y:hi_y, lo_x:hi_x].sum(dim=(1, 2))
            assert torch.equal(sums.reshape(-1, h, w)[:, i, j], want)


def test_coarse_threshold_by_hand():
    """A 4x4 cup, g = 3, three levels, worked on paper (window sum / window cells)."""
    from papers30.complexity import coarse_threshold

    x = torch.tensor([[1, 1, 1, 1],
                      [1, 1, 0, 1],
                      [0, 0, 0, 0],
                      [0, 1, 0, 0]], dtype=torch.bool)
    # corner windows have 4 cells, edge windows 6, inner windows 9. E.g. (1, 0): 4 cream
    # of 6 = 2/3 -> level 2 (an exact edge); (1, 1): 5 of 9 -> 1; (2, 1): 3 of 9 = 1/3 -> 1
    # (an exact edge); (2, 3): 1 of 6 -> 0; (3, 1): 1 of 6 -> 0
    want = torch.tensor([[2, 2, 2, 2],
                         [2, 1, 1, 1],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]])
    assert torch.equal(coarse_threshold(x, 3), want)


@given(st.lists(st.integers(0, 2), min_size=25, max_size=25), st.sampled_from([1, 3, 5]),
       st.integers(2, 7))
def test_coarse_threshold_matches_quantise_of_exact_fractions(cells, g, levels):
    """Reference: floor(levels * mean) of the clipped window's exact mean, above 1 -> top level."""
    from papers30.complexity import coarse_threshold

    x = torch.tensor(cells).view(5, 5)
    got = coarse_threshold(x, g, levels)
    r = g // 2
    for i in range(5):
        for j in range(5):
            window = x[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            mean = Fraction(int(window.sum()), window.numel())
            assert got[i, j] == min(math.floor(levels * mean), levels - 1)


def test_coffee_bits_matches_compressed_bits_of_each_state(gen):
    from papers30.complexity import coarse_threshold, coffee_bits

    states = torch.rand(2, 3, 8, 8, generator=gen) < 0.5
    fine, coarse = coffee_bits(states), coffee_bits(states, g=3, method="bz2")
    assert fine.shape == coarse.shape == (2, 3)
    for s in range(2):
        for b in range(3):
            assert fine[s, b] == compressed_bits(states[s, b])
            pic = coarse_threshold(states[s, b], 3).to(torch.uint8)
            assert coarse[s, b] == compressed_bits(pic, "bz2")
    counts = torch.randint(0, 4, (5, 6), generator=gen)
    assert coffee_bits(counts).item() == compressed_bits(counts)


def test_log_times_are_sorted_integers_with_equal_ratios():
    from papers30.complexity import log_times

    t = log_times(10_000, 5)
    assert t == [0, 1, 10, 100, 1000, 10_000]
    assert log_times(3, 1) == [0, 3]
    assert log_times(1, 10) == [0, 1]


def test_peak_finds_the_first_maximum():
    from papers30.complexity import peak

    assert peak([0, 10, 20, 30], torch.tensor([1.0, 5.0, 5.0, 2.0])) == (10.0, 5.0, 1)
    assert peak([7], torch.tensor([3.0])) == (7.0, 3.0, 0)


@given(st.floats(-3, 3), st.floats(0.1, 100))
def test_power_law_fit_recovers_a_known_exponent(a, c):
    """Reference: exact data y = c x**a."""
    from papers30.complexity import power_law_fit

    x = [16, 24, 32, 48, 64, 96]
    got_a, got_c = power_law_fit(x, [c * v**a for v in x])
    assert got_a == pytest.approx(a, abs=1e-9)
    assert got_c == pytest.approx(c, rel=1e-9)


def test_power_law_fit_with_noise_is_close(gen):
    from papers30.complexity import power_law_fit

    x = torch.linspace(10, 1000, 50, dtype=torch.float64)
    y = 3 * x**1.5 * torch.exp(0.05 * torch.randn(50, generator=gen, dtype=torch.float64))
    a, _ = power_law_fit(x.tolist(), y.tolist())
    assert abs(a - 1.5) < 0.05


def test_coffee_automaton_rejects_bad_arguments(gen):
    from papers30.complexity import (
        coarse_threshold,
        coffee_bits,
        coffee_run,
        cream_particles,
        log_times,
        occupancy,
        peak,
        power_law_fit,
        random_walk,
        window_sums,
    )

    with pytest.raises(ValueError, match="height"):
        cream_particles(3, 4)
    with pytest.raises(TypeError, match="positions"):
        random_walk(torch.zeros(1, 2, 2), 4, 4, 1)
    with pytest.raises(ValueError, match="positions"):
        random_walk(torch.zeros(1, 2, 3, dtype=torch.long), 4, 4, 1)
    with pytest.raises(ValueError, match="positions"):
        random_walk(torch.tensor([[[4, 0]]]), 4, 4, 1)
    with pytest.raises(ValueError, match="steps"):
        random_walk(cream_particles(2, 2), 2, 2, -1)
    with pytest.raises(TypeError, match="steps"):
        random_walk(cream_particles(2, 2), 2, 2, 1.0)
    with pytest.raises(TypeError, match="positions"):
        occupancy([[0, 0]], 2, 2)
    with pytest.raises(ValueError, match="model"):
        coffee_run(4, [0, 1], "gas")
    with pytest.raises(ValueError, match="times"):
        coffee_run(4, [3, 1])
    with pytest.raises(TypeError, match="times"):
        coffee_run(4, [0.5])
    with pytest.raises(ValueError, match="g"):
        window_sums(torch.zeros(4, 4, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="x"):
        window_sums(torch.zeros(4, 4), 3)
    with pytest.raises(ValueError, match="x"):
        window_sums(torch.zeros(4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="levels"):
        coarse_threshold(torch.zeros(4, 4, dtype=torch.long), 3, 0)
    with pytest.raises(ValueError, match="method"):
        coffee_bits(torch.zeros(4, 4, dtype=torch.bool), method="gzip")
    with pytest.raises(ValueError, match="states"):
        coffee_bits(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="end"):
        log_times(0, 5)
    with pytest.raises(ValueError, match="times"):
        peak([0, 1], torch.tensor([1.0]))
    with pytest.raises(ValueError, match="y"):
        power_law_fit([1, 2], [1.0, -1.0])
    with pytest.raises(ValueError, match="x"):
        power_law_fit([2, 2], [1.0, 3.0])
    with pytest.raises(ValueError, match="y"):
        power_law_fit([1, 2, 3], [1.0, 3.0])


# ------------------------------------------------------------------ diffusion constants


def test_mix_lone_cream_cell_spreads_with_second_moment_two_t_minus_half():
    """Reference: the closed form 2t - 1/2 per axis (D = 1) for a lone cell under brick-wall sweeps.

    In each sweep the cell moves with probability 1/2; a move puts it in a pair that
    continues the same way, staying turns it round, so successive moves correlate
    (covariance 1/4) and K sweeps give K/2 + 2 (K - 1)/4 = K - 1/2 with K = 2t.
    Independent moves (the old D = 1/2) would give t.
    """
    b, side, t = 20_000, 17, 4  # walls out of reach: at most 2t = 8 cells from the centre 8
    state = torch.zeros(b, side, side, dtype=torch.bool)
    state[:, 8, 8] = True
    out = mix(state, t, torch.Generator().manual_seed(0))
    where = out.view(b, -1).float().argmax(dim=1)
    dy, dx = (where // side - 8).double(), (where % side - 8).double()
    # the sample mean of dy**2 has a standard error of about 0.08 here
    assert (dy**2).mean().item() == pytest.approx(2 * t - 0.5, abs=0.4)
    assert (dx**2).mean().item() == pytest.approx(2 * t - 0.5, abs=0.4)


def test_random_walk_spreads_with_variance_t_per_axis():
    """Reference: two moves per step, each changing the row (or column) by one with probability 1/2: t."""
    from papers30.complexity import random_walk

    t, side = 6, 31
    pos = torch.full((4, 5000, 2), 15, dtype=torch.long)
    out = random_walk(pos, side, side, t, torch.Generator().manual_seed(0))
    second = ((out - 15).double() ** 2).mean(dim=(0, 1))  # standard error about 0.12
    assert second.tolist() == pytest.approx([t, t], abs=0.5)


@pytest.mark.parametrize("h", [4, 9, 32])
def test_mode_amplitude_projects_on_the_slowest_cosine(h):
    """Reference: a profile made of that cosine (plus a constant and a faster mode) gives its amplitude."""
    from papers30.complexity import mode_amplitude

    y = torch.arange(h, dtype=torch.float64)
    profile = 0.4 + 0.25 * torch.cos(math.pi * (y + 0.5) / h) + 0.1 * torch.cos(2 * math.pi * (y + 0.5) / h)
    states = profile[:, None].expand(h, 5)  # every row constant
    assert mode_amplitude(states).item() == pytest.approx(0.25, abs=1e-12)
    cup = cream_on_top(64, 8)[0]
    # the step profile's coefficient: (2/H) sum_{y < H/2} cos(pi (y + 1/2) / H) -> 2/pi
    want = 2 / 64 * sum(math.cos(math.pi * (yy + 0.5) / 64) for yy in range(32))
    assert mode_amplitude(cup).item() == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(2 / math.pi, rel=1e-3)


def test_decay_rate_recovers_a_known_rate():
    from papers30.complexity import decay_rate

    t = [0.0, 3.0, 10.0, 40.0]
    assert decay_rate(t, [2.5 * math.exp(-0.07 * s) for s in t]) == pytest.approx(0.07, abs=1e-12)
    with pytest.raises(ValueError, match="values"):
        decay_rate([0, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match="times"):
        decay_rate([1, 1], [1.0, 2.0])


def test_mode_decay_gives_the_two_diffusion_constants():
    """Reference: the derived D = 1 (swaps) and D = 1/2 (walkers), to within the noise of 64 cups of 32."""
    from papers30.complexity import coffee_run, decay_rate, mode_amplitude

    n, times = 32, [20, 40, 60, 80, 100, 120]
    rates = {}
    for model in ("interacting", "non-interacting"):
        snaps = coffee_run(n, times, model, 64, torch.Generator().manual_seed(5))
        amp = mode_amplitude(snaps).mean(dim=1)
        rates[model] = decay_rate(times, amp.tolist()) * n * n / math.pi**2
    assert rates["interacting"] == pytest.approx(1.0, abs=0.1)
    assert rates["non-interacting"] == pytest.approx(0.5, abs=0.06)


# ------------------------------------------------------------------ adjusted coarse-graining


def _row_majority_loop(levels):
    out = levels.clone()
    for idx in itertools.product(*[range(s) for s in levels.shape[:-1]]):
        row = levels[idx].tolist()
        counts = {v: row.count(v) for v in set(row)}
        top = max(counts.values())
        majority = min(v for v, c in counts.items() if c == top)
        out[idx] = torch.tensor([majority if abs(v - majority) <= 1 else v for v in row])
    return out


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 4, 6), (7, 2)])
def test_row_majority_adjust_matches_a_loop_over_rows(shape, gen):
    """Reference: each row's most common level (lowest on ties) found with a dict, cell by cell."""
    from papers30.complexity import row_majority_adjust

    levels = torch.randint(0, 7, shape, generator=gen)
    assert torch.equal(row_majority_adjust(levels), _row_majority_loop(levels))


def test_row_majority_adjust_by_hand():
    from papers30.complexity import row_majority_adjust

    levels = torch.tensor([[3, 3, 4, 2, 5, 3],   # majority 3: 4 and 2 snap, 5 stays
                           [0, 1, 1, 0, 6, 6],   # tie of 0, 1 and 6 (two each): lowest, 0
                           [6, 6, 6, 6, 6, 6]])
    want = torch.tensor([[3, 3, 3, 3, 5, 3],
                         [0, 0, 0, 0, 6, 6],
                         [6, 6, 6, 6, 6, 6]])
    assert torch.equal(row_majority_adjust(levels), want)


def test_adjusted_coarse_threshold_flattens_a_noisy_gradient(gen):
    """The artefact of the paper's Fig. 9: a smooth top-to-bottom gradient plus a little noise.

    Thresholded, its border rows flicker between two levels; adjusted, every row is one level.
    """
    from papers30.complexity import adjusted_coarse_threshold, coarse_threshold

    h, w = 40, 60
    p = torch.linspace(0.95, 0.05, h)[:, None] + 0.02 * torch.randn(h, w, generator=gen)
    p = p.clamp(0, 1)
    counts = sum((torch.rand(h, w, generator=gen) < p).long() for _ in range(2))  # 0..2 per cell
    plain = coarse_threshold(counts, 9, 7)
    adjusted = adjusted_coarse_threshold(counts, 9, 7)
    assert torch.equal(adjusted, _row_majority_loop(plain))
    flicker = sum(len(set(r.tolist())) > 1 for r in plain)
    flat = sum(len(set(r.tolist())) == 1 for r in adjusted)
    assert flicker > h // 4 and flat == h


def test_coffee_bits_adjusted_compresses_the_adjusted_picture(gen):
    from papers30.complexity import adjusted_coarse_threshold, coffee_bits

    states = torch.rand(2, 8, 10, generator=gen) < 0.5
    got = coffee_bits(states, g=3, levels=7, adjusted=True)
    for s in range(2):
        pic = adjusted_coarse_threshold(states[s], 3, 7).to(torch.uint8)
        assert got[s] == compressed_bits(pic)
    with pytest.raises(ValueError, match="adjusted"):
        coffee_bits(states, adjusted=True)


# ------------------------------------------------------------------ counting helpers


@pytest.mark.parametrize("shape,k", [((4, 6), 2), ((2, 3, 8, 8), 4), ((1, 1), 1), ((6, 6), 3)])
def test_block_arrangement_bits_match_arrangement_entropy_per_block(shape, k, gen):
    """Reference: arrangement_entropy_bits(k*k, c_b) summed over blocks in a loop."""
    from papers30.complexity import block_arrangement_bits

    states = torch.rand(shape, generator=gen) < 0.4
    got = block_arrangement_bits(states, k)
    h, w = shape[-2:]
    flat = states.reshape(-1, h, w)
    want = [sum(arrangement_entropy_bits(k * k, int(s[i:i + k, j:j + k].sum()))
                for i in range(0, h, k) for j in range(0, w, k)) for s in flat]
    assert got.shape == shape[:-2]
    assert got.reshape(-1).tolist() == pytest.approx(want, abs=1e-9)


def test_differing_pairs_match_a_loop_over_neighbours(gen):
    """Reference: every vertical and horizontal neighbour pair compared one at a time."""
    from papers30.complexity import differing_pairs

    states = torch.rand(3, 5, 7, generator=gen) < 0.5
    got = differing_pairs(states)
    for b in range(3):
        s = states[b].tolist()
        want = sum(s[i][j] != s[i + 1][j] for i in range(4) for j in range(7))
        want += sum(s[i][j] != s[i][j + 1] for i in range(5) for j in range(6))
        assert got[b].item() == want
    assert differing_pairs(cream_on_top(6, 9)).tolist() == [9]  # only the cream-coffee border


def test_new_helpers_reject_bad_arguments():
    from papers30.complexity import (
        block_arrangement_bits,
        differing_pairs,
        mode_amplitude,
        row_majority_adjust,
    )

    with pytest.raises(TypeError, match="levels"):
        row_majority_adjust(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="levels"):
        row_majority_adjust(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="levels"):
        row_majority_adjust(torch.tensor([[-1, 0]]))
    with pytest.raises(ValueError, match="k"):
        block_arrangement_bits(torch.zeros(4, 6, dtype=torch.bool), 4)
    with pytest.raises(TypeError, match="states"):
        block_arrangement_bits(torch.zeros(4, 4), 2)
    with pytest.raises(ValueError, match="states"):
        differing_pairs(torch.zeros(4))
    with pytest.raises(TypeError, match="states"):
        mode_amplitude([[0, 1]])


# --- chapter 25: normalized compression distance ------------------------------------


def test_ncd_is_the_formula_on_hand_computed_compressed_lengths():
    import zlib

    from papers30.complexity import ncd

    x, y = b"abracadabra" * 20, b"alakazam" * 25

    def c(b: bytes) -> int:
        return 8 * len(zlib.compress(b, 9))

    want = (c(x + y) - min(c(x), c(y))) / max(c(x), c(y))
    assert ncd(x, y) == pytest.approx(want)
    assert ncd(x, x) < 0.2 < ncd(x, bytes(range(256)) * 2)


def test_ncd_matrix_is_the_symmetrised_pairwise_ncd():
    from papers30.complexity import ncd, ncd_matrix

    items = [b"ab" * 40, b"ba" * 40, b"xyz" * 30, bytes(range(100))]
    d = ncd_matrix(items, "bz2")
    for i in range(4):
        assert d[i, i] == 0
        for j in range(4):
            if i != j:
                assert d[i, j].item() == pytest.approx(0.5 * (ncd(items[i], items[j], "bz2")
                                                              + ncd(items[j], items[i], "bz2")))


def test_size_distance_uses_only_the_compressed_sizes():
    from papers30.complexity import compressed_bits, size_distance

    items = [b"a" * 300, bytes(range(256)), b"ab" * 100]
    c = [compressed_bits(x) for x in items]
    d = size_distance(items)
    assert d[0, 1].item() == pytest.approx(abs(c[0] - c[1]) / max(c[0], c[1]))
    assert torch.equal(d, d.T)


def test_ncd_functions_reject_bad_input():
    from papers30.complexity import ncd, ncd_matrix, size_distance

    with pytest.raises(TypeError, match="x"):
        ncd("text", b"x")
    with pytest.raises(ValueError, match="y"):
        ncd(b"x", b"")
    with pytest.raises(ValueError, match="method"):
        ncd(b"x", b"y", "gzip")
    with pytest.raises(ValueError, match="items"):
        ncd_matrix([b"x"])
    with pytest.raises(TypeError, match="items"):
        ncd_matrix(b"xy")
    with pytest.raises(TypeError, match=r"items\[1\]"):
        size_distance([b"x", 3])
