"""Generated speech-like utterances: spectrogram frames and their character transcripts, for chapter 21 (Deep Speech 2).

Each of ``C`` characters has a *spectral template*: a few formant-like
Gaussian bumps over ``F`` frequency bins (centre, width and height drawn once
per alphabet). An utterance is a random string of characters (no character
repeats its left neighbour, so every transcript is recoverable from the
clean signal; a repeat would be one long sound). Each character is held for
a random number of frames, stretched by the utterance's speaking rate.
Neighbouring sounds blend (*coarticulation*): the frame sequence is smoothed
along time with the kernel ``(1, 2, 1) / 4``. Each utterance has its own
*speaker*: every formant centre is shifted by the same random amount
(a vocal tract of different length) and the whole spectrogram by a gain.
Gaussian noise is added last. Utterances have different lengths, so ordering
them by length (SortaGrad) means something.

Nothing here looks at a model. Character ``c`` has id ``c`` in ``1..C``; id
``0`` is reserved for the CTC blank and for padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from papers30 import _checks


@dataclass
class Alphabet:
    """Spectral templates: character ``c`` (``1..C``) is ``sum_k height[c,k] exp(-(f - centre[c,k])^2 / (2 width[c,k]^2))``.

    ``centre``, ``width`` and ``height`` are ``(C + 1, K)``; row 0 (the blank) is unused and zero.
    """

    centre: torch.Tensor
    width: torch.Tensor
    height: torch.Tensor
    n_freq: int

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def n_chars(self) -> int:
        return self.centre.shape[0] - 1

    def spectra(self, shift: float = 0.0) -> torch.Tensor:
        """Templates ``(C + 1, F)`` with every formant centre moved by ``shift`` bins; row 0 is zero."""
        f = torch.arange(self.n_freq, dtype=torch.float32)
        bumps = self.height[..., None] * torch.exp(
            -(f - self.centre[..., None] - shift) ** 2 / (2 * self.width[..., None] ** 2))
        return bumps.sum(1)


def make_alphabet(n_chars: int, n_freq: int, generator: torch.Generator, formants: int = 3) -> Alphabet:
    """Draw ``n_chars`` templates of ``formants`` bumps each over ``n_freq`` bins.

    Centres uniform over the bins, widths uniform in ``[0.8, 2]`` bins,
    heights uniform in ``[0.5, 1]``.
    """
    _checks.positive_int("n_chars", n_chars)
    _checks.positive_int("n_freq", n_freq)
    _checks.positive_int("formants", formants)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    shape = (n_chars + 1, formants)
    centre = torch.rand(shape, generator=generator) * (n_freq - 1)
    width = 0.8 + 1.2 * torch.rand(shape, generator=generator)
    height = 0.5 + 0.5 * torch.rand(shape, generator=generator)
    height[0] = 0.0
    return Alphabet(centre, width, height, n_freq)


@dataclass
class Utterances:
    """A padded batch of ``N`` utterances.

    ``features`` ``(N, T, F)``: noisy frames, zero after each utterance's end;
    ``clean`` ``(N, T, F)``: the same before noise; ``lengths`` ``(N,)`` frames;
    ``labels`` ``(N, L)`` character ids ``1..C``, zero-padded; ``label_lengths``
    ``(N,)``; ``durations`` ``(N, L)`` frames per character (zero-padded);
    ``shift`` and ``gain`` ``(N,)``: the speaker of each utterance.
    """

    features: torch.Tensor
    clean: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    label_lengths: torch.Tensor
    durations: torch.Tensor
    shift: torch.Tensor
    gain: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    def __len__(self) -> int:
        return self.features.shape[0]

    def subset(self, index: torch.Tensor) -> "Utterances":
        """The utterances at ``index`` (a 1-D integer tensor), padding trimmed to the longest kept."""
        _checks.tensor("index", index, ndim=1, kind="int")
        t = int(self.lengths[index].max()) if len(index) else 0
        s = int(self.label_lengths[index].max()) if len(index) else 0
        return Utterances(self.features[index, :t], self.clean[index, :t], self.lengths[index],
                          self.labels[index, :s], self.label_lengths[index], self.durations[index, :s],
                          self.shift[index], self.gain[index])


def make_utterances(alphabet: Alphabet, n: int, generator: torch.Generator, *, min_chars: int = 2,
                    max_chars: int = 12, min_frames: int = 2, max_frames: int = 4, rate: float = 0.4,
                    speaker_shift: float = 1.5, noise: float = 0.3) -> Utterances:
    """Draw ``n`` utterances of ``min_chars..max_chars`` characters (uniform).

    Character ``i`` is held for ``max(2, round(u_i * r))`` frames with ``u_i``
    uniform in ``min_frames..max_frames`` and the utterance's rate ``r``
    uniform in ``[1 - rate, 1 + rate]``; the speaker shifts every formant by
    a uniform amount in ``[-speaker_shift, speaker_shift]`` bins and scales
    the spectrogram by a gain uniform in ``[0.7, 1.3]``; the frames are
    smoothed with ``(1, 2, 1) / 4`` along time (edge frames repeated) and
    get Gaussian noise of standard deviation ``noise``.
    """
    if not isinstance(alphabet, Alphabet):
        raise TypeError(f"alphabet must be an Alphabet, got {type(alphabet).__name__}")
    _checks.positive_int("n", n)
    _checks.positive_int("min_chars", min_chars)
    _checks.positive_int("max_chars", max_chars)
    _checks.positive_int("min_frames", min_frames)
    _checks.positive_int("max_frames", max_frames)
    if max_chars < min_chars:
        raise ValueError(f"max_chars must be at least min_chars ({min_chars}), got {max_chars}")
    if max_frames < min_frames:
        raise ValueError(f"max_frames must be at least min_frames ({min_frames}), got {max_frames}")
    _checks.probability("rate", rate)
    for name, value in (("speaker_shift", speaker_shift), ("noise", noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    if alphabet.n_chars < 2:
        raise ValueError(f"alphabet must have at least 2 characters, got {alphabet.n_chars}")
    c = alphabet.n_chars
    n_labels = torch.randint(min_chars, max_chars + 1, (n,), generator=generator)
    rates = 1 - rate + 2 * rate * torch.rand(n, generator=generator)
    shifts = speaker_shift * (2 * torch.rand(n, generator=generator) - 1)
    gains = 0.7 + 0.6 * torch.rand(n, generator=generator)
    labels = torch.zeros(n, max_chars, dtype=torch.long)
    durations = torch.zeros(n, max_chars, dtype=torch.long)
    clean_list = []
    for i in range(n):
        k = int(n_labels[i])
        first = torch.randint(1, c + 1, (1,), generator=generator)
        steps = torch.randint(1, c, (k - 1,), generator=generator)  # a nonzero step: never the same character
        seq = (torch.cat([first - 1, steps]).cumsum(0) % c) + 1
        base = torch.randint(min_frames, max_frames + 1, (k,), generator=generator).float()
        dur = torch.clamp(torch.round(base * rates[i]), min=2).long()
        labels[i, :k], durations[i, :k] = seq, dur
        frames = alphabet.spectra(float(shifts[i]))[seq.repeat_interleave(dur)] * gains[i]
        padded = torch.cat([frames[:1], frames, frames[-1:]])
        clean_list.append((padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4)
    lengths = torch.tensor([x.shape[0] for x in clean_list])
    clean = torch.zeros(n, int(lengths.max()), alphabet.n_freq)
    for i, x in enumerate(clean_list):
        clean[i, :x.shape[0]] = x
    mask = (torch.arange(clean.shape[1]) < lengths[:, None]).float()[..., None]
    features = (clean + noise * torch.randn(clean.shape, generator=generator)) * mask
    s = int(n_labels.max())
    return Utterances(features, clean, lengths, labels[:, :s], n_labels, durations[:, :s], shifts, gains)
