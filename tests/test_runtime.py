"""papers30.runtime: device choice, seeding and the scale setting, by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import papers30
from papers30.runtime import get_device, pick, scale, seed_everything


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
    monkeypatch.setenv("PAPERS30_DEVICE", "meta")
    assert get_device() == torch.device("meta")


def test_get_device_prefer_beats_environment(monkeypatch):
    monkeypatch.setenv("PAPERS30_DEVICE", "meta")
    assert get_device("cpu") == torch.device("cpu")


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
    "value,want", [(None, "small"), ("", "small"), ("small", "small"), ("paper", "paper"), (" PAPER ", "paper")]
)
def test_scale_and_pick_read_the_environment(monkeypatch, value, want):
    if value is not None:
        monkeypatch.setenv("PAPERS30_SCALE", value)
    assert scale() == want
    assert pick("s", "p") == want[0]


@pytest.mark.parametrize("value", ["large", "smal", "0"])
def test_scale_rejects_unknown_value_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("PAPERS30_SCALE", value)
    with pytest.raises(ValueError, match="PAPERS30_SCALE"):
        scale()
    with pytest.raises(ValueError, match="PAPERS30_SCALE"):
        pick(1, 2)


def test_package_reexports_runtime():
    assert papers30.get_device is get_device and papers30.pick is pick
    assert papers30.scale is scale and papers30.seed_everything is seed_everything
    assert set(papers30.__all__) == {"configure_threads", "get_device", "pick", "scale", "seed_everything", "__version__"}


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
