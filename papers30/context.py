"""Long-context evaluation: where in its context a model finds what it needs.

Implements the synthetic key-value retrieval task of Liu et al. (2024), *Lost
in the Middle* (chapter 30), for a small causal transformer
(:class:`papers30.transformer.TransformerLM`), and the measurements of the
paper's figures: accuracy by the position of the relevant item with binomial
(Wilson) confidence intervals, a U-margin statistic that compares the ends of
the context with its middle, and the attention the query pays to the relevant
item at each position.

The task. A context holds ``N`` pairs ``k_1 v_1 k_2 v_2 ... k_N v_N`` of a
key token and a value token, then a separator and a query key ``q`` equal to
one of the ``k_i``; the model must output ``v_i``. Key ids are
``0 .. K-1``, value ids ``K .. K+V-1``, the separator ``K+V``. Keys within a
context are distinct, values are drawn independently. In training the
relevant pair's position is uniform over ``0 .. N-1``, so the data carry no
positional preference: any dependence of accuracy on position comes from
what the model learned.

Shapes: ``B`` batch, ``N`` pairs (positions), ``L`` layers, ``H`` heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks

Z95 = 1.959963984540054  # the standard normal's 0.975 quantile


def _generator(name: str, g: object) -> torch.Generator | None:
    if g is not None and not isinstance(g, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(g).__name__}")
    return g


def kv_vocab_size(n_keys: int, n_values: int) -> int:
    """Vocabulary of the task: ``n_keys`` keys, ``n_values`` values and one separator."""
    _checks.positive_int("n_keys", n_keys)
    _checks.positive_int("n_values", n_values)
    return n_keys + n_values + 1


@dataclass
class KVBatch:
    """A batch of key-value retrieval contexts.

    ``tokens (B, 2N+2)``: the pairs, the separator and the query key;
    ``answers (B,)``: the value token to output; ``positions (B,)``: the
    relevant pair's index in ``0 .. N-1``.
    """

    tokens: torch.Tensor
    answers: torch.Tensor
    positions: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


def kv_retrieval(n_pairs: int, n_keys: int, n_values: int, batch_size: int,
                 positions: torch.Tensor | None = None, generator: torch.Generator | None = None) -> KVBatch:
    """Draw ``batch_size`` contexts of ``n_pairs`` key-value pairs (see the module docstring).

    ``positions (B,)`` fixes the relevant pair of each context; ``None``
    draws it uniformly from ``0 .. n_pairs-1`` (training).
    """
    _checks.positive_int("n_pairs", n_pairs)
    _checks.positive_int("n_keys", n_keys)
    _checks.positive_int("n_values", n_values)
    _checks.positive_int("batch_size", batch_size)
    generator = _generator("generator", generator)
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs must be at most n_keys ({n_keys}) so keys are distinct, got {n_pairs}")
    if positions is None:
        positions = torch.randint(0, n_pairs, (batch_size,), generator=generator)
    else:
        _checks.tensor("positions", positions, ndim=1, kind="int")
        _checks.size_matches("positions", positions.shape[0], batch_size, "length")
        if positions.numel() and (positions.min() < 0 or positions.max() >= n_pairs):
            raise ValueError(f"positions must lie in 0..{n_pairs - 1}")
        positions = positions.long()
    keys = torch.rand(batch_size, n_keys, generator=generator).argsort(dim=1)[:, :n_pairs]  # distinct keys
    values = n_keys + torch.randint(0, n_values, (batch_size, n_pairs), generator=generator)
    query = keys.gather(1, positions[:, None])
    answers = values.gather(1, positions[:, None])[:, 0]
    pairs = torch.stack([keys, values], dim=2).reshape(batch_size, 2 * n_pairs)  # k1 v1 k2 v2 ...
    sep = torch.full((batch_size, 1), n_keys + n_values, dtype=torch.long)
    return KVBatch(torch.cat([pairs, sep, query], dim=1), answers, positions)


def answer_logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A :class:`~papers30.transformer.TransformerLM`'s next-token logits ``(B, V)`` at the last position."""
    if not isinstance(model, nn.Module) or not hasattr(model, "hidden") or not hasattr(model, "embed"):
        raise TypeError(f"model must be a TransformerLM, got {type(model).__name__}")
    _checks.tensor("tokens", tokens, ndim=2, kind="int")
    return F.linear(model.hidden(tokens)[:, -1], model.embed.weight)


