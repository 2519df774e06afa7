"""Seeded synthetic sequence tasks.

:class:`ToyTranslation` (chapters 13 and 14, which train their models on the
same draws of it, :func:`toy_translation_data`) is a translation-like task
with a known alignment: a "source sentence" of random words is translated word by word through a fixed
random dictionary, in which some words become two target words (so lengths
differ, as between real languages), and the word order is reversed (so the
first target word depends on the last source word, the hardest case for a
model that must carry the source in a fixed-size state).

Token ids ``0, 1, 2`` are ``PAD``, ``BOS`` and ``EOS`` in both vocabularies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from papers30 import _checks

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3


def pad_batch(seqs: list[list[int]], pad: int = PAD) -> torch.Tensor:
    """Right-pad a list of token lists into a ``(B, L)`` long tensor."""
    if not seqs:
        raise ValueError("seqs must hold at least one sequence")
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [pad] * (width - len(s)) for s in seqs], dtype=torch.long).view(len(seqs), width)


@dataclass
class Batch:
    """A batch of the toy translation task.

    ``src (B, S)`` source tokens ending in ``EOS``; ``tgt_in (B, T)`` target
    starting with ``BOS`` (decoder input); ``tgt_out (B, T)`` the same target
    shifted left and ending in ``EOS`` (what the decoder must predict);
    ``align`` one list per example giving, for each target word, the index of
    the source word it translates.
    """

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    align: list[list[int]]

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self, deep=False)  # one is made per training step

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device), self.align)

    def sentences(self) -> list[tuple[int, ...]]:
        """The source sentences as tuples of word ids (no ``EOS``, no padding)."""
        return [tuple(row[: row.index(EOS)]) for row in self.src.tolist()]


class ToyTranslation:
    """Word-by-word translation with reordering and two-word renderings.

    Args:
        n_words: source words (excluding the special tokens).
        min_len, max_len: source sentence lengths (in words) for :meth:`sample`.
        two_word_fraction: fraction of source words rendered as two target words.
        generator: seeds the dictionary.
    """

    def __init__(
        self,
        n_words: int = 24,
        min_len: int = 3,
        max_len: int = 10,
        two_word_fraction: float = 0.25,
        generator: torch.Generator | None = None,
    ) -> None:
        _checks.positive_int("n_words", n_words)
        _checks.positive_int("min_len", min_len)
        _checks.positive_int("max_len", max_len)
        if min_len > max_len:
            raise ValueError(f"min_len ({min_len}) must not exceed max_len ({max_len})")
        _checks.probability("two_word_fraction", two_word_fraction, inclusive_one=True)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.n_words, self.min_len, self.max_len = n_words, min_len, max_len
        n_two = round(two_word_fraction * n_words)
        self.tgt_vocab = N_SPECIAL + n_words + n_two
        self.src_vocab = N_SPECIAL + n_words
        # Each source word gets its own target word; the first n_two words
        # of a random order also get a second, private target word.
        order = torch.randperm(n_words, generator=g).tolist()
        targets = (torch.randperm(n_words, generator=g) + N_SPECIAL).tolist()
        self.dictionary: dict[int, list[int]] = {}
        for rank, w in enumerate(order):
            words = [targets[w]]
            if rank < n_two:
                words.append(N_SPECIAL + n_words + rank)
            self.dictionary[N_SPECIAL + w] = words

    def translate(self, sentence: list[int]) -> tuple[list[int], list[int]]:
        """The target words for a source word list, and for each the source index it came from."""
        out, align = [], []
        for i in reversed(range(len(sentence))):
            for w in self.dictionary[sentence[i]]:
                out.append(w)
                align.append(i)
        return out, align

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        lengths: tuple[int, int] | None = None,
        exclude: set[tuple[int, ...]] | None = None,
    ) -> Batch:
        """Draw ``batch_size`` random sentences with lengths in ``lengths`` (default ``min_len..max_len``).

        Lengths and words are uniform. Sentences in ``exclude`` (tuples of
        word ids) are redrawn, which keeps a held-out set out of training.
        """
        _checks.positive_int("batch_size", batch_size)
        lo, hi = lengths if lengths is not None else (self.min_len, self.max_len)
        sentences: list[list[int]] = []
        while len(sentences) < batch_size:
            need = batch_size - len(sentences)
            n = torch.randint(lo, hi + 1, (need,), generator=generator).tolist()
            words = (torch.randint(0, self.n_words, (need, hi), generator=generator) + N_SPECIAL).tolist()
            for k, row in zip(n, words):
                if exclude is None or tuple(row[:k]) not in exclude:
                    sentences.append(row[:k])
        return self.batch(sentences)

    def batch(self, sentences: list[list[int]]) -> Batch:
        """Build a :class:`Batch` from source word lists."""
        pairs = [self.translate(s) for s in sentences]
        return Batch(
            src=pad_batch([s + [EOS] for s in sentences]),
            tgt_in=pad_batch([[BOS] + t for t, _ in pairs]),
            tgt_out=pad_batch([t + [EOS] for t, _ in pairs]),
            align=[a for _, a in pairs],
        )


@dataclass
class TranslationData:
    """One draw of the toy translation task, shared by every model trained on it.

    ``task`` holds the dictionary; ``valid`` and ``test`` are held-out
    batches (``valid`` for decisions during training, such as when a model
    first reaches a target, ``test`` for the reported scores); ``batches``
    are the training batches in the order they are used. No held-out
    sentence appears in a training batch, and ``valid`` and ``test`` share
    no sentence.
    """

    task: ToyTranslation
    valid: Batch
    test: Batch
    batches: list[Batch]


def toy_translation_data(
    seed: int,
    steps: int,
    batch_size: int = 32,
    valid_size: int = 200,
    test_size: int = 300,
    n_words: int = 24,
    min_len: int = 3,
    max_len: int = 10,
    two_word_fraction: float = 0.25,
) -> TranslationData:
    """Draw the dictionary, the held-out sets and ``steps`` training batches from ``seed``.

    Everything comes from one generator seeded with ``seed``, in a fixed
    order (dictionary, test, valid, batches), so two models trained on the
    same seed see the same dictionary, held-out sentences and batches, and
    the first ``k`` batches do not depend on ``steps``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    _checks.positive_int("steps", steps)
    _checks.positive_int("valid_size", valid_size)
    _checks.positive_int("test_size", test_size)
    g = torch.Generator().manual_seed(seed)
    task = ToyTranslation(n_words, min_len, max_len, two_word_fraction, generator=g)
    test = task.sample(test_size, g)
    held = set(test.sentences())
    valid = task.sample(valid_size, g, exclude=held)
    held |= set(valid.sentences())
    batches = [task.sample(batch_size, g, exclude=held) for _ in range(steps)]
    return TranslationData(task, valid, test, batches)


