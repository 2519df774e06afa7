"""Seeded synthetic sequence tasks.

:class:`ToyTranslation` (chapter 13, and chapter 14 for the comparison with
recurrent attention) is a translation-like task with a known alignment: a
"source sentence" of random words is translated word by word through a fixed
random dictionary, in which some words become two target words (so lengths
differ, as between real languages), and the word order is reversed (so the
first target word depends on the last source word, the hardest case for a
model that must carry the source in a fixed-size state).

Token ids ``0, 1, 2`` are ``PAD``, ``BOS`` and ``EOS`` in both vocabularies.
"""

from __future__ import annotations

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
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


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

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device), self.align)


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

        Sentences in ``exclude`` (tuples of word ids) are redrawn, which keeps a
        held-out set out of training.
        """
        _checks.positive_int("batch_size", batch_size)
        lo, hi = lengths if lengths is not None else (self.min_len, self.max_len)
        sentences: list[list[int]] = []
        while len(sentences) < batch_size:
            n = int(torch.randint(lo, hi + 1, (1,), generator=generator))
            words = (torch.randint(0, self.n_words, (n,), generator=generator) + N_SPECIAL).tolist()
            if exclude is None or tuple(words) not in exclude:
                sentences.append(words)
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
