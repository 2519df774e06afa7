"""Convolutional networks: AlexNet's pieces (chapter 7) and dilated convolutions (chapter 11).

Chapter 7 (Krizhevsky et al., 2012). :func:`local_response_norm` and
:class:`LocalResponseNorm` implement the paper's across-channel normalisation
from its formula, with the name, argument order and defaults of
``torch.nn.functional.local_response_norm`` and ``torch.nn.LocalResponseNorm``.
:class:`SmallAlexNet` is a scaled-down AlexNet for small images (the book's
Fashion-MNIST set): the same sequence of convolution, non-linearity,
normalisation and overlapping max-pooling stages and a dropout-regularised
classifier, with switches for the activation (ReLU or tanh), LRN and dropout.
:class:`ConvNet` is a plain stack of convolution, activation and pooling
stages with a linear classifier (the four-layer network of the paper's
Figure 1, and a general small classifier for later chapters), and
:func:`epochs_to_error` measures Figure 1's quantity: the epochs to a
training-error threshold with the fastest of several learning rates.

Chapter 11 (Yu and Koltun, 2016): see the section below.

Shapes: ``B`` batch, ``C`` channels, ``H`` x ``W`` image height x width,
``K`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from papers30 import _checks
from papers30.data.images import augment, load_images
from papers30.runtime import generator, get_device, seed_everything
from papers30.training import History, fit

__all__ = [
    "ACTIVATIONS", "LARGE_MULTIPLIERS", "PAPER_DILATIONS", "ContextModule", "ConvNet", "LocalResponseNorm",
    "PoolingModule", "Race", "SmallAlexNet", "classification_error", "conv2d", "empirical_receptive_field",
    "epochs_to_error", "identity_kernel", "in_view", "large_widths", "local_response_norm", "receptive_field",
    "receptive_field_extent", "train_small_alexnet",
]

ACTIVATIONS = ("relu", "tanh")


def _check_lrn_args(size: object, alpha: object, beta: object, k: object) -> None:
    _checks.positive_int("size", size)
    for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


def local_response_norm(
    input: torch.Tensor,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
) -> torch.Tensor:
    """Normalise each activation by the energy of its neighbours across channels.

    ``input`` is ``(B, C, *)`` with at least one trailing dimension (e.g.
    ``(B, C, H, W)``); the output has the same shape. For channel ``c``,

    ``out[:, c] = input[:, c] / (k + alpha / size * sum_j input[:, j] ** 2) ** beta``

    where ``j`` runs over the ``size`` channels ``c - size // 2 ..
    c + (size - 1) // 2`` that exist (channels beyond the edges count as zero,
    and the sum is still divided by ``size``). This is the convention of
    ``torch.nn.functional.local_response_norm``; the paper writes the
    constant as ``alpha`` without the ``1 / size`` (its ``alpha = 1e-4`` with
    ``size = 5`` is ``alpha = 5e-4`` here) and uses ``k = 2``, ``beta = 0.75``.
    """
    _checks.tensor("input", input, kind="float")
    if input.dim() < 3:
        shape = tuple(input.shape)
        raise ValueError(f"input must have 3 or more dimensions (B, C, ...), got shape {shape}")
    _check_lrn_args(size, alpha, beta, k)
    C = input.shape[1]
    before, after = size // 2, (size - 1) // 2
    # zero channels at both edges: (B, before + C + after, *)
    padded = F.pad(input.square(), (0, 0) * (input.dim() - 2) + (before, after))
    energy = sum(padded[:, i : i + C] for i in range(size))  # window sums, (B, C, *)
    return input / (k + alpha / size * energy).pow(beta)


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm` (as ``torch.nn.LocalResponseNorm``)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        _check_lrn_args(size, alpha, beta, k)
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, *)`` -> ``(B, C, *)``."""
        return local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _activation(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.Tanh()


def _init_weights(module: nn.Module, activation: str, init_std: float | None) -> None:
    """Zero biases; weights N(0, gain^2 / fan_in) (signal-preserving) or N(0, init_std^2) for every layer."""
    gain = nn.init.calculate_gain(activation)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = gain / math.sqrt(m.weight[0].numel()) if init_std is None else init_std
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)