def train_kv_retrieval(model: nn.Module, n_pairs: int, n_keys: int, n_values: int, *, steps: int = 1000,
                       batch_size: int = 64, lr: float = 1e-3, target_accuracy: float | None = None,
                       window: int = 50, generator: torch.Generator | None = None,
                       warmup: int = 0) -> tuple[list[float], list[float]]:
    """Train ``model`` on :func:`kv_retrieval` with Adam and cross-entropy on the answer token.

    Every step draws a fresh batch with uniform relevant positions. With
    ``target_accuracy`` training stops early, once the mean training accuracy
    over the last ``window`` steps reaches it (a model trained to a moderate
    accuracy, not saturated). ``warmup > 0`` raises the learning rate
    linearly over the first ``warmup`` steps, ``lr * min(1, (t + 1) / warmup)``
    at step ``t``, as transformers are usually trained. Returns the loss and
    the training accuracy of every step.
    """
    answer_logits(model, torch.zeros(1, 2, dtype=torch.long))  # checks the model
    _checks.positive_int("steps", steps)
    _checks.positive_int("window", window)
    if isinstance(warmup, bool) or not isinstance(warmup, int):
        raise TypeError(f"warmup must be an int, got {type(warmup).__name__}")
    if warmup < 0:
        raise ValueError(f"warmup must be at least 0, got {warmup}")
    if target_accuracy is not None:
        _checks.probability("target_accuracy", target_accuracy, inclusive_one=True)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    kv_retrieval(n_pairs, n_keys, n_values, batch_size, generator=None)  # checks the task's sizes
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    accuracies: list[float] = []
    for t in range(steps):
        batch = kv_retrieval(n_pairs, n_keys, n_values, batch_size, generator=generator)
        logits = answer_logits(model, batch.tokens)
        loss = F.cross_entropy(logits, batch.answers)
        opt.zero_grad()
        loss.backward()
        if warmup:
            for group in opt.param_groups:
                group["lr"] = lr * min(1, (t + 1) / warmup)
        opt.step()
        losses.append(loss.item())
        accuracies.append((logits.argmax(-1) == batch.answers).float().mean().item())
        if target_accuracy is not None and len(accuracies) >= window \
                and sum(accuracies[-window:]) / window >= target_accuracy:
            break
    model.eval()
    return losses, accuracies


@dataclass
class KVRun:
    """A model trained by :func:`train_kv_model`, its per-step ``losses`` and training ``accuracies``, and the
    ``generator`` it drew its training batches from (continue drawing test contexts from it)."""

    model: nn.Module
    losses: list
    accuracies: list
    generator: torch.Generator

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


def train_kv_model(seed: int, n_pairs: int, n_keys: int, n_values: int, *, d_model: int = 64, nhead: int = 2,
                   num_layers: int = 2, steps: int = 1500, batch_size: int = 64, lr: float = 1e-3,
                   target_accuracy: float | None = 0.5, window: int = 25, stop_after: int | None = None,
                   warmup: int = 0) -> KVRun:
    """Seed everything with ``seed``, build a pre-norm :class:`~papers30.transformer.TransformerLM` (no
    dropout, feed-forward width ``2 * d_model``) and train it with :func:`train_kv_retrieval`.

    ``stop_after`` ends training after that many steps without changing
    anything else (for replaying the first steps of a recorded run). All
    arguments are plain JSON values, so the call can be traced and replayed.
    """
    from papers30.runtime import generator, seed_everything
    from papers30.transformer import TransformerLM

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if stop_after is not None:
        _checks.positive_int("stop_after", stop_after)
    vocab = kv_vocab_size(n_keys, n_values)
    seed_everything(seed)
    g = generator(seed)
    model = TransformerLM(vocab, d_model=d_model, nhead=nhead, num_layers=num_layers, dim_feedforward=2 * d_model,
                          dropout=0.0, norm_first=True, max_len=2 * n_pairs + 2)
    run_steps = steps if stop_after is None else min(_checks.positive_int("steps", steps), stop_after)
    losses, accuracies = train_kv_retrieval(model, n_pairs, n_keys, n_values, steps=run_steps,
                                            batch_size=batch_size, lr=lr, target_accuracy=target_accuracy,
                                            window=window, generator=g, warmup=warmup)
    return KVRun(model, losses, accuracies, g)


@dataclass
class PositionEval:
    """Evaluation with the relevant pair at every position, ``per_position`` contexts each.

    ``correct (M,)`` bool and ``positions (M,)`` per context (``M = N *
    per_position``); ``attention (L, N)``: the last token's attention, averaged
    over heads and contexts, on the relevant pair's two tokens, by position.
    """

    correct: torch.Tensor
    positions: torch.Tensor
    attention: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


