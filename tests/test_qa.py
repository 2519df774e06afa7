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


# ---------------------------------------------------------------- knowledge base of facts (chapter 29)

from papers30.data.qa import FactBase, make_facts  # noqa: E402


def _kb(seed=0):
    return make_facts(50, 4, 12, 3, torch.Generator().manual_seed(seed), first_names=10, last_names=8)


def test_fact_labels_read_back_from_the_spelled_passages():
    kb = _kb()
    assert isinstance(kb, FactBase) and kb.facts == 200
    passages = kb.passages()
    for f in range(kb.facts):
        words = [kb.words[t] for t in passages[f].tolist()]
        e, r = divmod(f, 4)
        assert words[2] == kb.words[int(kb.relation_words[r])] and words[2].startswith("r:")
        assert all(w.startswith("v:") for w in words[3:])
        assert words[3:] == [kb.words[t] for t in kb.answers[e, r].tolist()]
        assert words[:2] == [kb.words[t] for t in kb.names[e].tolist()]


def test_questions_name_the_entity_and_ask_the_relation_with_a_question_word():
    kb = _kb(1)
    facts = torch.arange(kb.facts)
    q = kb.questions(facts)
    for f in range(kb.facts):
        e, r = divmod(f, 4)
        assert q[f, 0] == 2 and kb.words[2] == "_who"
        assert kb.words[int(q[f, 1])].startswith("q:")
        assert int(q[f, 1]) == int(kb.question_words[r]) and int(q[f, 1]) not in kb.passages().flatten().tolist()
        assert q[f, 2:].tolist() == kb.names[e].tolist()
    assert torch.equal(kb.answer_of(facts), kb.answers.reshape(200, 3))
    assert torch.equal(kb.prompts()[:, 1:], torch.stack([kb.passages()[:, 2], kb.passages()[:, 0], kb.passages()[:, 1]], 1))


def test_entities_are_distinct_and_answers_uniform():
    kb = make_facts(80, 1, 10, 1, torch.Generator().manual_seed(2), first_names=10, last_names=8)
    assert len({tuple(n) for n in kb.names.tolist()}) == 80
    big = make_facts(500, 20, 10, 2, torch.Generator().manual_seed(3))
    counts = torch.bincount(big.answers.flatten() - big.value_words[0], minlength=10).double()
    assert (counts / counts.sum() - 0.1).abs().max() < 0.01


def test_changed_answers_differ_in_every_token():
    kb = _kb(4)
    new = kb.changed(torch.Generator().manual_seed(5))
    assert (new != kb.answers).all()
    assert ((new >= kb.value_words[0]) & (new <= kb.value_words[-1])).all()
    assert torch.equal(kb.passages(new)[:, :3], kb.passages()[:, :3])


def test_make_facts_bad_inputs():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="entities"):
        make_facts(100, 2, 5, 1, g, first_names=5, last_names=5)
    with pytest.raises(ValueError, match="values"):
        make_facts(10, 2, 1, 1, g)
    with pytest.raises(TypeError, match="generator"):
        make_facts(10, 2, 5, 1, None)
    with pytest.raises(ValueError, match="facts"):
        _kb().questions(torch.tensor([200]))
