"""Scaling laws of Kaplan et al. (2020): parameter counts, power-law fits, one model's training run.

Used by chapter 22 (*Scaling Laws for Neural Language Models*).

* :func:`non_embedding_params` counts a model's parameters without its token
  embedding (the paper's ``N``), and :func:`kaplan_params` gives the paper's
  approximation ``N ~ 2 d_model n_layer (2 d_attn + d_ff)``;
* :func:`fit_power_law` fits the paper's ``L(N) = (N_c / N)^alpha`` by least
  squares on ``log L`` against ``log N`` (a straight line), with the
  exponent's standard error from the fit's covariance, or, with
  ``irreducible=True``, ``L(N) = E + (N_c / N)^alpha``. At a fixed number of steps ``S`` the paper's ``L(N, S) = (N_c / N)^alpha_N
  + (S_c / S)^alpha_S`` (eq. 1.6) is of this second form, with ``E`` the
  term of ``S``; :func:`warmup_cosine` is the learning-rate schedule;
* :func:`train_lm` trains one decoder-only
  :class:`~papers30.transformer.TransformerLM` on characters of a committed
  text and returns its :class:`~papers30.training.History`; ``stop_after``
  lets a recorded larger run be replayed.

Shapes: ``M`` number of measured points (models, or models times steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import least_squares
from torch import nn

from papers30 import _checks
from papers30.data.text import char_corpus
from papers30.runtime import generator
from papers30.training import History, fit
from papers30.transformer import TransformerLM


def non_embedding_params(model: nn.Module) -> int:
    """The number of parameters of ``model`` outside its token embedding.

    Kaplan et al. count ``N`` without the vocabulary and position embeddings;
    :class:`~papers30.transformer.TransformerLM` keeps its token table in
    ``embed`` (shared with the output projection) and its positions in a
    fixed buffer, so ``N`` is every parameter whose name does not start with
    ``embed``. Biases and layer norms are counted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("embed."))


def kaplan_params(num_layers: int, d_model: int, dim_feedforward: int) -> int:
    """The paper's approximate count ``2 d_model n_layer (2 d_attn + d_ff)`` with ``d_attn = d_model``.

    It leaves out biases and layer norms (``12 n_layer d_model^2`` when
    ``d_ff = 4 d_model``).
    """
    for name, value in (("num_layers", num_layers), ("d_model", d_model), ("dim_feedforward", dim_feedforward)):
        _checks.positive_int(name, value)
    return 2 * d_model * num_layers * (2 * d_model + dim_feedforward)


@dataclass(frozen=True)
class PowerLaw:
    """A fitted ``L(N) = E + (N_c / N)^alpha`` (``E = 0`` for the paper's pure form).

    ``alpha_se`` is the standard error of ``alpha`` from the fit's covariance.
    """

    alpha: float
    n_c: float
    irreducible: float
    alpha_se: float

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    def __call__(self, n: float | np.ndarray) -> float | np.ndarray:
        """The fitted loss at ``n`` parameters (a number or an array)."""
        arr = np.asarray(n, dtype=float)
        if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"n must be positive and finite, got {n!r}")
        out = self.irreducible + (self.n_c / arr) ** self.alpha
        return float(out) if out.ndim == 0 else out


def _points(n: object, loss: object, at_least: int) -> tuple[np.ndarray, np.ndarray]:
    for name, value in (("n", n), ("loss", loss)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise TypeError(f"{name} must be a sequence or array of numbers, got {type(value).__name__}")
    try:
        x, y = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    except (TypeError, ValueError):
        raise TypeError("n and loss must hold numbers") from None
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"n and loss must be 1-D, got shapes {x.shape} and {y.shape}")
    _checks.size_matches("loss", y.shape[0], x.shape[0], "length")
    if x.shape[0] < at_least:
        raise ValueError(f"n must hold at least {at_least} points, got {x.shape[0]}")
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("n must be positive and finite")
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("loss must be positive and finite")
    return x, y


