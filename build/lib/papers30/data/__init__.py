"""Data for the book's experiments: seeded synthetic tasks and small committed sets.

Nothing here downloads. Synthetic tasks take an explicit ``torch.Generator``
(or a seed) so every chapter run draws the same examples.
"""

from papers30.data.synthetic import (
    BOS,
    EOS,
    PAD,
    ToyTranslation,
    TranslationData,
    pad_batch,
    toy_translation_data,
)

__all__ = ["PAD", "BOS", "EOS", "ToyTranslation", "TranslationData", "pad_batch", "toy_translation_data"]