def _check_images(images: object, channels: int, size: int) -> None:
    _checks.tensor("images", images, ndim=4, kind="float")
    _checks.size_matches("images", images.shape[1], channels, "channels")  # type: ignore[union-attr]
    _checks.size_matches("images", images.shape[-1], size, "width")  # type: ignore[union-attr]
    _checks.size_matches("images", images.shape[-2], size, "height")  # type: ignore[union-attr]


def _check_init_std(init_std: object) -> None:
    if init_std is None:
        return
    if isinstance(init_std, bool) or not isinstance(init_std, (int, float)):
        raise TypeError(f"init_std must be a float or None, got {type(init_std).__name__}")
    if not (math.isfinite(init_std) and init_std > 0):
        raise ValueError(f"init_std must be positive, got {init_std}")


class SmallAlexNet(nn.Module):
    """A scaled-down AlexNet for small grey or colour images.

    Features, for ``widths = (w1, w2, w3)``:

    1. 5x5 convolution to ``w1`` channels, activation, LRN, 3x3 max-pool with stride 2;
    2. 3x3 convolution to ``w2`` channels, activation, LRN, 3x3 max-pool with stride 2;
    3. two 3x3 convolutions to ``w3`` channels, each followed by the activation,
       then a 3x3 max-pool with stride 2.

    The pools overlap (window 3 > stride 2) as in the paper. A 28x28 input
    shrinks to 13x13, 6x6 and 2x2. The classifier is AlexNet's: two hidden
    fully connected layers of ``hidden`` units with the activation, each
    followed by dropout (the paper's "dropout in the first two fully-connected
    layers"), then a linear layer to ``num_classes`` logits. ``activation`` is
    ``"relu"`` or ``"tanh"``; ``lrn=False`` drops the normalisation;
    ``dropout`` is the probability of zeroing a hidden unit (0 turns dropout
    off). LRN uses the paper's constants (``k = 2``, ``beta = 0.75``,
    ``n = 5``, paper ``alpha = 1e-4``). Weights start signal-preserving for the
    activation (``init_std=None``) or from ``N(0, init_std^2)`` (the paper's
    0.01); biases start at zero.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        image_size: int = 28,
        widths: tuple[int, int, int] = (16, 32, 32),
        hidden: int = 64,
        activation: str = "relu",
        lrn: bool = True,
        dropout: float = 0.5,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("num_classes", num_classes)
        _checks.positive_int("image_size", image_size)
        if not isinstance(widths, (tuple, list)) or len(widths) != 3:
            raise TypeError(f"widths must be a tuple of three ints, got {widths!r}")
        for w in widths:
            _checks.positive_int("widths", w)
        _checks.positive_int("hidden", hidden)
        _checks.one_of("activation", activation, ACTIVATIONS)
        if not isinstance(lrn, bool):
            raise TypeError(f"lrn must be a bool, got {type(lrn).__name__}")
        _checks.probability("dropout", dropout)
        _check_init_std(init_std)
        side = image_size
        for _ in range(3):
            side = (side - 3) // 2 + 1  # each 3x3, stride-2 pool
        if side < 1:
            raise ValueError(f"image_size must be at least 15 for three poolings, got {image_size}")
        w1, w2, w3 = widths

        def norm() -> nn.Module:
            return LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, 5, padding=2), _activation(activation), norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w1, w2, 3, padding=1), _activation(activation), norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w2, w3, 3, padding=1), _activation(activation),
            nn.Conv2d(w3, w3, 3, padding=1), _activation(activation),
            nn.MaxPool2d(3, stride=2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(w3 * side * side, hidden), _activation(activation), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), _activation(activation), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip
        self.in_channels, self.image_size = in_channels, image_size
        _init_weights(self, activation, init_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` with ``H = W = image_size`` -> logits ``(B, K)``."""
        _check_images(images, self.in_channels, self.image_size)
        return self.classifier(self.features(images))


