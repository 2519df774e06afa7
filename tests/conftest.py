"""Shared fixtures for the unit tests.

* matplotlib renders off-screen (Agg) and every test closes its figures;
* the ``PAPERS30_*`` environment variables are cleared around each test, so a
  developer's shell (or the book build) cannot change what a test sees;
* torch uses one thread and hypothesis runs few, undeadlined examples, so the
  suite fits a 2-core CPU;
* :func:`torch_state_dict` maps a papers30 module's parameters onto the names
  of the corresponding ``torch.nn`` module, so tests can copy weights.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The tensors here are tiny: one intra-op thread is fastest, and it keeps the
# suite fast when the other core is busy (measured on the 2-core machine with a
# book build running: transformer tests 6 s with one thread, 22 s with two).
torch.set_num_threads(1)

settings.register_profile(
    "papers30",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("papers30")

def pytest_configure(config):
    """Wrap the public API so that tests/test_fuzz.py can replay valid calls with wrong arguments."""
    config.addinivalue_line("markers", "fuzz: replays recorded calls with wrong arguments (runs last)")
    from tests import _fuzz

    _fuzz.install()


def pytest_collection_modifyitems(session, config, items):
    """The fuzz replays calls recorded by every other test, so it runs last."""
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is not None)


ENV_VARS = ("PAPERS30_LEDGER_DIR", "PAPERS30_SCALE", "PAPERS30_DEVICE", "PAPERS30_THREADS", "PAPERS30_SEED",
            "PAPERS30_TRACE_DIR", "PAPERS30_FIGURE_DIR")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)
    plt.close("all")


@pytest.fixture
def gen() -> torch.Generator:
    """A freshly seeded CPU generator, so each test draws the same numbers."""
    return torch.Generator().manual_seed(1234)


def torch_state_dict(ours: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``ours.state_dict()`` renamed for torch's modules.

    ``torch.nn.MultiheadAttention`` stores the three input projections as one
    ``in_proj_weight`` (rows: query, key, value) and one ``in_proj_bias``;
    every other name (``out_proj``, ``linear1``, ``norm1`` ...) is shared.
    """
    state = ours.state_dict()
    out: dict[str, torch.Tensor] = {}
    prefixes = sorted({k[: -len("q_proj.weight")] for k in state if k.endswith("q_proj.weight")})
    for p in prefixes:
        out[p + "in_proj_weight"] = torch.cat([state[p + f"{n}_proj.weight"] for n in "qkv"])
        if p + "q_proj.bias" in state:
            out[p + "in_proj_bias"] = torch.cat([state[p + f"{n}_proj.bias"] for n in "qkv"])
    for k, v in state.items():
        if not any(k.startswith(p) and k[len(p) :].split(".")[0] in ("q_proj", "k_proj", "v_proj") for p in prefixes):
            out[k] = v
    return out


@pytest.fixture
def copy_to_torch():
    """``copy_to_torch(ours, theirs)`` loads ours' weights into the torch module (strict names)."""

    def copy(ours: torch.nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
        theirs.load_state_dict(torch_state_dict(ours), strict=True)
        return theirs

    return copy