def remember_symbol(
    batch_size: int,
    lag: int,
    n_symbols: int = 4,
    n_distractors: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The long-range recall task of chapter 3: name the symbol seen ``lag`` steps ago.

    Each sequence has ``lag + 1`` tokens. Token 0 is a *symbol*, drawn
    uniformly from ids ``0 .. n_symbols - 1``; tokens ``1 .. lag`` are
    *distractors*, drawn uniformly from ids ``n_symbols .. n_symbols +
    n_distractors - 1``. After reading the last distractor a model must output
    the symbol, which it saw ``lag`` steps earlier; guessing scores
    ``1 / n_symbols``.

    Returns ``tokens (B, lag + 1)`` (long, vocabulary ``n_symbols +
    n_distractors``) and ``labels (B,)`` (long, in ``0 .. n_symbols - 1``).
    """
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("lag", lag)
    _checks.positive_int("n_symbols", n_symbols)
    _checks.positive_int("n_distractors", n_distractors)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    labels = torch.randint(0, n_symbols, (batch_size,), generator=g)
    noise = torch.randint(0, n_distractors, (batch_size, lag), generator=g) + n_symbols
    tokens = torch.cat([labels[:, None], noise], dim=1)
    return tokens, labels


def sorting_task(
    batch_size: int,
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sets of ``n`` numbers to sort (chapter 8): the inputs and the argsort that sorts them.

    The numbers are drawn independently and uniformly from ``[0, 1)``, as in
    the sorting experiment of Vinyals, Bengio and Kudlur (2016); ties have
    probability zero. ``order[b, k]`` is the position in ``x[b]`` of its
    ``k``-th smallest number, so ``x.gather(1, order)`` is sorted ascending.

    Returns ``x (B, n)`` (float32) and ``order (B, n)`` (long).
    """
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("n", n)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, n, generator=g)
    order = x.argsort(dim=1)
    return x, order