class ConvNet(nn.Module):
    """A plain convolutional classifier: ``len(widths)`` stages of convolution, activation and pooling, then one linear layer.

    Stage ``i`` is a ``kernel_size`` x ``kernel_size`` convolution to
    ``widths[i]`` channels (padding keeps the size), the activation
    (``"relu"`` or ``"tanh"``) and an overlapping 3x3 max-pool with stride 2
    and padding 1, which halves the side (rounding up): 28 -> 14 -> 7 -> 4.
    A linear layer maps the flattened features to ``num_classes`` logits.
    With the default three stages this is a four-layer network like the one
    of the paper's Figure 1 (and of cuda-convnet's quick CIFAR-10 network).
    Weights start signal-preserving for the activation (``init_std=None``) or
    from ``N(0, init_std^2)``; biases at zero.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        image_size: int = 28,
        widths: Sequence[int] = (32, 32, 64),
        kernel_size: int = 5,
        activation: str = "relu",
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("num_classes", num_classes)
        _checks.positive_int("image_size", image_size)
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise TypeError(f"widths must be a non-empty sequence of ints, got {widths!r}")
        for w in widths:
            _checks.positive_int("widths", w)
        _checks.positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        _checks.one_of("activation", activation, ACTIVATIONS)
        _check_init_std(init_std)
        layers: list[nn.Module] = []
        side, c_in = image_size, in_channels
        for w in widths:
            layers += [nn.Conv2d(c_in, w, kernel_size, padding=kernel_size // 2), _activation(activation),
                       nn.MaxPool2d(3, stride=2, padding=1)]
            side, c_in = (side - 1) // 2 + 1, w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, num_classes))
        self.in_channels, self.image_size = in_channels, image_size
        _init_weights(self, activation, init_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` with ``H = W = image_size`` -> logits ``(B, K)``."""
        _check_images(images, self.in_channels, self.image_size)
        return self.classifier(self.features(images))


@dataclass
class Race:
    """What :func:`epochs_to_error` measured: the winner, its epochs, and every runner's curve.

    ``lr`` is the winning learning rate (None when no model reached the
    threshold), ``epochs`` the epochs it took (or the cap), ``running[lr]``
    each model's training error after every step from the end of its first
    epoch, ``dropped[lr]`` the step at which a model dropped out, and
    ``models[lr]`` the trained models as they stood when the race ended.
    """

    lr: float | None
    epochs: float
    running: dict[float, list[float]]
    dropped: dict[float, int]
    steps_per_epoch: int
    models: dict[float, nn.Module]

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def best(self) -> float:
        """The winning rate or, when none won, the rate whose last training error is lowest."""
        if self.lr is not None:
            return self.lr
        return min(self.running, key=lambda lr: self.running[lr][-1] if self.running[lr] else math.inf)


