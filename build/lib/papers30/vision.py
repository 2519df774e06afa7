"""The image-classification pipeline of CS231n written out by hand (chapter 26).

Karpathy, Li and Johnson's Stanford course notes build image classification
from nearest neighbours up to convolutional networks and teach every layer
with its forward *and* backward pass. This module holds those pieces:

- :func:`knn_predict`: k-nearest-neighbour classification with L2 distance.
- :func:`unfold` and :func:`fold`: im2col and its adjoint col2im, with the
  names, argument order and defaults of ``torch.nn.functional.unfold`` and
  ``fold``.
- :func:`conv2d` (im2col convolution, with groups) and
  :func:`conv2d_backward`; :func:`max_pool2d` and :func:`max_pool2d_backward`.
  The forward functions keep the name, argument order and defaults of
  ``torch.nn.functional.conv2d`` and ``max_pool2d``; the backward functions
  return the gradients with respect to the inputs given the gradient of the
  output, computed without autograd.
- :func:`numerical_gradient` and :func:`relative_error`: the notes' gradient
  check (centred differences, compared by relative error).
- :func:`train_classifier` and :func:`accuracy`: one minibatch training loop
  (Adam, softmax cross-entropy) shared by every rung of the accuracy ladder.

(:func:`papers30.convolution.conv2d` is a second, tap-by-tap convolution used
by chapter 11; this one is the im2col form the CS231n notes describe.)

Shapes: ``B`` batch, ``C`` channels, ``H`` x ``W`` image height x width,
``O`` output channels, ``G`` groups, ``L`` output positions ``H' W'``,
``N`` training points, ``M`` queries, ``D`` features.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from papers30 import _checks

__all__ = [
    "accuracy", "conv2d", "conv2d_backward", "fold", "knn_predict", "max_pool2d", "max_pool2d_backward",
    "numerical_gradient", "relative_error", "train_classifier", "unfold",
]

IntPair = int | tuple[int, int]


def _pair(name: str, value: object, minimum: int) -> tuple[int, int]:
    """``value`` as a pair of ints, each at least ``minimum``."""
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _out_size(size: int, k: int, stride: int, padding: int, dilation: int, ceil: bool = False) -> int:
    """Output length along one axis (torch's formula, including ceil mode's rule for the last window)."""
    span = size + 2 * padding - dilation * (k - 1) - 1
    out = (span + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + padding:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _windows(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
             out: tuple[int, int]) -> torch.Tensor:
    """Every kernel tap's view of an already padded ``(B, C, Hp, Wp)``: ``(B, C, kh * kw, H', W')``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    taps = [x[..., s * dh :: sh, t * dw :: sw][..., :ho, :wo] for s in range(kh) for t in range(kw)]
    return torch.stack(taps, dim=2)


def unfold(input: torch.Tensor, kernel_size: IntPair, dilation: IntPair = 1, padding: IntPair = 0,
           stride: IntPair = 1) -> torch.Tensor:
    """im2col: ``(B, C, H, W)`` -> ``(B, C kh kw, L)``, one column per output position.

    Row ``c kh kw + s kw + t`` of column ``(i, j)`` (flattened to ``i W' + j``)
    is ``x[c, i stride + s dilation, j stride + t dilation]`` of the
    zero-padded input, so a convolution becomes one matrix product.
    """
    _checks.tensor("input", input, ndim=4, kind="float")
    k, d = _pair("kernel_size", kernel_size, 1), _pair("dilation", dilation, 1)
    p, s = _pair("padding", padding, 0), _pair("stride", stride, 1)
    B, C, H, W = input.shape
    out = (_out_size(H, k[0], s[0], p[0], d[0]), _out_size(W, k[1], s[1], p[1], d[1]))
    if min(out) < 1:
        raise ValueError(f"input of shape {tuple(input.shape)} is smaller than the dilated kernel")
    x = F.pad(input, (p[1], p[1], p[0], p[0]))
    return _windows(x, k, s, d, out).reshape(B, C * k[0] * k[1], out[0] * out[1])


