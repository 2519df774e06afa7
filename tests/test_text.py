"""papers30.data.text: the committed text, vocabularies and BPTT batches against brute-force slicing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from papers30.data.text import (TEXTS, BPTTBatches, Vocab, batchify, char_corpus, load_text, split_stream,
                                tokenize)


def test_load_text_shakespeare_is_clean_ascii_plays():
    text = load_text("shakespeare")
    assert 500_000 < len(text) <= 1_000_000
    assert text.isascii()
    assert "gutenberg" not in text.lower()  # the boilerplate was stripped
    assert text.count("[") > 500 and "HAMLET" in text and "JULIUS CAESAR" in text.upper()


def test_load_text_unknown_name_lists_names():
    with pytest.raises(ValueError, match="name") as err:
        load_text("milton")
    assert all(n in str(err.value) for n in TEXTS)
    with pytest.raises(TypeError, match="name"):
        load_text(3)


def test_tokenize_chars_and_words_by_hand():
    assert tokenize("ab\nc") == ["a", "b", "\n", "c"]
    assert tokenize("to be\n\nor not\n", "word") == ["to", "be", "<eos>", "or", "not", "<eos>"]
    assert tokenize("Nay, o'er th' hill!\n", "word") == ["Nay", ",", "o'er", "th", "'", "hill", "!", "<eos>"]
    with pytest.raises(ValueError, match="level"):
        tokenize("x", "byte")
    with pytest.raises(TypeError, match="text"):
        tokenize(["x"])


@pytest.mark.parametrize("tokens", [list("hello world"), ["the", "cat", "the", "<eos>"], ["a"]])
def test_vocab_roundtrip_and_sorted_order(tokens):
    vocab = Vocab.build(tokens)
    assert vocab.itos == sorted(set(tokens))  # brute force: the sorted distinct tokens
    ids = vocab.encode(tokens)
    assert ids.dtype == torch.long and ids.shape == (len(tokens),)
    assert [vocab.itos[i] for i in ids.tolist()] == tokens
    assert vocab.decode(ids) == tokens
    assert Vocab.build(reversed(tokens)).itos == vocab.itos  # order of appearance does not matter


def test_vocab_string_is_characters_and_to_text():
    vocab = Vocab.build("abca")
    assert len(vocab) == 3 and "a" in vocab and "d" not in vocab
    assert vocab.to_text(vocab.encode("cab")) == "cab"
    words = Vocab.build(["to", "be"])
    assert words.to_text([1, 0], sep=" ") == "to be"


def test_vocab_unknown_tokens():
    vocab = Vocab.build(["a", "b"], unk="<unk>")
    assert vocab.decode(vocab.encode(["a", "z"])) == ["a", "<unk>"]
    with pytest.raises(ValueError, match="tokens"):
        Vocab.build("ab").encode("abz")


def test_vocab_bad_inputs():
    with pytest.raises(ValueError, match="tokens"):
        Vocab.build([])
    with pytest.raises(TypeError, match="tokens"):
        Vocab.build([1, 2])
    vocab = Vocab.build("ab")
    with pytest.raises(ValueError, match="ids"):
        vocab.decode([2])
    with pytest.raises(TypeError, match="ids"):
        vocab.decode(torch.tensor([0.0]))
    with pytest.raises(TypeError, match="tokens"):
        vocab.encode(torch.tensor([0]))


@pytest.mark.parametrize("n,valid,test", [(100, 0.1, 0.1), (10, 0.0, 0.2), (7, 0.3, 0.0)])
def test_split_stream_is_contiguous_and_complete(n, valid, test):
    ids = torch.arange(n)
    a, b, c = split_stream(ids, valid, test)
    assert torch.equal(torch.cat([a, b, c]), ids)  # contiguous, in order, nothing lost
    assert len(b) == round(valid * n) and len(c) == round(test * n)


def test_split_stream_bad_inputs():
    with pytest.raises(ValueError, match="valid"):
        split_stream(torch.arange(10), 1.5)
    with pytest.raises(ValueError, match="training"):
        split_stream(torch.arange(2), 0.5, 0.5)
    with pytest.raises(ValueError, match="ids"):
        split_stream(torch.zeros(2, 2))


@pytest.mark.parametrize("n,B", [(10, 1), (10, 3), (12, 4), (100, 7)])
def test_batchify_matches_brute_force(n, B):
    ids = torch.arange(n)
    data = batchify(ids, B)
    w = n // B
    assert data.shape == (B, w)
    for b in range(B):  # row b is the b-th contiguous chunk of the stream
        assert data[b].tolist() == list(range(b * w, (b + 1) * w))


@given(n=st.integers(4, 200), B=st.integers(1, 5), T=st.integers(1, 12))
def test_bptt_batches_match_brute_force_slicing(n, B, T):
    if n // B < 2:
        return
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    batches = BPTTBatches(ids, B, T)
    w = n // B
    rows = [ids[b * w : (b + 1) * w].tolist() for b in range(B)]
    pairs = list(batches)
    assert len(pairs) == len(batches) == -(-(w - 1) // T)
    xs = [[] for _ in range(B)]
    ys = [[] for _ in range(B)]
    for x, y in pairs:
        assert x.shape == y.shape and x.shape[0] == B and 1 <= x.shape[1] <= T
        for b in range(B):
            xs[b] += x[b].tolist()
            ys[b] += y[b].tolist()
    for b in range(B):  # consecutive batches continue each row; targets are the next token
        assert xs[b] == rows[b][:-1] and ys[b] == rows[b][1:]
    assert batches.tokens == B * (w - 1)


def test_bptt_batches_indexing_and_bad_inputs():
    batches = BPTTBatches(torch.arange(21), 2, 4)  # rows of 10: batches of 4, 4, 1
    assert len(batches) == 3
    assert batches[-1][0].tolist() == [[8], [18]] and batches[-1][1].tolist() == [[9], [19]]
    with pytest.raises(IndexError, match="i"):
        batches[3]
    with pytest.raises(TypeError, match="i"):
        batches[0.5]
    with pytest.raises(ValueError, match="seq_len"):
        BPTTBatches(torch.arange(21), 2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        BPTTBatches(torch.arange(3), 2, 1)
    with pytest.raises(TypeError, match="ids"):
        BPTTBatches(torch.zeros(10), 2, 2)


def test_char_corpus_is_the_split_character_stream():
    text = load_text("shakespeare")
    corpus = char_corpus("shakespeare", valid=0.1, test=0.05)
    assert corpus.vocab.itos == sorted(set(text))
    joined = torch.cat([corpus.train, corpus.valid, corpus.test])
    assert corpus.vocab.to_text(joined) == text
    assert len(corpus.test) == round(0.05 * len(text)) and len(corpus.valid) == round(0.1 * len(text))
