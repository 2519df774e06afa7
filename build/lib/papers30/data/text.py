"""Committed text, token vocabularies and truncated-BPTT batches for language models.

Chapter 2 (Karpathy, *The Unreasonable Effectiveness of Recurrent Neural
Networks*) trains character-level models on :func:`load_text`; chapter 4
(Zaremba et al., *Recurrent Neural Network Regularization*) reuses the same
pieces, possibly at the word level.

* :func:`load_text` is the one loader for the committed texts
  (``papers30/data/assets``; see ``SOURCES.md`` there);
* :func:`tokenize` cuts a text into characters or words, and :class:`Vocab`
  maps tokens to ids and back, in a deterministic (sorted) order;
* :func:`split_stream` cuts one long id stream into contiguous train,
  validation and test parts, and :func:`char_corpus` does all of it for
  the characters of a committed text;
* :func:`batchify` and :class:`BPTTBatches` lay a stream out as ``B``
  parallel rows and walk along them ``T`` steps at a time, Zaremba-style:
  batch ``i + 1`` continues every row where batch ``i`` stopped, so a model
  may carry its hidden state from one batch to the next.

Shapes: ``N`` stream length, ``B`` batch rows, ``T`` time steps per batch.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources

import torch

from papers30 import _checks

TEXTS = {"shakespeare": "shakespeare.txt.gz"}
LEVELS = ("char", "word")
EOS_WORD = "<eos>"
WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[^\sA-Za-z]")


def load_text(name: str) -> str:
    """The committed text ``name`` as one string (see :data:`TEXTS` for the names).

    ``"shakespeare"``: six tragedies (Hamlet, Macbeth, King Lear, Othello,
    Romeo and Juliet, Julius Caesar), about 840,000 ASCII characters.
    """
    _checks.one_of("name", name, sorted(TEXTS))
    data = resources.files("papers30.data").joinpath("assets", TEXTS[name]).read_bytes()
    return gzip.decompress(data).decode("ascii")


def tokenize(text: str, level: str = "char") -> list[str]:
    """Cut ``text`` into tokens: characters (``"char"``) or words (``"word"``).

    At the word level a token is a word (letters, with inner apostrophes as
    in ``"o'er"``) or any other single non-space character (punctuation
    marks, digits), so that ``"lord,"`` and ``"lord."`` are both ``"lord"``
    followed by a mark; each non-blank line ends with the token ``"<eos>"``
    (as in the Penn Treebank files of chapter 4); blank lines give nothing.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    _checks.one_of("level", level, LEVELS)
    if level == "char":
        return list(text)
    return [w for line in text.splitlines() if line.strip() for w in [*WORD.findall(line), EOS_WORD]]