def epochs_to_error(
    make_model: Callable[[], nn.Module],
    lrs: Sequence[float],
    images: torch.Tensor,
    labels: torch.Tensor,
    threshold: float,
    *,
    batch_size: int = 64,
    max_epochs: float = 20.0,
    momentum: float = 0.9,
    generator: torch.Generator | None = None,
) -> Race:
    """Epochs until a model first reaches training error ``threshold``, with the best of several learning rates.

    One model per learning rate in ``lrs`` (each from ``make_model()``, so
    with the same initial weights when it seeds itself) trains by SGD with
    ``momentum``, all in lockstep on the same mini-batches: each epoch is a
    fresh random order of ``images (N, C, H, W)`` and ``labels (N,)``, drawn
    from ``generator``, cut into batches of ``batch_size`` (the last partial
    batch is dropped). A model's training error is the fraction of mistakes
    on its last epoch's worth of batches, each counted before the step that
    learns from it (the per-epoch training error of the paper's Figure 1),
    checked after every step once a full epoch has passed. The race stops
    at the first step where a model's error is at most ``threshold``: that
    model's learning rate wins (of several at the same step, the one with the
    lowest error, then the one listed first) and ``epochs`` is the steps so
    far divided by the steps per epoch. A
    model whose loss stops being finite, or whose error is still above 0.85
    after two epochs (it has stalled at chance or diverged), drops out. When no
    model reaches the threshold within ``max_epochs``, ``lr`` is None and
    ``epochs`` is ``max_epochs`` (a lower bound on the true value).
    """
    if not callable(make_model):
        raise TypeError(f"make_model must be callable, got {type(make_model).__name__}")
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence) or not lrs:
        raise TypeError(f"lrs must be a non-empty sequence of floats, got {lrs!r}")
    for lr in lrs:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lrs must hold positive floats, got {lr!r}")
    _checks.tensor("images", images, ndim=4, kind="float")
    _checks.tensor("labels", labels, ndim=1, kind="int")
    _checks.size_matches("labels", len(labels), len(images), "length")
    _checks.probability("threshold", threshold)
    _checks.positive_int("batch_size", batch_size)
    if len(images) < batch_size:
        raise ValueError(f"batch_size must be at most the number of images ({len(images)}), got {batch_size}")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, (int, float)) or not max_epochs > 0:
        raise ValueError(f"max_epochs must be positive, got {max_epochs!r}")
    per_epoch = len(images) // batch_size
    models = {float(lr): make_model() for lr in lrs}
    opts = {lr: torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum) for lr, m in models.items()}
    mistakes: dict[float, list[float]] = {lr: [] for lr in models}
    running: dict[float, list[float]] = {lr: [] for lr in models}
    dropped: dict[float, int] = {}
    for m in models.values():
        m.train()
    step, total = 0, int(max_epochs * per_epoch)
    while step < total:
        order = torch.randperm(len(images), generator=generator).to(images.device)
        for b in range(per_epoch):
            if step == total:
                break
            step += 1
            idx = order[b * batch_size:(b + 1) * batch_size]
            x, y = images[idx], labels[idx]
            arrived: list[tuple[float, float]] = []  # (error, lr) of the models at the threshold
            for lr in [lr for lr in models if lr not in dropped]:
                logits = models[lr](x)
                loss = F.cross_entropy(logits, y)
                opts[lr].zero_grad(set_to_none=True)
                loss.backward()
                opts[lr].step()
                mistakes[lr].append((logits.argmax(1) != y).float().mean().item())
                if not math.isfinite(loss.item()):
                    dropped[lr] = step
                elif step >= per_epoch:
                    error = sum(mistakes[lr][-per_epoch:]) / per_epoch
                    running[lr].append(error)
                    if error <= threshold:
                        arrived.append((error, lr))
                    elif error > 0.85 and step >= 2 * per_epoch:
                        dropped[lr] = step
            if arrived:  # the lowest error wins a tie; equal errors go to the rate listed first
                return Race(min(arrived, key=lambda a: a[0])[1], step / per_epoch, running, dropped, per_epoch,
                        models)
            if len(dropped) == len(models):
                return Race(None, float(max_epochs), running, dropped, per_epoch, models)
    return Race(None, float(max_epochs), running, dropped, per_epoch, models)


# --- Dilated convolutions and the context module (chapter 11) -------------------------
#
# Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions" (ICLR 2016).
def classification_error(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = 500) -> float:
    """Fraction of ``images (N, C, H, W)`` that ``model`` puts in a class other than ``labels (N,)``.

    Evaluated without gradients, ``chunk`` images at a time, in whatever mode
    (training or evaluation) the model is in.
    """
    _checks.tensor("images", images, ndim=4, kind="float")
    _checks.tensor("labels", labels, ndim=1, kind="int")
    _checks.size_matches("labels", len(labels), len(images), "length")
    _checks.positive_int("chunk", chunk)
    with torch.no_grad():
        wrong = sum((model(xb).argmax(1) != yb).sum().item()
                    for xb, yb in zip(images.split(chunk), labels.split(chunk)))
    return wrong / len(labels)


