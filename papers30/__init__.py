"""papers30: the tested implementations behind the *papers30* executable textbook.

The package is organised by concept, not by chapter: a module serves every
chapter that needs it.

===================  ==========================================================
module               what it holds (chapters)
===================  ==========================================================
``runtime``          device choice, seeding, the ``PAPERS30_SCALE`` setting
``ledger``           the reproduction ledger: measured claims and their criteria
``papers``           the registry of the thirty papers (``data/papers.toml``)
``complexity``       compressed size, coarse-graining, a mixing cup, the coffee
                     automaton, normalized compression distance (1, 19, 23, 25)
``clustering``       agglomerative clustering of a distance matrix, adjusted
                     Rand index, shuffled-distance null (25)
``recurrent``        RNN, LSTM and GRU cells gate by gate, multi-layer runners
                     with dropout placement (2, 3, 4, 21)
``language``         recurrent language models, bits per token, exact n-gram
                     baselines, temperature sampling, unit probes (2, 4)
``regularization``   dropout in recurrent language models: training with early
                     stopping, overfitting gap, context use (4)
``mdl``              noisy-weight layers, KL weight costs and description length
                     in bits (5, 23)
``attention``        scaled dot-product, multi-head and additive attention (6,
                     8, 13, 14, 16, 18, 20, 22, 27, 30)
``pointer``          pointer decoder, pointer network and fixed-vocabulary
                     seq2seq baselines (6, 8)
``sets``             the Read-Process-Write process block, set2set (8, 12)
``convolution``      local response normalisation, a small AlexNet (7),
                     dilated convolutions and receptive fields (11)
``vision``           k-nearest neighbours, im2col conv2d and max_pool2d with
                     written-out backward passes, numerical gradient check (26)
``residual``         plain, residual and pre-activation blocks, CIFAR-style
                     ResNets, signal and gradient norms through depth (10, 15)
``distributed``      GPipe pipeline parallelism over processes (9)
``graphs``           message passing neural networks: edge network, GRU
                     update, set2set readout (12)
``seq2seq``          RNN encoder-decoder and RNNsearch with additive attention
                     (13, 14)
``translation``      training and scoring the translation models on the toy
                     task, each with its paper's recipe (13, 14)
``relational``       relation networks over object pairs (16)
``generative``       VAE pieces in bits, masked convolutions, a VAE with an
                     autoregressive decoder of set receptive field (17)
``memory``           the relational memory core (18)
``ntm``              Neural Turing Machine addressing, heads and cell (20)
``transformer``      sinusoidal positions, encoder-decoder Transformer, a
                     decoder-only language model, label smoothing, warm-up
                     schedule, greedy decoding (13, 22, 27, 30)
``multitoken``       multi-token prediction heads on a shared trunk, their
                     loss, self-speculative decoding, an induction task (27)
``data``             committed text and images (``data.text``, ``data.images``),
                     geometry (``data.geometry``), molecules (``data.graphs``),
                     Sort-of-CLEVR (``data.sort_of_clevr``), Markov-chain
                     sequence families (``data.sequences``), passages with
                     paraphrased questions and a knowledge base of facts
                     (``data.qa``), speech-like utterances
                     (``data.speech``) and seeded
                     synthetic tasks (``data.synthetic``)
``agents``           tabular environments with a computed complexity, random,
                     greedy, Q-learning and Bayes-mixture agents, 2^-K
                     weighted universal intelligence (24)
``scaling``          non-embedding parameter counts, power-law fits with an
                     irreducible term and error bars, one language model's
                     training run (22)
``retrieval``        BM25, a dual encoder trained with in-batch negatives,
                     top-k retrieval accuracy (28); RAG-Sequence and
                     RAG-Token marginals and decoding, a passage reader (29)
``speech``           CTC loss (log-space forward recursion), greedy and
                     prefix-beam decoding, edit distance and character error
                     rate, sequence-wise batch-normalised recurrent layers, a
                     small Deep Speech 2 acoustic model, SortaGrad (21)
``context``          long-context evaluation: synthetic key-value retrieval,
                     accuracy by position with Wilson intervals, U-margin,
                     attention on the relevant item (30)
``metrics``          BLEU, exact match, alignment accuracy, critical path (13,
                     14)
``training``         a small, explicit training loop
``plotting``         the book's figure style and plot helpers
===================  ==========================================================

Shape glossary used in every docstring: ``B`` batch, ``T`` target (query)
length, ``S`` source (key) length, ``D`` model width, ``H`` heads, ``E`` head
width (``D / H``), ``V`` vocabulary size.
"""

from papers30.runtime import (actual_seed, configure_threads, generator, get_device, pick, scale, seed_everything,
                              seeds)

__version__ = "0.1.0"

__all__ = ["actual_seed", "configure_threads", "generator", "get_device", "pick", "scale", "seed_everything", "seeds",
           "__version__"]