def copy_task(
    batch_size: int,
    length: int,
    width: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy task of the Neural Turing Machine paper (chapter 20).

    Each sequence is ``length`` random vectors of ``width`` independent fair
    bits, then one delimiter step, then ``length`` blank steps during which a
    model must output the vectors again, in order. The inputs have
    ``width + 1`` channels: the bits, and a last channel that is 1 only on the
    delimiter step (whose bit channels are 0). Blank steps are all zeros.

    Returns ``inputs (B, 2 * length + 1, width + 1)`` and ``targets (B, length,
    width)``, both float32; the targets are what the model must emit at steps
    ``length + 1 .. 2 * length`` (0-based), i.e. ``inputs[:, :length, :width]``.
    """
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("length", length)
    _checks.positive_int("width", width)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (batch_size, length, width), generator=g).float()
    inputs = torch.zeros(batch_size, 2 * length + 1, width + 1)
    inputs[:, :length, :width] = bits
    inputs[:, length, width] = 1.0
    return inputs, bits


def nth_farthest(
    batch_size: int,
    n_vectors: int = 8,
    dim: int = 16,
    generator: torch.Generator | None = None,
    ranks: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The N-th farthest task of Santoro et al. (2018), chapter 18.

    Each example is ``n_vectors`` (``K``) vectors drawn from a standard
    normal in ``dim`` dimensions, shown one per time step. Each vector carries
    an ID, a random permutation of ``0 .. K-1`` over the K vectors, and
    every step repeats the question "which vector is the ``n``-th farthest
    from the vector with ID ``m``?" (``n`` and ``m`` uniform over
    ``0 .. K-1``; ``n = 0`` is the farthest, ``n = K - 1`` the reference
    vector itself, at distance zero). The answer is that vector's ID.

    Each step's input is ``[vector (dim) | one-hot ID (K) | one-hot n (K) |
    one-hot m (K)]``. Returns ``inputs (B, K, dim + 3K)`` (float32) and
    ``targets (B,)`` (long); Euclidean distances, ties have probability zero.

    ``ranks`` restricts the question to those ranks (``n`` uniform over
    them), e.g. ``[0]`` always asks for the farthest vector and
    ``range(K - 1)`` never asks for the reference itself; ``None`` (the
    paper's task) allows all ``K``.
    """
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("n_vectors", n_vectors)
    _checks.positive_int("dim", dim)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    B, K = batch_size, n_vectors
    if ranks is not None:
        allowed = list(ranks) if not isinstance(ranks, (str, bytes)) else None
        if (not allowed or any(isinstance(r, bool) or not isinstance(r, int) for r in allowed)
                or any(not 0 <= r < K for r in allowed)):
            raise ValueError(f"ranks must be a non-empty sequence of integers in 0 .. {K - 1}, got {ranks!r}")
    vectors = torch.randn(B, K, dim, generator=g)
    ids = torch.rand(B, K, generator=g).argsort(dim=1)  # ids[b, k]: ID of the vector at step k
    if ranks is None:
        n = torch.randint(0, K, (B,), generator=g)
    else:
        n = torch.tensor(allowed)[torch.randint(0, len(allowed), (B,), generator=g)]
    m = torch.randint(0, K, (B,), generator=g)
    ref = (ids == m[:, None]).float().argmax(dim=1)  # step holding the reference vector
    dist = (vectors - vectors[torch.arange(B), ref][:, None]).norm(dim=-1)  # (B, K)
    order = dist.argsort(dim=1, descending=True)  # steps from farthest to nearest
    targets = ids.gather(1, order.gather(1, n[:, None])).squeeze(1)
    eye = torch.eye(K)
    inputs = torch.cat([vectors, eye[ids], eye[n][:, None].expand(B, K, K),
                        eye[m][:, None].expand(B, K, K)], dim=-1)
    return inputs, targets


def nearest_seed_segmentation(
    batch_size: int,
    size: int = 32,
    n_seeds: int = 4,
    n_classes: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dense-prediction task that needs wide context (chapter 11): colour each pixel by its nearest seed.

    Each ``size x size`` image holds ``n_seeds`` *seed* pixels at distinct
    positions drawn uniformly, each with a class drawn uniformly from
    ``0 .. n_classes - 1``; the image is one-hot, with a 1 in channel ``c`` at
    each seed of class ``c`` and zeros elsewhere. The label of every pixel is
    the class of the seed nearest to it in Euclidean distance (a Voronoi
    diagram coloured by class); on an exact tie the seed drawn first wins. A
    pixel far from every seed can only be labelled by a model that sees that
    far.

    Returns ``images (B, n_classes, size, size)`` (float32), ``labels (B, size,
    size)`` (long) and ``distance (B, size, size)`` (float32, the Euclidean
    distance in pixels from each pixel to its nearest seed).
    """
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("size", size)
    _checks.positive_int("n_seeds", n_seeds)
    _checks.positive_int("n_classes", n_classes)
    if n_seeds > size * size:
        raise ValueError(f"n_seeds must be at most size * size = {size * size}, got {n_seeds}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    # distinct positions: the first n_seeds of a random permutation of the pixels, (B, S)
    flat = torch.rand(batch_size, size * size, generator=g).argsort(dim=1)[:, :n_seeds]
    classes = torch.randint(0, n_classes, (batch_size, n_seeds), generator=g)
    rows, cols = flat // size, flat % size
    images = torch.zeros(batch_size, n_classes * size * size)
    images.scatter_(1, classes * size * size + flat, 1.0)  # channel c, pixel p: c * size^2 + p
    grid = torch.arange(size)
    # squared distance from every pixel to every seed: (B, S, H, W); exact in integers
    d2 = (grid[None, None, :, None] - rows[:, :, None, None]) ** 2 + (
        grid[None, None, None, :] - cols[:, :, None, None]
    ) ** 2
    nearest = d2.argmin(dim=1)  # first minimum on ties: the seed drawn first
    labels = classes.gather(1, nearest.flatten(1)).view(batch_size, size, size)
    distance = d2.min(dim=1).values.float().sqrt()
    return images.view(batch_size, n_classes, size, size), labels, distance
