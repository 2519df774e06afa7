"""papers30.vision: im2col convolution and max-pooling, forward and backward, against torch and autograd;
the numerical gradient check; k-nearest neighbours against a brute-force loop."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from papers30.vision import (
    accuracy, conv2d, conv2d_backward, fold, knn_predict, max_pool2d, max_pool2d_backward, numerical_gradient,
    relative_error, train_classifier, unfold,
)

DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)

# (x shape, weight shape, stride, padding, dilation, groups)
CONV_CASES = [
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 8, 7), (4, 3, 3, 3), 2, 1, 1, 1),
    ((1, 2, 9, 9), (3, 2, 3, 3), 1, 2, 2, 1),
    ((2, 4, 10, 9), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((1, 4, 6, 6), (4, 1, 1, 1), 3, 0, 1, 4),
    ((2, 1, 5, 5), (2, 1, 5, 5), 1, 2, 1, 1),
    ((1, 2, 11, 11), (2, 2, 3, 3), 3, 1, 3, 1),
]

# (x shape, kernel, stride, padding, dilation, ceil_mode)
POOL_CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 3, 7, 7), 3, 2, 1, 1, False),
    ((1, 2, 7, 7), 3, 2, 1, 1, True),
    ((1, 2, 9, 8), (3, 2), (2, 1), (1, 0), (2, 1), False),
    ((2, 1, 10, 10), 3, 3, 1, 2, True),
    ((1, 1, 5, 6), 2, 2, 0, 1, True),
]


def _conv_inputs(x_shape, w_shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g, dtype=DT)
    w = torch.randn(w_shape, generator=g, dtype=DT)
    b = torch.randn(w_shape[0], generator=g, dtype=DT)
    return x, w, b


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_forward_and_backward_match_torch(x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = _conv_inputs(x_shape, w_shape)
    x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)
    want = F.conv2d(x, w, b, stride, padding, dilation, groups)
    got = conv2d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(got, want, **TOL)
    r = torch.randn_like(want)
    grads = torch.autograd.grad((want * r).sum(), (x, w, b))
    ours = conv2d_backward(r, x.detach(), w.detach(), stride, padding, dilation, groups)
    for a, e in zip(ours, grads):
        torch.testing.assert_close(a, e, **TOL)


def test_conv2d_without_bias_and_float32():
    x, w, _ = _conv_inputs((2, 3, 6, 6), (2, 3, 3, 3))
    torch.testing.assert_close(conv2d(x.float(), w.float(), padding=1), F.conv2d(x.float(), w.float(), padding=1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation,groups", CONV_CASES[:4])
def test_unfold_and_fold_match_torch(x_shape, w_shape, stride, padding, dilation, groups):
    x, _, _ = _conv_inputs(x_shape, w_shape)
    k = w_shape[-2:]
    cols = unfold(x, k, dilation, padding, stride)
    torch.testing.assert_close(cols, F.unfold(x, k, dilation, padding, stride), **TOL)
    back = fold(cols, x_shape[-2:], k, dilation, padding, stride)
    torch.testing.assert_close(back, F.fold(cols, x_shape[-2:], k, dilation, padding, stride), **TOL)


@pytest.mark.parametrize("x_shape,kernel,stride,padding,dilation,ceil_mode", POOL_CASES)
def test_max_pool2d_forward_indices_and_backward_match_torch(x_shape, kernel, stride, padding, dilation, ceil_mode):
    x = torch.randn(x_shape, generator=torch.Generator().manual_seed(1), dtype=DT, requires_grad=True)
    want, want_idx = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    got, idx = max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    torch.testing.assert_close(got, want, **TOL)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(max_pool2d(x, kernel, stride, padding, dilation, ceil_mode), want, **TOL)
    r = torch.randn_like(want)
    (grad,) = torch.autograd.grad((want * r).sum(), x)
    torch.testing.assert_close(max_pool2d_backward(r, idx, tuple(x.shape)), grad, **TOL)


def test_max_pool2d_overlapping_windows_add_their_gradients():
    # a single large pixel is the maximum of every window that contains it
    x = torch.zeros(1, 1, 5, 5, dtype=DT)
    x[0, 0, 2, 2] = 1.0
    out, idx = max_pool2d(x + 1e-3 * torch.arange(25, dtype=DT).flip(0).view(1, 1, 5, 5), 3, 1, return_indices=True)
    grad = max_pool2d_backward(torch.ones_like(out), idx, (1, 1, 5, 5))
    assert grad[0, 0, 2, 2] == 9 and grad.sum() == 9


def test_mirrors_torch_signatures():
    for ours, theirs in ((conv2d, "input weight bias stride padding dilation groups"),
                         (max_pool2d, "input kernel_size stride padding dilation ceil_mode return_indices")):
        assert list(inspect.signature(ours).parameters) == theirs.split()
    defaults = {k: v.default for k, v in inspect.signature(max_pool2d).parameters.items()}
    assert defaults == dict(input=inspect.Parameter.empty, kernel_size=inspect.Parameter.empty, stride=None,
                            padding=0, dilation=1, ceil_mode=False, return_indices=False)
    defaults = {k: v.default for k, v in inspect.signature(conv2d).parameters.items()}
    assert (defaults["bias"], defaults["stride"], defaults["padding"], defaults["dilation"], defaults["groups"]) == (
        None, 1, 0, 1, 1)


def test_numerical_gradient_matches_autograd_and_closed_form():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, generator=g, dtype=DT)
    a = torch.randn(4, 4, generator=g, dtype=DT)

    def f(z):
        return (torch.tanh(z @ a) ** 2).sum()

    num = numerical_gradient(f, x)
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(f(xr), xr)
    assert relative_error(auto, num) < 1e-7
    # a quadratic: centred differences are exact up to rounding
    torch.testing.assert_close(numerical_gradient(lambda z: (z**2).sum(), x), 2 * x, rtol=1e-8, atol=1e-9)
    # x is restored
    torch.testing.assert_close(x, torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=DT))


def test_numerical_gradient_checks_the_written_out_backward_passes():
    x, w, b = _conv_inputs((1, 2, 5, 5), (2, 2, 3, 3), seed=3)
    r = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(4), dtype=DT)

    def loss(z):
        return (conv2d(z, w, b, 2, 1, 2) * r).sum()

    gx, gw, _ = conv2d_backward(r, x, w, 2, 1, 2)
    assert relative_error(gx, numerical_gradient(loss, x.clone())) < 1e-7
    assert relative_error(gw, numerical_gradient(lambda v: (conv2d(x, v, b, 2, 1, 2) * r).sum(), w.clone())) < 1e-7


def test_relative_error_definition():
    a = torch.tensor([1.0, 0.0, -2.0], dtype=DT)
    n = torch.tensor([1.1, 0.0, -2.0], dtype=DT)
    assert relative_error(a, n) == pytest.approx(0.1 / 1.1)
    assert relative_error(a, a) == 0.0


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(5)
    train, labels = torch.randn(40, 3, generator=g, dtype=DT), torch.randint(0, 4, (40,), generator=g)
    queries = torch.randn(15, 3, generator=g, dtype=DT)
    for k in (1, 3, 5):
        got = knn_predict(train, labels, queries, k)
        for q, y in zip(queries, got):
            d = [((q - t) ** 2).sum().item() for t in train]
            near = sorted(range(40), key=lambda i: d[i])[:k]
            counts = [sum(labels[i].item() == c for i in near) for c in range(4)]
            assert y.item() == max(range(4), key=lambda c: (counts[c], -c))


def test_train_classifier_matches_a_hand_loop():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(30, 1, 4, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    theirs = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    theirs.load_state_dict(ours.state_dict())
    losses = train_classifier(ours, x, y, 5, 1e-2, 8, torch.Generator().manual_seed(1))
    opt, gen, want = torch.optim.Adam(theirs.parameters(), lr=1e-2), torch.Generator().manual_seed(1), []
    for _ in range(5):
        idx = torch.randint(0, 30, (8,), generator=gen)
        loss = F.cross_entropy(theirs(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        want.append(loss.item())
    assert losses == pytest.approx(want, rel=1e-6)
    torch.testing.assert_close(ours[1].weight, theirs[1].weight)
    assert not ours.training


def test_accuracy_counts_hits_across_batches():
    model = torch.nn.Flatten()  # the "logits" are the inputs themselves
    x = torch.eye(3).repeat(5, 1)  # (15, 3): image i has its largest entry at i % 3
    y = torch.tensor([0, 1, 2, 0, 0] * 3)
    assert accuracy(model, x, y, batch_size=4) == pytest.approx(sum(int(i % 3 == int(y[i])) for i in range(15)) / 15)


@pytest.mark.parametrize(
    "call,exc,word",
    [
        (lambda: conv2d([1.0], torch.zeros(1, 1, 1, 1)), TypeError, "input"),
        (lambda: conv2d(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 1, 1)), ValueError, "weight"),
        (lambda: conv2d(torch.zeros(1, 4, 4, 4), torch.zeros(3, 2, 1, 1), groups=2), ValueError, "groups"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 1, 1), stride=0), ValueError, "stride"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 1, 1), padding=-1), ValueError, "padding"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 1, 1), dilation=1.5), TypeError, "dilation"),
        (lambda: conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), dilation=2), ValueError, "input"),
        (lambda: conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(2, 1, 1, 1), torch.zeros(3)), ValueError, "bias"),
        (lambda: conv2d_backward(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 1, 1)),
         ValueError, "grad_output"),
        (lambda: max_pool2d(torch.zeros(1, 1, 4, 4), 2, padding=2), ValueError, "padding"),
        (lambda: max_pool2d(torch.zeros(1, 4, 4), 2), ValueError, "input"),
        (lambda: max_pool2d(torch.zeros(1, 1, 4, 4), 0), ValueError, "kernel_size"),
        (lambda: max_pool2d(torch.zeros(1, 1, 4, 4), 2, ceil_mode=1), TypeError, "ceil_mode"),
        (lambda: max_pool2d(torch.zeros(1, 1, 2, 2), 3), ValueError, "input"),
        (lambda: max_pool2d_backward(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), (1, 1, 4, 4)),
         TypeError, "indices"),
        (lambda: max_pool2d_backward(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2).long(), (2, 1, 4, 4)),
         ValueError, "input_size"),
        (lambda: fold(torch.zeros(1, 5, 4), 3, 2), ValueError, "input"),
        (lambda: numerical_gradient(3, torch.zeros(2)), TypeError, "f"),
        (lambda: numerical_gradient(lambda z: z.sum(), torch.zeros(2), h=0), ValueError, "h"),
        (lambda: relative_error(torch.zeros(2), torch.zeros(3)), ValueError, "numerical"),
        (lambda: knn_predict(torch.zeros(3, 2), torch.zeros(3).long(), torch.zeros(1, 2), k=4), ValueError, "k"),
        (lambda: knn_predict(torch.zeros(3, 2), torch.zeros(3), torch.zeros(1, 2)), TypeError, "labels"),
        (lambda: knn_predict(torch.zeros(3, 2), torch.zeros(3).long(), torch.zeros(1, 3)), ValueError, "queries"),
        (lambda: train_classifier(torch.nn.Flatten(), torch.zeros(3, 2), torch.zeros(3).long(), 0), ValueError,
         "steps"),
        (lambda: train_classifier(torch.nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(2).long(), 1), ValueError,
         "labels"),
        (lambda: train_classifier(torch.nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(3).long(), 1, lr=-1.0),
         ValueError, "lr"),
        (lambda: accuracy("net", torch.zeros(3, 2), torch.zeros(3).long()), TypeError, "model"),
    ],
)
def test_bad_inputs(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