def train_small_alexnet(
    regularised: bool,
    seed: int,
    n_images: int = 500,
    hidden: int = 256,
    lr: float = 0.02,
    batch_size: int = 32,
    steps: int = 800,
    every: int = 100,
    n_eval: int = 1000,
    stop_after: int | None = None,
) -> History:
    """Chapter 7's overfitting run: a :class:`SmallAlexNet` (ReLU, no LRN) on few Fashion-MNIST images.

    The network (initialised from seed ``300 + seed``, ``hidden`` units per
    hidden layer) learns from the first ``n_images`` training images by SGD
    with momentum 0.9 at rate ``lr``, on ``steps`` batches of ``batch_size``
    drawn with replacement from seed ``400 + seed``. ``regularised=True``
    adds dropout 0.5 after both hidden layers and a fresh augmentation
    (:func:`papers30.data.images.augment`, coins from seed ``500 + seed``) at
    every step; otherwise everything is the same, so the two runs of a seed
    share initial weights and batches. Every ``every`` steps the history
    records the error on the whole training subset (``"train"``) and on the
    first ``n_eval`` test images (``"test"``), in evaluation mode.
    ``stop_after`` stops after that many steps (for replaying a recorded run).
    Returns the :class:`papers30.training.History` (one loss per step).
    """
    if not isinstance(regularised, bool):
        raise TypeError(f"regularised must be a bool, got {type(regularised).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    for name, value in (("n_images", n_images), ("hidden", hidden), ("batch_size", batch_size),
                        ("steps", steps), ("every", every), ("n_eval", n_eval)):
        _checks.positive_int(name, value)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    device = get_device()
    x_train, y_train = load_images("fashion_mnist", "train", device=device)
    x_test, y_test = load_images("fashion_mnist", "test", device=device)
    x_small, y_small = x_train[:n_images], y_train[:n_images]
    x_eval, y_eval = x_test[:n_eval], y_test[:n_eval]
    seed_everything(300 + seed)
    model = SmallAlexNet(hidden=hidden, lrn=False, dropout=0.5 if regularised else 0.0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    batches, coins = generator(400 + seed), generator(500 + seed)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(0, len(y_small), (batch_size,), generator=batches).to(device)
        x = augment(x_small[idx], coins) if regularised else x_small[idx]
        return F.cross_entropy(model(x), y_small[idx])

    def evaluate() -> dict[str, float]:
        return {"train": classification_error(model, x_small, y_small),
                "test": classification_error(model, x_eval, y_eval)}

    return fit(model, opt, loss_fn, steps, evaluate=evaluate, every=every, stop_after=stop_after)


# :func:`conv2d` computes a (dilated) convolution from its definition, with the
# name and argument order of ``torch.nn.functional.conv2d``;
# :func:`receptive_field` is the analytic receptive field of a stack of
# stride-1 layers and :func:`empirical_receptive_field` measures it with a
# gradient; :class:`ContextModule` is the paper's stack of 3x3 convolutions with
# growing dilation, with its identity initialisation (basic or large widths,
# :func:`large_widths`); :class:`PoolingModule` is the equal-parameter
# alternative that pools and upsamples; :func:`in_view` says which pixels a
# square receptive field sees.

PAPER_DILATIONS = (1, 1, 2, 4, 8, 16, 1)  # layers 1-7 of the paper's context module (Table 1)
LARGE_MULTIPLIERS = (2, 2, 4, 8, 16, 32, 32)  # widths of layers 1-7 of the large module, in units of C


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """A 2-D convolution with dilation, summed tap by tap from the definition.

    ``input`` is ``(B, C, H, W)``, ``weight`` is ``(O, C, k, k')`` and ``bias``
    ``(O,)`` or None. With ``l = dilation`` and zero padding of ``padding`` on
    every side,

    ``out[b, o, i, j] = bias[o] + sum_{c, s, t} weight[o, c, s, t] * x[b, c, i*stride + l*s, j*stride + l*t]``

    so kernel tap ``(s, t)`` reads the input ``l`` times further away than in
    an ordinary convolution (``l = 1``). Like torch (and most libraries) this is
    a cross-correlation: the paper's convolution, which sums over
    ``p = s + l t``, is the same with the kernel flipped. Output
    ``(B, O, H', W')`` with ``H' = (H + 2 padding - l (k - 1) - 1) // stride + 1``.
    """
    _checks.tensor("input", input, ndim=4, kind="float")
    _checks.tensor("weight", weight, ndim=4, kind="float")
    _checks.size_matches("weight", weight.shape[1], input.shape[1], "input channels")
    if bias is not None:
        _checks.tensor("bias", bias, ndim=1, kind="float")
        _checks.size_matches("bias", bias.shape[0], weight.shape[0], "length")
    _checks.positive_int("stride", stride)
    _checks.positive_int("dilation", dilation)
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise TypeError(f"padding must be an int, got {type(padding).__name__}")
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    x = F.pad(input, (padding,) * 4)
    kh, kw = weight.shape[-2:]
    h_out = (x.shape[-2] - dilation * (kh - 1) - 1) // stride + 1
    w_out = (x.shape[-1] - dilation * (kw - 1) - 1) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input of shape {tuple(input.shape)} is smaller than the dilated kernel")
    out = input.new_zeros(input.shape[0], weight.shape[0], h_out, w_out)
    for s in range(kh):
        for t in range(kw):
            # the input pixels that tap (s, t) reads, for every output pixel: (B, C, H', W')
            window = x[..., s * dilation :: stride, t * dilation :: stride][..., :h_out, :w_out]
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, s, t], window)
    if bias is not None:
        out = out + bias[:, None, None]
    return out


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Side of the receptive field of a stack of stride-1 ``(kernel, dilation)`` layers.

    A ``k x k`` layer with dilation ``l`` lets one output pixel see ``l (k - 1)``
    more input pixels along each axis than its input pixels saw, so the side
    is ``1 + sum_i l_i (k_i - 1)``; the receptive field is that side squared.
    An empty stack sees one pixel.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of (kernel, dilation) pairs, got {layers!r}")
    side = 1
    for layer in layers:
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise TypeError(f"layers must hold (kernel, dilation) pairs, got {layer!r}")
        kernel, dilation = layer
        _checks.positive_int("layers", kernel)
        _checks.positive_int("layers", dilation)
        side += dilation * (kernel - 1)
    return side