def fold(input: torch.Tensor, output_size: IntPair, kernel_size: IntPair, dilation: IntPair = 1,
         padding: IntPair = 0, stride: IntPair = 1) -> torch.Tensor:
    """col2im, the adjoint of :func:`unfold`: ``(B, C kh kw, L)`` -> ``(B, C, H, W)``, overlaps summed.

    Every entry of a column is added back to the pixel it was read from;
    entries that came from the padding are dropped. ``output_size`` is
    ``(H, W)``.
    """
    _checks.tensor("input", input, ndim=3, kind="float")
    H, W = _pair("output_size", output_size, 1)
    k, d = _pair("kernel_size", kernel_size, 1), _pair("dilation", dilation, 1)
    p, s = _pair("padding", padding, 0), _pair("stride", stride, 1)
    ho, wo = _out_size(H, k[0], s[0], p[0], d[0]), _out_size(W, k[1], s[1], p[1], d[1])
    B, rows, L = input.shape
    if rows % (k[0] * k[1]) or L != ho * wo:
        raise ValueError(f"input must be (B, C * {k[0] * k[1]}, {ho * wo}) for these sizes, got {tuple(input.shape)}")
    cols = input.reshape(B, rows // (k[0] * k[1]), k[0], k[1], ho, wo)
    out = input.new_zeros(B, cols.shape[1], H + 2 * p[0], W + 2 * p[1])
    for a in range(k[0]):
        for b in range(k[1]):
            r, c = a * d[0], b * d[1]
            out[..., r : r + s[0] * (ho - 1) + 1 : s[0], c : c + s[1] * (wo - 1) + 1 : s[1]] += cols[:, :, a, b]
    return out[..., p[0] : p[0] + H, p[1] : p[1] + W]


def _check_conv(input: object, weight: object, bias: object, groups: object) -> None:
    _checks.tensor("input", input, ndim=4, kind="float")
    _checks.tensor("weight", weight, ndim=4, kind="float")
    _checks.positive_int("groups", groups)
    if input.shape[1] % groups or weight.shape[0] % groups:  # type: ignore[union-attr]
        raise ValueError(f"groups must divide the input and output channels, got {groups}")
    _checks.size_matches("weight", weight.shape[1] * groups, input.shape[1], "input channels")  # type: ignore
    if bias is not None:
        _checks.tensor("bias", bias, ndim=1, kind="float")
        _checks.size_matches("bias", bias.shape[0], weight.shape[0], "length")  # type: ignore[union-attr]


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: IntPair = 1,
           padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """2-D convolution (cross-correlation, as in torch) by im2col and one matrix product per group.

    ``input`` ``(B, C, H, W)``, ``weight`` ``(O, C / G, kh, kw)``, ``bias``
    ``(O,)`` or None -> ``(B, O, H', W')``. The input's columns
    (:func:`unfold`) are split into ``G`` groups of ``C / G`` channels and
    output channel group ``g`` is ``weight[g] @ columns[g]``.
    """
    _check_conv(input, weight, bias, groups)
    O, _, kh, kw = weight.shape
    cols = unfold(input, (kh, kw), dilation, padding, stride)  # (B, C kh kw, L)
    B, L = cols.shape[0], cols.shape[-1]
    cols = cols.reshape(B, groups, -1, L)  # (B, G, C/G kh kw, L)
    out = torch.einsum("gok,bgkl->bgol", weight.reshape(groups, O // groups, -1), cols).reshape(B, O, L)
    if bias is not None:
        out = out + bias[:, None]
    H, W = input.shape[-2:]
    p, s, d = _pair("padding", padding, 0), _pair("stride", stride, 1), _pair("dilation", dilation, 1)
    return out.reshape(B, O, _out_size(H, kh, s[0], p[0], d[0]), _out_size(W, kw, s[1], p[1], d[1]))


def conv2d_backward(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, stride: IntPair = 1,
                    padding: IntPair = 0, dilation: IntPair = 1,
                    groups: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`conv2d`: ``(grad_input, grad_weight, grad_bias)`` given ``grad_output`` ``(B, O, H', W')``.

    With columns ``X = unfold(input)`` and ``Y = W X + b``: ``dW = dY X^T``
    (summed over the batch), ``db = dY`` summed over batch and positions, and
    ``dX = W^T dY``, which :func:`fold` scatters back onto the pixels the
    columns were read from.
    """
    _check_conv(input, weight, None, groups)
    O, _, kh, kw = weight.shape
    cols = unfold(input, (kh, kw), dilation, padding, stride)
    B, L = cols.shape[0], cols.shape[-1]
    _checks.tensor("grad_output", grad_output, ndim=4, kind="float")
    if grad_output.shape[0] != B or grad_output.shape[1] != O or grad_output[0, 0].numel() != L:
        raise ValueError(f"grad_output must have the output's shape, got {tuple(grad_output.shape)}")
    dy = grad_output.reshape(B, groups, O // groups, L)
    w = weight.reshape(groups, O // groups, -1)
    grad_weight = torch.einsum("bgol,bgkl->gok", dy, cols.reshape(B, groups, -1, L)).reshape(weight.shape)
    grad_cols = torch.einsum("gok,bgol->bgkl", w, dy).reshape(B, -1, L)
    grad_input = fold(grad_cols, tuple(input.shape[-2:]), (kh, kw), dilation, padding, stride)
    return grad_input, grad_weight, grad_output.sum(dim=(0, 2, 3))


def max_pool2d(input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               dilation: IntPair = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Max-pooling ``(B, C, H, W)`` -> ``(B, C, H', W')``, as ``torch.nn.functional.max_pool2d``.

    Each output is the largest input in its (dilated) window; padding counts
    as minus infinity, so it is never chosen, and must be at most half the
    kernel. ``stride`` defaults to ``kernel_size``. With ``ceil_mode`` the
    output size rounds up, keeping a last partial window that starts inside
    the input. ``return_indices`` also returns where each maximum came from,
    as a flat index ``row W + col`` into its channel's ``H x W`` input (the
    first maximum in the window's row-major order on ties), which
    :func:`max_pool2d_backward` uses.
    """
    _checks.tensor("input", input, ndim=4, kind="float")
    k = _pair("kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("stride", stride, 1)
    p, d = _pair("padding", padding, 0), _pair("dilation", dilation, 1)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding must be at most half the kernel size, got padding {padding} and kernel {kernel_size}")
    for name, flag in (("ceil_mode", ceil_mode), ("return_indices", return_indices)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    B, C, H, W = input.shape
    ho = _out_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    wo = _out_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(f"input of shape {tuple(input.shape)} is smaller than the dilated kernel")
    # pad with -inf far enough on the bottom/right for ceil mode's last window
    extra_h = max(0, (ho - 1) * s[0] + d[0] * (k[0] - 1) + 1 - (H + 2 * p[0]))
    extra_w = max(0, (wo - 1) * s[1] + d[1] * (k[1] - 1) + 1 - (W + 2 * p[1]))
    x = F.pad(input, (p[1], p[1] + extra_w, p[0], p[0] + extra_h), value=-math.inf)
    windows = _windows(x, k, s, d, (ho, wo))  # (B, C, kh kw, H', W')
    tap = windows.argmax(dim=2, keepdim=True)  # first maximum on ties
    out = windows.gather(2, tap).squeeze(2)
    if not return_indices:
        return out
    tap = tap.squeeze(2)
    rows = torch.arange(ho, device=input.device)[:, None] * s[0] - p[0] + (tap // k[1]) * d[0]
    cols = torch.arange(wo, device=input.device)[None, :] * s[1] - p[1] + (tap % k[1]) * d[1]
    return out, rows * W + cols


def max_pool2d_backward(grad_output: torch.Tensor, indices: torch.Tensor, input_size: tuple[int, ...]) -> torch.Tensor:
    """Gradient of :func:`max_pool2d` with respect to its input: ``(B, C, H', W')`` -> ``input_size``.

    Only the maximum of each window receives gradient: ``grad_output[..., i, j]``
    is added to the input pixel ``indices[..., i, j]`` (overlapping windows
    that pick the same pixel add up). ``input_size`` is ``(B, C, H, W)``.
    """
    _checks.tensor("grad_output", grad_output, ndim=4, kind="float")
    _checks.tensor("indices", indices, ndim=4, kind="int")
    if indices.shape != grad_output.shape:
        raise ValueError(f"indices must have grad_output's shape {tuple(grad_output.shape)}, got {tuple(indices.shape)}")
    if not isinstance(input_size, (tuple, list, torch.Size)) or len(input_size) != 4:
        raise ValueError(f"input_size must be (B, C, H, W), got {input_size!r}")
    B, C, H, W = input_size
    if (B, C) != tuple(grad_output.shape[:2]):
        raise ValueError(f"input_size must match grad_output's batch and channels, got {tuple(input_size)}")
    grad = grad_output.new_zeros(B, C, H * W)
    grad.scatter_add_(2, indices.reshape(B, C, -1), grad_output.reshape(B, C, -1))
    return grad.reshape(B, C, H, W)


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor | float], x: torch.Tensor,
                       h: float = 1e-5) -> torch.Tensor:
    """Centred-difference gradient of a scalar function: ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every entry ``i``.

    ``x`` (any shape, float64 recommended) is perturbed one entry at a time
    and restored; returns a tensor of ``x``'s shape. The error of the centred
    formula is ``O(h^2)``, against ``O(h)`` for the one-sided one.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    _checks.tensor("x", x, kind="float")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (wrap a scalar as a 1-element tensor)")
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not (math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive float, got {h!r}")
    grad = torch.zeros_like(x)
    flat, gflat = x.detach().view(-1), grad.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            plus = float(f(x))
            flat[i] = old - h
            minus = float(f(x))
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic: torch.Tensor, numerical: torch.Tensor) -> float:
    """The notes' gradient-check score: ``max_i |a_i - n_i| / max(|a_i|, |n_i|)`` (entries where both are 0 count 0)."""
    _checks.tensor("analytic", analytic, kind="float")
    _checks.tensor("numerical", numerical, kind="float")
    if analytic.shape != numerical.shape:
        raise ValueError(f"numerical must have analytic's shape {tuple(analytic.shape)}, got {tuple(numerical.shape)}")
    scale = torch.maximum(analytic.abs(), numerical.abs())
    err = (analytic - numerical).abs() / scale.clamp_min(torch.finfo(scale.dtype).tiny)
    return float(err.max()) if err.numel() else 0.0


def knn_predict(train: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Labels of ``queries`` ``(M, D)`` by a vote of their ``k`` nearest ``train`` points ``(N, D)`` in L2 distance.

    ``labels`` ``(N,)`` are ints in ``0 .. K - 1``. Ties in the vote go to
    the smallest label (as the course's assignment does). Returns ``(M,)``.
    """
    _checks.tensor("train", train, ndim=2, kind="float")
    _checks.tensor("labels", labels, ndim=1, kind="int")
    _checks.tensor("queries", queries, ndim=2, kind="float")
    _checks.size_matches("labels", labels.shape[0], train.shape[0], "length")
    _checks.size_matches("queries", queries.shape[1], train.shape[1], "features")
    _checks.positive_int("k", k)
    if k > train.shape[0]:
        raise ValueError(f"k must be at most the number of training points ({train.shape[0]}), got {k}")
    # |q - t|^2 = |q|^2 - 2 q.t + |t|^2; the |q|^2 term does not change the ranking
    dist = train.square().sum(1)[None, :] - 2 * queries @ train.T  # (M, N)
    nearest = dist.topk(k, dim=1, largest=False).indices  # (M, k)
    votes = F.one_hot(labels[nearest], int(labels.max()) + 1).sum(1)  # (M, K)
    return votes.argmax(dim=1)


def _check_model_data(model: object, images: object, labels: object) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.tensor("images", images, ndim=(2, 3, 4), kind="float")
    _checks.tensor("labels", labels, ndim=1, kind="int")
    _checks.size_matches("labels", labels.shape[0], images.shape[0], "length")


def train_classifier(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int,
                     lr: float = 1e-3, batch_size: int = 64,
                     generator: torch.Generator | None = None) -> list[float]:
    """Train ``model`` with Adam on softmax cross-entropy over random minibatches; return the loss of every step.

    ``images`` ``(N, ...)`` and ``labels`` ``(N,)``; each step draws
    ``batch_size`` indices uniformly with replacement from ``generator``, so
    models trained with equally seeded generators see the same batches.
    The model is left in eval mode.
    """
    _check_model_data(model, images, labels)
    _checks.positive_int("steps", steps)
    _checks.positive_int("batch_size", batch_size)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` whose largest logit is at the true label (evaluated in batches, no gradients)."""
    _check_model_data(model, images, labels)
    _checks.positive_int("batch_size", batch_size)
    with torch.no_grad():
        hits = sum((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum().item()
                   for i in range(0, len(images), batch_size))
    return hits / len(images)
