"""Generated passages and paraphrased questions (chapter 28, dense passage retrieval) and a knowledge base of generated facts (chapter 29, RAG).

A *world* has ``C`` concepts. Concept ``c`` can be written with ``k_c``
interchangeable words (its synonyms), with ``k_c`` drawn uniformly from
``1..max_synonyms``: a concept with one word behaves like a name, which every
question must copy; one with four words is usually paraphrased. Concepts
occur with Zipf frequencies (the ``r``-th most common has weight ``1 / r``),
so some words are common and carry little information, others rare.

A *passage* is ``passage_concepts`` distinct concepts drawn by frequency, each
written with a synonym drawn uniformly, plus ``fillers`` function words. A
*question* about a passage names ``question_concepts`` of the passage's
concepts, chosen uniformly, and writes each with a **fresh** uniform draw of
its synonym: it repeats the passage's word with probability ``1 / k_c`` and
paraphrases it otherwise. No draw looks at either retrieval method: the same
rules give word overlap (which BM25 uses) and paraphrase (which only a
trained encoder can bridge), in proportions set by ``max_synonyms``.

Token ids: ``0 .. fillers_vocab - 1`` are function words; concept words follow.

A *knowledge base* (:func:`make_facts`) has ``E`` entities, each named by a
first and a last name (drawn without repetition of the pair), and ``R``
relations; fact ``(e, r)`` has an answer of ``T`` value words drawn
uniformly. Its passage is ``first last relation value_1 .. value_T``; a
question about it is ``_who question-word(relation) first last``, with a
question word for each relation that no passage uses, so a retriever has to
learn which question word asks for which relation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from papers30 import _checks

_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "du", "ga", "zo", "he", "bi", "fa", "ju"]


@dataclass
class World:
    """Concepts and their words.

    ``synonyms[c]`` lists the token ids that write concept ``c``;
    ``frequency`` ``(C,)`` sums to one; ``words[t]`` is token ``t``'s spelling;
    ``concept_of[t]`` is the concept token ``t`` writes (``-1`` for function words).
    """

    synonyms: list[list[int]]
    frequency: torch.Tensor
    words: list[str]
    concept_of: list[int]
    fillers: int

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def vocab_size(self) -> int:
        return len(self.words)


@dataclass
class QASet:
    """Passages, questions about them, and which passage each question asks about.

    ``passages[i]`` and ``questions[j]`` are lists of token ids;
    ``gold[j]`` is the index of question ``j``'s passage.
    """

    passages: list[list[int]]
    questions: list[list[int]]
    gold: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)


def _spell(i: int) -> str:
    a, b = divmod(i, len(_SYLLABLES))
    c, a = divmod(a, len(_SYLLABLES))
    return _SYLLABLES[c % len(_SYLLABLES)] + _SYLLABLES[a] + _SYLLABLES[b] + ("" if c < len(_SYLLABLES) else str(c))


def make_world(concepts: int, max_synonyms: int, generator: torch.Generator, fillers: int = 20) -> World:
    """A world of ``concepts`` concepts with 1 to ``max_synonyms`` words each and ``fillers`` function words."""
    _checks.positive_int("concepts", concepts)
    _checks.positive_int("max_synonyms", max_synonyms)
    _checks.positive_int("fillers", fillers)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    counts = torch.randint(1, max_synonyms + 1, (concepts,), generator=generator).tolist()
    words = [f"_{_spell(i)}" for i in range(fillers)]
    concept_of = [-1] * fillers
    synonyms = []
    for c, k in enumerate(counts):
        synonyms.append(list(range(len(words), len(words) + k)))
        words.extend(_spell(7 * len(words) + 3) for _ in range(k))
        concept_of.extend([c] * k)
    rank = torch.randperm(concepts, generator=generator).double() + 1
    frequency = (1 / rank) / (1 / rank).sum()
    return World(synonyms, frequency, words, concept_of, fillers)


def _write(world: World, concepts: list[int], fillers: int, generator: torch.Generator) -> list[int]:
    tokens = [world.synonyms[c][int(torch.randint(len(world.synonyms[c]), (1,), generator=generator))]
              for c in concepts]
    tokens += torch.randint(world.fillers, (fillers,), generator=generator).tolist()
    order = torch.randperm(len(tokens), generator=generator).tolist()
    return [tokens[i] for i in order]


def make_qa(world: World, passages: int, questions: int, generator: torch.Generator, *,
            passage_concepts: int = 12, question_concepts: int = 4, fillers: int = 6) -> QASet:
    """``passages`` passages and ``questions`` questions, each about a distinct passage drawn uniformly.

    ``questions`` must not exceed ``passages``. See the module docstring for the rules.
    """
    if not isinstance(world, World):
        raise TypeError(f"world must be a World, got {type(world).__name__}")
    _checks.positive_int("passages", passages)
    _checks.positive_int("questions", questions)
    _checks.positive_int("passage_concepts", passage_concepts)
    _checks.positive_int("question_concepts", question_concepts)
    if isinstance(fillers, bool) or not isinstance(fillers, int) or fillers < 0:
        raise ValueError(f"fillers must be a non-negative int, got {fillers!r}")
    if questions > passages:
        raise ValueError(f"questions must be at most passages ({passages}), got {questions}")
    if question_concepts > passage_concepts:
        raise ValueError(f"question_concepts must be at most passage_concepts ({passage_concepts}), got {question_concepts}")
    if passage_concepts > len(world.synonyms):
        raise ValueError(f"passage_concepts must be at most the world's {len(world.synonyms)} concepts")
    topics = []
    texts = []
    for _ in range(passages):
        chosen = torch.multinomial(world.frequency, passage_concepts, replacement=False, generator=generator).tolist()
        topics.append(chosen)
        texts.append(_write(world, chosen, fillers, generator))
    gold = torch.randperm(passages, generator=generator)[:questions]
    asked = []
    for j in gold.tolist():
        pick = torch.randperm(passage_concepts, generator=generator)[:question_concepts].tolist()
        asked.append(_write(world, [topics[j][i] for i in pick], 2, generator))
    return QASet(texts, asked, gold)


def word_overlap(qa: QASet, world: World) -> float:
    """Fraction of the questions' concept words that also occur in their gold passage (function words left out)."""
    if not isinstance(qa, QASet):
        raise TypeError(f"qa must be a QASet, got {type(qa).__name__}")
    if not isinstance(world, World):
        raise TypeError(f"world must be a World, got {type(world).__name__}")
    hit = total = 0
    for q, j in zip(qa.questions, qa.gold.tolist()):
        words = set(qa.passages[j])
        for t in q:
            if world.concept_of[t] >= 0:
                total += 1
                hit += t in words
    return hit / max(total, 1)