@torch.no_grad()
def evaluate_by_position(model: nn.Module, n_pairs: int, n_keys: int, n_values: int, per_position: int = 200,
                         generator: torch.Generator | None = None) -> PositionEval:
    """Evaluate ``model`` with the relevant pair placed at each position ``0 .. n_pairs-1`` in turn.

    Reads the attention weights every layer stores after its forward pass
    (``layer.self_attn.last_weights``, ``(B, H, T, T)``); the query key is
    the last token, and the relevant pair at position ``p`` occupies tokens
    ``2p`` and ``2p + 1``.
    """
    _checks.positive_int("per_position", per_position)
    kv_retrieval(n_pairs, n_keys, n_values, 1, generator=None)  # checks the task's sizes
    answer_logits(model, torch.zeros(1, 2, dtype=torch.long))
    was_training = model.training
    model.eval()
    correct, where, mass = [], [], []
    for p in range(n_pairs):
        batch = kv_retrieval(n_pairs, n_keys, n_values, per_position,
                             torch.full((per_position,), p, dtype=torch.long), generator)
        correct.append(answer_logits(model, batch.tokens).argmax(-1) == batch.answers)
        where.append(batch.positions)
        mass.append(torch.stack([layer.self_attn.last_weights[:, :, -1, 2 * p:2 * p + 2].sum(-1).mean()
                                 for layer in model.layers]))
    model.train(was_training)
    return PositionEval(torch.cat(correct), torch.cat(where), torch.stack(mass, dim=1))


def position_accuracy(correct: torch.Tensor, positions: torch.Tensor, n_positions: int) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """Successes and trials ``(N,)`` by position, from per-context ``correct (M,)`` and ``positions (M,)``."""
    _checks.tensor("correct", correct, ndim=1, kind="bool")
    _checks.tensor("positions", positions, ndim=1, kind="int")
    _checks.size_matches("positions", positions.shape[0], correct.shape[0], "length")
    _checks.positive_int("n_positions", n_positions)
    if positions.numel() and (positions.min() < 0 or positions.max() >= n_positions):
        raise ValueError(f"positions must lie in 0..{n_positions - 1}")
    successes = torch.bincount(positions.long(), weights=correct.double(), minlength=n_positions)
    trials = torch.bincount(positions.long(), minlength=n_positions).double()
    return successes, trials


def wilson_interval(successes: torch.Tensor, trials: torch.Tensor, z: float = Z95) -> tuple[torch.Tensor,
                                                                                           torch.Tensor]:
    """Wilson score interval ``(lo, hi)`` for binomial proportions ``successes / trials`` (elementwise).

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with
    ``p = successes / n``; the default ``z`` gives 95 % intervals.
    """
    _checks.tensor("successes", successes)
    _checks.tensor("trials", trials)
    if successes.shape != trials.shape:
        raise ValueError(f"trials must have the shape of successes {tuple(successes.shape)}, got {tuple(trials.shape)}")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not z > 0:
        raise ValueError(f"z must be a positive number, got {z!r}")
    k, n = successes.double(), trials.double()
    if (n <= 0).any() or (k < 0).any() or (k > n).any():
        raise ValueError("successes must lie in [0, trials] and trials must be positive")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * torch.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def edge_bins(n_positions: int, fraction: float = 0.2) -> tuple[list[int], list[int], list[int]]:
    """The first, middle and last bins of positions, each ``max(1, round(fraction * n))`` wide.

    The middle bin is centred (rounded towards the start when it cannot be).
    """
    _checks.positive_int("n_positions", n_positions)
    fraction = _checks.probability("fraction", fraction)
    width = max(1, round(fraction * n_positions))
    if 3 * width > n_positions:
        raise ValueError(f"n_positions must hold three bins of {width}, got {n_positions}")
    start = (n_positions - width) // 2
    return (list(range(width)), list(range(start, start + width)),
            list(range(n_positions - width, n_positions)))


def u_margin(accuracy: torch.Tensor, fraction: float = 0.2) -> float:
    """``min(acc_first, acc_last) - acc_middle`` over the :func:`edge_bins` of ``accuracy (N,)``.

    Positive when both ends of the context beat its middle (a U), negative
    when the middle beats at least one end.
    """
    _checks.tensor("accuracy", accuracy, ndim=1, kind="float")
    first, middle, last = edge_bins(accuracy.shape[0], fraction)
    acc = accuracy.double()
    return (min(acc[first].mean(), acc[last].mean()) - acc[middle].mean()).item()


def shuffled_u_margin(correct: torch.Tensor, positions: torch.Tensor, n_positions: int, fraction: float = 0.2,
                      generator: torch.Generator | None = None) -> float:
    """The :func:`u_margin` after randomly permuting the contexts' position labels.

    A position-independent null: the same contexts and the same answers,
    with any link between where the relevant pair sat and whether the model
    was right broken.
    """
    _checks.tensor("positions", positions, ndim=1, kind="int")
    generator = _generator("generator", generator)
    shuffled = positions[torch.randperm(positions.shape[0], generator=generator)]
    successes, trials = position_accuracy(correct, shuffled, n_positions)
    if (trials == 0).any():
        raise ValueError("positions must cover every position")
    return u_margin((successes / trials).float(), fraction)


__all__ = ["KVBatch", "KVRun", "PositionEval", "Z95", "answer_logits", "edge_bins", "evaluate_by_position", "kv_retrieval",
           "kv_vocab_size", "position_accuracy", "shuffled_u_margin", "train_kv_model", "train_kv_retrieval", "u_margin",
           "wilson_interval"]
