"""Generated passages and paraphrased questions (papers30.data.qa), against independent counts."""

from __future__ import annotations

import pytest
import torch

from papers30.data.qa import QASet, make_qa, make_world, word_overlap


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_world_words_are_distinct_and_synonym_counts_in_range():
    w = make_world(200, 4, gen())
    assert len(set(w.words)) == w.vocab_size
    assert all(1 <= len(s) <= 4 for s in w.synonyms)
    assert {len(s) for s in w.synonyms} == {1, 2, 3, 4}
    assert abs(w.frequency.sum().item() - 1) < 1e-12
    assert sorted(w.frequency.tolist(), reverse=True)[0] / sorted(w.frequency.tolist(), reverse=True)[9] == \
        pytest.approx(10.0)
    for c, s in enumerate(w.synonyms):
        assert all(w.concept_of[t] == c for t in s)


def test_every_question_asks_about_concepts_of_its_gold_passage():
    w = make_world(50, 3, gen(1))
    qa = make_qa(w, 40, 30, gen(2), passage_concepts=8, question_concepts=3, fillers=4)
    assert len(set(qa.gold.tolist())) == 30
    for q, j in zip(qa.questions, qa.gold.tolist()):
        passage_concepts = {w.concept_of[t] for t in qa.passages[j] if w.concept_of[t] >= 0}
        asked = [w.concept_of[t] for t in q if w.concept_of[t] >= 0]
        assert len(asked) == 3 and len(set(asked)) == 3 and set(asked) <= passage_concepts
        assert len(q) == 5 and len(qa.passages[j]) == 12


def test_word_overlap_matches_the_synonym_counts():
    # each asked concept repeats the passage's word with probability 1 / k_c
    w = make_world(100, 4, gen(3))
    qa = make_qa(w, 3000, 3000, gen(4))
    expected, total = 0.0, 0
    for q in qa.questions:
        for t in q:
            c = w.concept_of[t]
            if c >= 0:
                expected += 1 / len(w.synonyms[c])
                total += 1
    assert abs(word_overlap(qa, w) - expected / total) < 0.01
    copied = make_qa(make_world(100, 1, gen(5)), 200, 100, gen(6))
    assert word_overlap(copied, make_world(100, 1, gen(5))) == 1.0


def test_bad_inputs_raise_naming_the_argument():
    w = make_world(20, 2, gen())
    with pytest.raises(ValueError, match="questions"):
        make_qa(w, 5, 6, gen())
    with pytest.raises(ValueError, match="question_concepts"):
        make_qa(w, 5, 5, gen(), passage_concepts=3, question_concepts=4)
    with pytest.raises(ValueError, match="passage_concepts"):
        make_qa(w, 5, 5, gen(), passage_concepts=30)
    with pytest.raises(TypeError, match="world"):
        make_qa("w", 5, 5, gen())
    with pytest.raises(TypeError, match="generator"):
        make_world(5, 2, 0)
    with pytest.raises(ValueError, match="concepts"):
        make_world(0, 2, gen())
    with pytest.raises(TypeError, match="qa"):
        word_overlap("qa", w)
    with pytest.raises(TypeError, match="world"):
        word_overlap(make_qa(w, 5, 5, gen()), "w")
    with pytest.raises(TypeError, match="gold"):
        QASet([[1]], [[1]], "0")