class Vocab:
    """A token <-> id map: ids ``0..V-1`` follow the sorted order of the distinct tokens.

    Works for characters and words alike. ``unk`` (optional) is a token that
    stands for every token not in the vocabulary when encoding; without it,
    an unknown token is an error.
    """

    def __init__(self, tokens: Iterable[str], unk: str | None = None) -> None:
        items = set(tokens)
        if unk is not None:
            if not isinstance(unk, str):
                raise TypeError(f"unk must be a str or None, got {type(unk).__name__}")
            items.add(unk)
        if not items:
            raise ValueError("tokens must hold at least one token")
        bad = next((t for t in items if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"tokens must be strings, got {type(bad).__name__}")
        self.itos: list[str] = sorted(items)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        self.unk = unk

    @classmethod
    def build(cls, tokens: Iterable[str], unk: str | None = None) -> "Vocab":
        """The vocabulary of a token sequence (a string counts as its characters)."""
        return cls(list(tokens), unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def encode(self, tokens: Iterable[str]) -> torch.Tensor:
        """Ids ``(N,)`` (int64) of a token sequence (a string counts as its characters)."""
        if isinstance(tokens, torch.Tensor) or not isinstance(tokens, Iterable):
            raise TypeError(f"tokens must be a str or a sequence of str, got {type(tokens).__name__}")
        fallback = self.stoi.get(self.unk) if self.unk is not None else None
        ids = []
        for t in tokens:
            i = self.stoi.get(t, fallback)
            if i is None:
                raise ValueError(f"tokens holds {t!r}, which is not in the vocabulary (and unk is None)")
            ids.append(i)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """The tokens of ids ``(N,)``."""
        if isinstance(ids, torch.Tensor):
            _checks.tensor("ids", ids, ndim=1, kind="int")
            ids = ids.tolist()
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self):
                raise ValueError(f"ids holds {i!r}, not an id in 0..{len(self) - 1}")
            out.append(self.itos[i])
        return out

    def to_text(self, ids: torch.Tensor | Sequence[int], sep: str = "") -> str:
        """Decoded ids joined into one string (``sep=""`` for characters, ``" "`` for words)."""
        return sep.join(self.decode(ids))


def split_stream(
    ids: torch.Tensor, valid: float = 0.05, test: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous train / validation / test parts of a stream ``ids (N,)``.

    The last ``round(test * N)`` ids are the test part, the ``round(valid * N)``
    before them the validation part, the rest (from the start) the training
    part, so no text is shared and the held-out parts read as continuous text.
    """
    _checks.tensor("ids", ids, ndim=1)
    _checks.probability("valid", valid)
    _checks.probability("test", test)
    n = ids.shape[0]
    n_test, n_valid = round(test * n), round(valid * n)
    if n - n_test - n_valid < 1:
        raise ValueError(f"valid + test must leave training data, got valid={valid}, test={test}")
    a, b = n - n_valid - n_test, n - n_test
    return ids[:a], ids[a:b], ids[b:]


@dataclass(frozen=True)
class Corpus:
    """A text cut into tokens with its vocabulary and contiguous train / validation / test id streams."""

    vocab: Vocab
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


def char_corpus(name: str = "shakespeare", valid: float = 0.05, test: float = 0.05) -> Corpus:
    """The committed text ``name`` as characters: the vocabulary of all its characters, and the splits.

    The splits are :func:`split_stream` ``(ids, valid, test)``: the last
    ``test`` share of the text is the test part, the ``valid`` share before it
    the validation part.
    """
    text = load_text(name)
    vocab = Vocab.build(text)
    return Corpus(vocab, *split_stream(vocab.encode(text), valid=valid, test=test))


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Lay ``ids (N,)`` out as ``(B, N // B)``: row ``b`` is the ``b``-th contiguous chunk.

    The last ``N % B`` ids are dropped. Reading row ``b`` left to right reads
    the stream from position ``b * (N // B)`` on.
    """
    _checks.tensor("ids", ids, ndim=1, kind="int")
    _checks.positive_int("batch_size", batch_size)
    width = ids.shape[0] // batch_size
    if width < 2:
        raise ValueError(f"batch_size {batch_size} leaves fewer than 2 ids per row of {ids.shape[0]} ids")
    return ids[: width * batch_size].reshape(batch_size, width)


class BPTTBatches(Sequence):
    """Truncated-BPTT batches of a stream: ``(inputs, targets)``, each ``(B, T)``.

    The stream is first laid out by :func:`batchify` as ``data (B, W)``.
    Batch ``i`` holds columns ``i*T .. i*T + T - 1`` as inputs and the same
    columns shifted by one as targets (the next token); the last batch may be
    shorter than ``T``. Consecutive batches continue each row, so the final
    hidden state of batch ``i`` is the right initial state for batch ``i + 1``.
    Indexing wraps nothing: ``len(batches)`` is the number of batches in one
    pass (an epoch).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int) -> None:
        _checks.positive_int("seq_len", seq_len)
        self.data = batchify(ids, batch_size)
        self.batch_size, self.seq_len = batch_size, seq_len
        self._n = -(-(self.data.shape[1] - 1) // seq_len)  # ceil((W - 1) / T)

    def __len__(self) -> int:
        return self._n

    @property
    def tokens(self) -> int:
        """How many targets one pass predicts: ``B * (W - 1)``."""
        return self.batch_size * (self.data.shape[1] - 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"i must be an int, got {type(i).__name__}")
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"i must be in 0..{self._n - 1}, got {i}")
        start = i * self.seq_len
        stop = min(start + self.seq_len, self.data.shape[1] - 1)
        return self.data[:, start:stop], self.data[:, start + 1 : stop + 1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self._n):
            yield self[i]

    def to(self, device: torch.device | str) -> "BPTTBatches":
        """Move the laid-out stream to ``device`` (returns ``self``)."""
        self.data = self.data.to(device)
        return self