@dataclass
class FactBase:
    """Facts ``(entity, relation) -> answer`` and their passages and questions.

    ``words[t]`` spells token ``t`` (``0`` padding, ``1`` begin-of-answer,
    ``2`` the question word ``_who``); ``names`` ``(E, 2)`` holds each entity's
    first- and last-name tokens; ``relation_words`` and ``question_words``
    ``(R,)`` the tokens that write a relation in a passage and in a question;
    ``value_words`` ``(M,)`` the answer vocabulary; ``answers`` ``(E, R, T)``
    each fact's answer as token ids. Fact ``f`` is ``(f // R, f % R)``.
    """

    words: list[str]
    names: torch.Tensor
    relation_words: torch.Tensor
    question_words: torch.Tensor
    value_words: torch.Tensor
    answers: torch.Tensor

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def facts(self) -> int:
        return self.answers.shape[0] * self.answers.shape[1]

    def passages(self, answers: torch.Tensor | None = None) -> torch.Tensor:
        """Passages ``(E * R, 3 + T)`` of every fact, in fact order; ``answers`` ``(E, R, T)`` replaces the facts' answers."""
        answers = self.answers if answers is None else _checks.tensor("answers", answers, ndim=3, kind="int")
        if answers.shape != self.answers.shape:
            raise ValueError(f"answers must have shape {tuple(self.answers.shape)}, got {tuple(answers.shape)}")
        e, r, _ = answers.shape
        names = self.names.unsqueeze(1).expand(e, r, 2)
        rel = self.relation_words.view(1, r, 1).expand(e, r, 1)
        return torch.cat([names, rel, answers], 2).reshape(e * r, -1)

    def questions(self, facts: torch.Tensor) -> torch.Tensor:
        """Questions ``(F, 4)`` about the facts ``facts`` ``(F,)``."""
        _checks.tensor("facts", facts, ndim=1, kind="int")
        e, r = self.answers.shape[:2]
        if facts.numel() and (facts.min() < 0 or facts.max() >= e * r):
            raise ValueError(f"facts must hold fact ids in [0, {e * r})")
        who = torch.full_like(facts, 2)
        return torch.stack([who, self.question_words[facts % r], self.names[facts // r, 0], self.names[facts // r, 1]], 1)

    def prompts(self) -> torch.Tensor:
        """Each passage's text before its answer, as a question-shaped input ``(E * R, 4)``: ``<pad> relation first last``.

        A closed-book generator trained on these (with the answers as
        targets) has read every fact of the knowledge base.
        """
        p = self.passages()
        return torch.stack([torch.zeros_like(p[:, 0]), p[:, 2], p[:, 0], p[:, 1]], 1)

    def answer_of(self, facts: torch.Tensor) -> torch.Tensor:
        """Answers ``(F, T)`` of the facts ``facts`` ``(F,)``."""
        _checks.tensor("facts", facts, ndim=1, kind="int")
        return self.answers.reshape(self.facts, -1)[facts]

    def changed(self, generator: torch.Generator) -> torch.Tensor:
        """New answers ``(E, R, T)``: every token of every answer replaced by a different value word, uniformly."""
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        m = self.value_words.shape[0]
        index = self.answers - self.value_words[0]
        shift = torch.randint(1, m, index.shape, generator=generator)
        return (index + shift) % m + self.value_words[0]


def make_facts(entities: int, relations: int, values: int, answer_length: int, generator: torch.Generator, *,
               first_names: int = 30, last_names: int = 30) -> FactBase:
    """A knowledge base of ``entities * relations`` facts with answers of ``answer_length`` of ``values`` value words.

    Entities are distinct (first, last) pairs drawn uniformly from
    ``first_names * last_names``; answers are uniform and independent.
    See the module docstring.
    """
    for name, v in (("entities", entities), ("relations", relations), ("values", values),
                    ("answer_length", answer_length), ("first_names", first_names), ("last_names", last_names)):
        _checks.positive_int(name, v)
    if values < 2:
        raise ValueError(f"values must be at least 2, got {values}")
    if entities > first_names * last_names:
        raise ValueError(f"entities must be at most first_names * last_names ({first_names * last_names}), got {entities}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    words = ["<pad>", "<bos>", "_who"]

    def block(prefix: str, n: int) -> torch.Tensor:
        start = len(words)
        words.extend(f"{prefix}{_spell(7 * (start + i) + 3)}" for i in range(n))
        return torch.arange(start, start + n)

    first, last = block("", first_names), block("", last_names)
    relation_words, question_words = block("r:", relations), block("q:", relations)
    value_words = block("v:", values)
    pairs = torch.randperm(first_names * last_names, generator=generator)[:entities]
    names = torch.stack([first[pairs // last_names], last[pairs % last_names]], 1)
    answers = value_words[torch.randint(values, (entities, relations, answer_length), generator=generator)]
    return FactBase(words, names, relation_words, question_words, value_words, answers)
