"""Data for the book's experiments: seeded synthetic tasks and small committed sets.

Nothing here downloads. Synthetic tasks take an explicit ``torch.Generator``
so every chapter run draws the same examples.
"""

from papers30.data.synthetic import PAD, BOS, EOS, ToyTranslation, pad_batch

__all__ = ["PAD", "BOS", "EOS", "ToyTranslation", "pad_batch"]