def fit_power_law(n: object, loss: object, irreducible: bool = False) -> PowerLaw:
    """Fit ``L(N) = (N_c / N)^alpha``, or ``E + (N_c / N)^alpha`` with ``irreducible``, to ``M`` points.

    The pure form is a straight line in log-log axes, ``log L = alpha log N_c
    - alpha log N``, fitted by ordinary least squares; ``alpha_se`` is the
    slope's standard error (``nan`` for two points). With ``irreducible`` the
    fit minimises the squared error of ``log L`` over ``E >= 0``, ``N_c``
    and ``alpha`` (at least four points), and ``alpha_se`` comes from the
    Gauss-Newton covariance ``s^2 (J^T J)^-1``.
    """
    if not isinstance(irreducible, bool):
        raise TypeError(f"irreducible must be a bool, got {type(irreducible).__name__}")
    x, y = _points(n, loss, 4 if irreducible else 2)
    lx, ly = np.log(x), np.log(y)
    if not irreducible:
        design = np.stack([np.ones_like(lx), lx], axis=1)  # ly = c + slope * lx
        coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
        slope = coef[1]
        dof = len(x) - 2
        if dof > 0:
            s2 = float(np.sum((ly - design @ coef) ** 2) / dof)
            se = math.sqrt(s2 * np.linalg.inv(design.T @ design)[1, 1])
        else:
            se = float("nan")
        alpha = -float(slope)
        n_c = math.exp(coef[0] / alpha) if alpha != 0 else float("inf")
        return PowerLaw(alpha, n_c, 0.0, se)

    def residual(p: np.ndarray) -> np.ndarray:  # p = (log E, log N_c, alpha)
        return np.log(np.exp(p[0]) + np.exp(p[2] * (p[1] - lx))) - ly

    start = np.array([math.log(0.5 * y.min()), lx.min(), 0.5])
    sol = least_squares(residual, start, bounds=([-30.0, -50.0, 1e-4], [math.log(y.min()), 200.0, 10.0]))
    dof = len(x) - 3
    s2 = float(np.sum(sol.fun**2) / dof) if dof > 0 else float("nan")
    cov = np.linalg.pinv(sol.jac.T @ sol.jac) * s2
    return PowerLaw(float(sol.x[2]), math.exp(sol.x[1]), math.exp(sol.x[0]), math.sqrt(max(cov[2, 2], 0.0)))


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor at ``step`` (1-based) of ``steps``: linear warm-up, then cosine decay to zero.

    ``step / warmup`` for ``step <= warmup``, then
    ``(1 + cos(pi (step - warmup) / (steps - warmup))) / 2``, the schedule
    of Kaplan et al. (a linear warm-up followed by a cosine decay to zero).
    """
    _checks.positive_int("step", step)
    _checks.positive_int("steps", steps)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < steps:
        raise ValueError(f"warmup must be an int in 0..steps - 1, got {warmup!r}")
    if step <= warmup:
        return step / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, steps - warmup) / (steps - warmup)))


@lru_cache(maxsize=1)
def _shakespeare():
    return char_corpus("shakespeare")


def train_lm(
    d_model: int,
    num_layers: int = 2,
    steps: int = 100,
    batch_size: int = 64,
    context: int = 32,
    lr: float = 3e-3,
    warmup: int = 10,
    seed: int = 0,
    every: int = 10,
    eval_windows: int = 256,
    stop_after: int | None = None,
) -> History:
    """Train a character-level :class:`~papers30.transformer.TransformerLM` on Shakespeare; return its History.

    The model is pre-norm, ``nhead = max(1, d_model // 8)`` heads,
    ``dim_feedforward = 4 d_model``, no dropout. Each step draws
    ``batch_size`` random windows of ``context + 1`` characters from the
    training text with :func:`papers30.runtime.generator` ``(seed)``, so
    models of every size trained with one seed see the same batches; the
    model's initial weights come from the same seed. Adam at ``lr`` times
    :func:`warmup_cosine` (warm-up of ``warmup`` steps, cosine decay to zero). Every ``every`` steps (and after the
    last) the loss in nats per character is measured on the first
    ``eval_windows`` windows of the validation text (``History.metric("loss")``).
    ``stop_after`` ends the run early without changing anything else.
    """
    for name, value in (("d_model", d_model), ("num_layers", num_layers), ("steps", steps),
                        ("batch_size", batch_size), ("context", context), ("every", every),
                        ("eval_windows", eval_windows)):
        _checks.positive_int(name, value)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < steps:
        raise ValueError(f"warmup must be an int in 0..steps - 1, got {warmup!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
        raise ValueError(f"lr must be a number in (0, 1), got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    corpus = _shakespeare()
    vocab = len(corpus.vocab)
    g = generator(seed)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    model = TransformerLM(vocab, d_model=d_model, nhead=max(1, d_model // 8), num_layers=num_layers,
                          dim_feedforward=4 * d_model, dropout=0.0, norm_first=True, max_len=context)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: warmup_cosine(k + 1, steps, warmup))
    offsets = torch.arange(context + 1)
    n_valid = min(eval_windows, (corpus.valid.shape[0] - 1) // (context + 1))
    held = corpus.valid[: n_valid * (context + 1)].view(n_valid, context + 1)

    def loss_fn(step: int) -> torch.Tensor:
        starts = torch.randint(0, corpus.train.shape[0] - context - 1, (batch_size,), generator=g)
        window = corpus.train[starts[:, None] + offsets]  # (B, T + 1)
        return F.cross_entropy(model(window[:, :-1]).reshape(-1, vocab), window[:, 1:].reshape(-1))

    def evaluate() -> dict[str, float]:
        return {"loss": F.cross_entropy(model(held[:, :-1]).reshape(-1, vocab), held[:, 1:].reshape(-1)).item()}

    return fit(model, optimizer, loss_fn, steps, scheduler=schedule, evaluate=evaluate, every=every,
               stop_after=stop_after)
