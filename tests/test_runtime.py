"""papers30.runtime: device choice, seeding and the scale setting, by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import papers30
from papers30.runtime import actual_seed, generator, get_device, pick, scale, seed_everything, seed_offset, seeds


@pytest.mark.parametrize("available,kind", [(True, "cuda"), (False, "cpu")])
def test_get_device_is_cuda_iff_cuda_available(monkeypatch, available, kind):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert get_device() == torch.device(kind)


def test_get_device_default_agrees_with_torch():
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_get_device_honours_environment_variable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("PAPERS30_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_get_device_prefer_beats_environment(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("PAPERS30_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "meta", "gpu", "cuda:x"])
def test_get_device_rejects_unknown_devices_in_one_line(monkeypatch, bad):
    monkeypatch.setenv("PAPERS30_DEVICE", bad)
    with pytest.raises(ValueError, match="PAPERS30_DEVICE") as err:
        get_device()
    assert "\n" not in str(err.value) and repr(bad) in str(err.value)
    with pytest.raises(ValueError, match="prefer"):
        get_device(bad)


def test_get_device_rejects_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PAPERS30_DEVICE", "cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        get_device()


def test_get_device_rejects_non_string_prefer():
    with pytest.raises(TypeError, match="prefer"):
        get_device(3)


def test_seed_offset_shifts_every_seed_by_hand(monkeypatch):
    assert seed_offset() == 0 and actual_seed(5) == 5 and seeds(3) == [0, 1, 2] and seeds(2, start=4) == [4, 5]
    monkeypatch.setenv("PAPERS30_SEED", "100")
    assert seed_offset() == 100 and actual_seed(5) == 105
    assert seeds(3) == [0, 1, 2]  # names stay; the shift is applied where they are used
    ref = torch.rand(3, generator=torch.Generator().manual_seed(105))
    assert torch.equal(torch.rand(3, generator=generator(5)), ref)
    assert torch.equal(torch.rand(3, generator=seed_everything(5)), ref)
    seed_everything(5)
    assert torch.equal(torch.rand(3), ref)  # the global generator too


@pytest.mark.parametrize("bad", ["x", "1.5", "1e3"])
def test_seed_offset_rejects_non_integers_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("PAPERS30_SEED", bad)
    with pytest.raises(ValueError, match="PAPERS30_SEED"):
        seed_everything(0)


@pytest.mark.parametrize("n,start,exc", [(0, 0, ValueError), (1.0, 0, TypeError), (True, 0, TypeError),
                                         (2, "0", TypeError)])
def test_seeds_rejects_bad_arguments(n, start, exc):
    with pytest.raises(exc, match="n|start"):
        seeds(n, start)


def test_generator_rejects_non_int():
    with pytest.raises(TypeError, match="seed"):
        generator(1.5)


def test_seed_everything_makes_every_generator_reproducible():
    def draw():
        g = seed_everything(7)
        return torch.rand(5), np.random.rand(3), random.random(), torch.rand(2, generator=g)

    a, b = draw(), draw()
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and torch.equal(a[3], b[3])
    seed_everything(8)
    assert not torch.equal(torch.rand(5), a[0])
    assert torch.are_deterministic_algorithms_enabled()


def test_seed_everything_returns_generator_seeded_like_torch_manual_seed():
    g = seed_everything(3)
    assert isinstance(g, torch.Generator)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(3)))


def test_seed_everything_accepts_seeds_beyond_numpy_range():
    seed_everything(2**40)  # numpy takes seeds < 2**32: reduced modulo


@pytest.mark.parametrize("seed", [1.0, "1", True])
def test_seed_everything_rejects_non_int(seed):
    with pytest.raises(TypeError, match="seed"):
        seed_everything(seed)


@pytest.mark.parametrize(
    "value,want", [(None, "small"), ("", "small"), ("small", "small"), ("paper", "paper"), (" PAPER ", "paper"),
                   ("large", "large")]
)
def test_scale_and_pick_read_the_environment(monkeypatch, value, want):
    if value is not None:
        monkeypatch.setenv("PAPERS30_SCALE", value)
    assert scale() == want
    assert pick("s", "p", large="l") == want[0]
    assert pick("s", "p") == ("p" if want == "large" else want[0])  # no large setting: the paper one


@pytest.mark.parametrize("value", ["huge", "smal", "0"])
def test_scale_rejects_unknown_value_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("PAPERS30_SCALE", value)
    with pytest.raises(ValueError, match="PAPERS30_SCALE"):
        scale()
    with pytest.raises(ValueError, match="PAPERS30_SCALE"):
        pick(1, 2)


def test_package_reexports_runtime():
    assert papers30.get_device is get_device and papers30.pick is pick
    assert papers30.scale is scale and papers30.seed_everything is seed_everything
    assert papers30.seeds is seeds and papers30.generator is generator and papers30.actual_seed is actual_seed
    assert set(papers30.__all__) == {"actual_seed", "configure_threads", "generator", "get_device", "pick", "scale",
                                     "seed_everything", "seeds", "__version__"}


def test_configure_threads_follows_the_environment_reference_torch_get_num_threads(monkeypatch):
    import torch

    from papers30 import configure_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("PAPERS30_THREADS", "1")
        assert configure_threads() == 1 == torch.get_num_threads()
        monkeypatch.delenv("PAPERS30_THREADS")
        torch.set_num_threads(before)
        assert configure_threads() == before  # unset: torch's default is left alone
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_configure_threads_rejects_bad_values_naming_the_variable(monkeypatch, bad):
    from papers30 import configure_threads

    monkeypatch.setenv("PAPERS30_THREADS", bad)
    with pytest.raises(ValueError, match="PAPERS30_THREADS"):
        configure_threads()


def test_wait_until_alone_returns_at_once_outside_the_build(monkeypatch):
    from papers30.runtime import wait_until_alone

    monkeypatch.delenv("PAPERS30_ALONE_FLAG", raising=False)
    assert wait_until_alone() < 0.05


def test_wait_until_alone_waits_for_the_executors_flag(monkeypatch, tmp_path):
    """Reference: a thread that creates the flag file after 0.3 s, as the executor does."""
    import threading
    import time

    from papers30.runtime import wait_until_alone

    flag = tmp_path / "alone"
    monkeypatch.setenv("PAPERS30_ALONE_FLAG", str(flag))
    with pytest.raises(TimeoutError, match="alone"):
        wait_until_alone(timeout=0.2)
    timer = threading.Timer(0.3, flag.touch)
    start = time.monotonic()
    timer.start()
    waited = wait_until_alone(timeout=5)
    assert flag.exists() and 0.3 <= waited <= time.monotonic() - start + 1e-6 < 2


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1.0, ValueError), (True, TypeError), ("5", TypeError)])
def test_wait_until_alone_rejects_bad_timeouts(bad, exc):
    from papers30.runtime import wait_until_alone

    with pytest.raises(exc, match="timeout"):
        wait_until_alone(timeout=bad)