def empirical_receptive_field(
    module: nn.Module,
    input: torch.Tensor,
    position: tuple[int, int] | None = None,
    channel: int = 0,
) -> torch.Tensor:
    """The input pixels on which one output unit of ``module`` depends, found with a gradient.

    ``input`` is one image ``(C, H, W)`` or ``N`` images ``(N, C, H, W)``;
    ``module`` maps ``(N, C, H, W)`` to ``(N, O, H, W)`` (same resolution) and
    treats the images independently. The unit is ``output[n, channel, i, j]``
    with ``(i, j) = position`` (default: the centre). Returns a bool mask
    ``(H, W)``: True where, for at least one image ``n``, the gradient of that
    unit with respect to some input channel at that pixel is non-zero. Outside
    the receptive field the gradient is exactly zero; inside it vanishes only
    by accident (a switched-off ReLU on every path, or an exact cancellation)
    and taking several random images makes such accidents negligible.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    _checks.tensor("input", input, ndim=(3, 4), kind="float")
    H, W = input.shape[-2:]
    i, j = (H // 2, W // 2) if position is None else position
    if not (0 <= i < H and 0 <= j < W):
        raise ValueError(f"position must lie inside the {H}x{W} image, got {position}")
    x = input.detach().reshape(-1, *input.shape[-3:]).requires_grad_(True)  # (N, C, H, W)
    out = module(x)
    if out.dim() != 4 or out.shape[-2:] != input.shape[-2:]:
        raise ValueError(f"module must keep the resolution, got output shape {tuple(out.shape)}")
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < out.shape[1]:
        raise ValueError(f"channel must be an int in [0, {out.shape[1]}), got {channel!r}")
    # the images are independent, so the gradient of the sum holds each image's own gradient
    (grad,) = torch.autograd.grad(out[:, channel, i, j].sum(), x)
    return grad.ne(0).any(dim=1).any(dim=0)


def receptive_field_extent(mask: torch.Tensor) -> tuple[int, int]:
    """Height and width of the bounding box of the True pixels of a ``(H, W)`` mask."""
    _checks.tensor("mask", mask, ndim=2, kind="bool")
    if not mask.any():
        raise ValueError("mask must have at least one True pixel")
    rows, cols = mask.nonzero().T
    return int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1


def identity_kernel(out_channels: int, in_channels: int, kernel_size: int, groups: int) -> torch.Tensor:
    """The paper's identity initialisation of a ``(out, in, k, k)`` kernel.

    All taps but the centre are zero. At the centre, with ``G = groups``
    (the paper's number of classes ``C``), output channel ``b`` reads input
    channel ``a`` with weight ``G / out`` when ``a`` and ``b`` fall in the same
    of ``G`` equal blocks of channels (``a G // in == b G // out``), else 0.
    With ``in = out = G`` this is the identity matrix; a stack of such layers
    that widens from ``G`` channels and narrows back to ``G`` computes the
    identity on non-negative inputs.
    """
    for name, v in (("out_channels", out_channels), ("in_channels", in_channels),
                    ("kernel_size", kernel_size), ("groups", groups)):
        _checks.positive_int(name, v)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd to have a centre tap, got {kernel_size}")
    if out_channels % groups or in_channels % groups:
        raise ValueError(f"groups must divide in_channels and out_channels, got {groups}")
    a = torch.arange(in_channels) * groups // in_channels
    b = torch.arange(out_channels) * groups // out_channels
    weight = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
    weight[:, :, kernel_size // 2, kernel_size // 2] = (b[:, None] == a[None, :]) * (groups / out_channels)
    return weight


def large_widths(channels: int) -> tuple[int, ...]:
    """The widths of the paper's *large* context module for ``channels`` classes (Table 1).

    Layers 1-7 have ``2C, 2C, 4C, 8C, 16C, 32C, 32C`` channels (``C = channels``);
    the final 1x1 layer returns to ``C``. The basic module has ``C`` throughout.
    """
    _checks.positive_int("channels", channels)
    return tuple(m * channels for m in LARGE_MULTIPLIERS)


def _widths(channels: int, width: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    """One width per 3x3 layer, each a positive multiple of ``channels``."""
    if width is None:
        widths = (channels,) * n
    elif isinstance(width, Sequence) and not isinstance(width, (str, bytes)):
        widths = tuple(width)
        if len(widths) != n:
            raise ValueError(f"width must give one width per layer ({n}), got {len(widths)}")
    else:
        widths = (width,) * n
    for w in widths:
        _checks.positive_int("width", w)
        if w % channels:
            raise ValueError(f"width must be a multiple of channels ({channels}), got {w}")
    return widths  # type: ignore[return-value]


class ContextModule(nn.Module):
    """The context module: 3x3 convolutions with growing dilation, then a 1x1 convolution.

    Maps ``(B, C, H, W)`` to ``(B, C, H, W)``: one 3x3 layer per entry of
    ``dilations`` (padding = dilation, so the resolution is kept), each
    followed by a ReLU, then a linear 1x1 layer back to ``channels``.
    ``width`` is the number of channels of the 3x3 layers: one int for all of
    them, or one per layer (each a multiple of ``channels``). The paper's
    *basic* module has ``width = channels`` (the default) and dilations 1, 1,
    2, 4, 8, 16, 1; its *large* module has ``width = large_widths(channels)``.

    ``init="identity"`` starts every layer at :func:`identity_kernel` with
    zero bias, plus Gaussian noise of standard deviation ``noise`` on every
    weight (the paper adds such noise when a layer widens, so the copies of a
    channel can become different); with ``noise=0`` the module is the
    identity on non-negative inputs. ``init="random"`` uses He-normal weights.
    The weights are drawn from ``generator`` when given.
    """

    def __init__(
        self,
        channels: int,
        dilations: Sequence[int] = PAPER_DILATIONS,
        *,
        width: int | Sequence[int] | None = None,
        init: str = "identity",
        noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _checks.positive_int("channels", channels)
        if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence) or not dilations:
            raise TypeError(f"dilations must be a non-empty sequence of ints, got {dilations!r}")
        for d in dilations:
            _checks.positive_int("dilations", d)
        widths = _widths(channels, width, len(dilations))
        _checks.one_of("init", init, ("identity", "random"))
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
            raise ValueError(f"noise must be a non-negative float, got {noise!r}")
        self.channels, self.widths, self.dilations = channels, widths, tuple(dilations)
        sizes = (channels, *widths)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3) for c_in, c_out in zip(sizes, sizes[1:]))
        self.final = nn.Conv2d(widths[-1], channels, 1)
        for conv in [*self.convs, self.final]:
            c_out, c_in, k, _ = conv.weight.shape
            with torch.no_grad():
                if init == "identity":
                    w = identity_kernel(c_out, c_in, k, channels)
                    w += noise * torch.randn(w.shape, generator=generator)
                else:
                    w = torch.randn(conv.weight.shape, generator=generator)
                    w *= math.sqrt(2.0 / (c_in * k * k))  # He initialisation for ReLU
                conv.weight.copy_(w)
                conv.bias.zero_()

    def layers(self) -> list[tuple[int, int]]:
        """The ``(kernel, dilation)`` pairs of the stack, for :func:`receptive_field`."""
        return [(3, d) for d in self.dilations] + [(1, 1)]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        _checks.tensor("input", input, ndim=4, kind="float")
        _checks.size_matches("input", input.shape[1], self.channels, "channels")
        x = input
        for conv, d in zip(self.convs, self.dilations):
            x = torch.relu(F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d))
        return self.final(x)


class PoolingModule(nn.Module):
    """The alternative of the paper's day: context by pooling and upsampling, at the context module's cost.

    Maps ``(B, C, H, W)`` to ``(B, C, H, W)`` with the same layers as a
    :class:`ContextModule` of the same ``width`` and seven 3x3 layers (so the
    same parameters), arranged as an hourglass in the manner of FCN and
    U-Net: layers 1-2 at full resolution, then 2x2 max-pooling before each
    of layers 3, 4 and 5 (down to 1/8), then bilinear 2x upsampling before
    layers 6, 7 and the final 1x1 layer, each upsampled map added to the
    encoder's map of the same resolution (a skip connection without
    parameters). Every 3x3 layer is followed by a ReLU. The output is the
    input plus the final layer's, and the final layer starts at zero, so the
    untrained module is the identity, as the identity-initialised context
    module is on non-negative inputs. The 3x3 layers start He-normal (from
    ``generator`` when given). ``H`` and ``W`` must be multiples of 8.
    """

    def __init__(self, channels: int, *, width: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _checks.positive_int("channels", channels)
        w = _widths(channels, width, 1)[0]
        self.channels, self.width = channels, w
        self.convs = nn.ModuleList(nn.Conv2d(channels if i == 0 else w, w, 3, padding=1) for i in range(7))
        self.final = nn.Conv2d(w, channels, 1)
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator)
                                  * math.sqrt(2.0 / conv.weight[0].numel()))
                conv.bias.zero_()
            self.final.weight.zero_()
            self.final.bias.zero_()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``, with ``H`` and ``W`` multiples of 8."""
        _checks.tensor("input", input, ndim=4, kind="float")
        _checks.size_matches("input", input.shape[1], self.channels, "channels")
        if input.shape[-1] % 8 or input.shape[-2] % 8:
            raise ValueError(f"input must have height and width divisible by 8, got {tuple(input.shape[-2:])}")
        c = self.convs

        def up(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

        h1 = torch.relu(c[0](input))  # full resolution
        h2 = torch.relu(c[1](h1))  # full resolution
        h3 = torch.relu(c[2](F.max_pool2d(h2, 2)))  # 1/2
        h4 = torch.relu(c[3](F.max_pool2d(h3, 2)))  # 1/4
        h5 = torch.relu(c[4](F.max_pool2d(h4, 2)))  # 1/8
        h6 = torch.relu(c[5](up(h5) + h4))  # 1/4
        h7 = torch.relu(c[6](up(h6) + h3))  # 1/2
        return input + self.final(up(h7) + h2)


def in_view(mask: torch.Tensor, side: int) -> torch.Tensor:
    """Which pixels have a True pixel of ``mask`` inside a ``side x side`` square centred on them.

    ``mask`` is a bool ``(..., H, W)`` map (e.g. where the seeds are) and
    ``side`` an odd receptive-field side. Returns a bool map of the same
    shape: True at pixel ``(i, j)`` when some True pixel ``(k, l)`` has
    ``|k - i| <= side // 2`` and ``|l - j| <= side // 2``, i.e. when a unit
    with that square receptive field, centred on the pixel, sees it. Pixels
    outside the image count as False.
    """
    _checks.tensor("mask", mask, kind="bool")
    if mask.dim() < 2:
        raise ValueError(f"mask must have 2 or more dimensions (..., H, W), got shape {tuple(mask.shape)}")
    _checks.positive_int("side", side)
    if side % 2 == 0:
        raise ValueError(f"side must be odd, got {side}")
    flat = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    seen = F.max_pool2d(flat, side, stride=1, padding=side // 2) > 0
    return seen.reshape(mask.shape)
