"""The embedded default QA dataset: synthetic encyclopedia paragraphs generated from a seed.

Nothing here is copied from a corpus. Each "article" describes one invented entity — a person
(scientist/inventor), a city or a river — whose name, places, years and numbers are drawn from
syllable and word lists. A paragraph is a sequence of fact sentences, each written in one of a few
phrasings; the questions ask for one fact each, in their own phrasing, and the answer is the span
where that fact was written (``answer_start`` is recorded while the paragraph is assembled).

Paragraphs are short (3-4 sentences, at most ~80 tokens with the question, so one 96-token
window holds them) and mix several answer types — years, places, people, numbers, things — with
a few same-type distractors (birth and death year; country and river; three "what" facts), so
the question has to be read. A pretrained encoder learns it in a few dozen steps while an
untrained QA head scores near zero. One sentence of each article is left out; with
``unanswerable_fraction > 0`` some questions ask for a left-out fact and have no answer
(SQuAD 2.0 style). Train and validation are disjoint sets of articles (entities).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import datasets

from hf_autolr.qa.data import dataset_from_records

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s", "st",
           "t", "tr", "v", "z", "th", "sh", "c", "w", "j"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou", "ia"]
_CODAS = ["", "", "n", "r", "l", "s", "m", "k", "nd", "rk", "lt", "st", "v"]

_PROFESSIONS = ["engineer", "astronomer", "chemist", "architect", "botanist", "mathematician",
                "cartographer", "physician", "geologist", "clockmaker"]
_PURPOSES = ["measuring wind speed", "sorting grain", "printing maps", "cooling water", "weaving silk",
             "counting coins", "pumping water", "grinding lenses", "tracking stars", "drying timber"]
_DEVICE_SUFFIXES = ["graph", "scope", "meter", " loom", " press", " pump", " engine", " lamp"]
_INDUSTRIES = ["shipbuilding", "glass making", "textile mills", "salt mines", "wine production",
               "copper mining", "fishing", "paper mills", "clock making", "olive oil"]
_MOUNTAIN_FORMS = ["{} Mountains", "{} Hills", "{} Highlands"]
_SEA_FORMS = ["{} Sea", "Gulf of {}", "Bay of {}"]
_LANDMARK_FORMS = ["{} Cathedral", "{} Tower", "Old {} Bridge", "{} Palace", "{} Lighthouse"]
_CITY_SUFFIXES = ["holm", "ford", "ava", "burg", "mouth", "ia", "stad", "wick", "ton", "era"]

# A fact sentence: the facts it states and its phrasings. Each question of a fact only mentions
# the entity and facts of the same sentence, so leaving a sentence out never leaks an answer.
# The first sentence is always kept; one of the others is left out of each paragraph.
_PERSON = [
    (("profession", "birth_city", "birth_year"), [
        "{name} was a {profession} born in {birth_city} in {birth_year}.",
        "Born in {birth_city} in {birth_year}, {name} became a famous {profession}.",
    ]),
    (("teacher",), [
        "{Pron} studied under {teacher}.",
        "{Poss} teacher was {teacher}.",
    ]),
    (("device", "purpose"), [
        "{Pron} built the {device}, a machine for {purpose}.",
        "{Poss} best-known work, the {device}, was used for {purpose}.",
    ]),
    (("papers",), [
        "{Pron} published {papers} papers.",
        "{short} wrote {papers} papers in total.",
    ]),
    (("death_year",), [
        "{Pron} died in {death_year}.",
        "{short} died in {death_year}.",
    ]),
]
_PERSON_QUESTIONS = {
    "profession": ["What was {name}'s profession?", "What did {name} work as?"],
    "birth_year": ["When was {name} born?", "In which year was {name} born?"],
    "birth_city": ["Where was {name} born?", "In which town was {name} born?"],
    "teacher": ["Who taught {name}?", "Under whom did {name} study?"],
    "device": ["What machine did {name} build?", "What is {name}'s best-known invention?"],
    "purpose": ["What was the {device} used for?", "What was the purpose of the {device}?"],
    "papers": ["How many papers did {name} publish?", "How many papers did {name} write?"],
    "death_year": ["When did {name} die?", "In what year did {name} die?"],
}

_CITY = [
    (("country", "river"), [
        "{name} is a city in {country} on the {river}.",
        "{name}, a town on the {river}, lies in {country}.",
    ]),
    (("founded", "founder"), [
        "It was founded in {founded} by {founder}.",
        "{founder} founded the city in {founded}.",
    ]),
    (("population",), [
        "It has {population} inhabitants.",
        "About {population} people live there.",
    ]),
    (("industry",), [
        "The city is known for {industry}.",
        "Its economy depends on {industry}.",
    ]),
    (("landmark",), [
        "Its most famous building is the {landmark}.",
        "Visitors come to see the {landmark}.",
    ]),
]
_CITY_QUESTIONS = {
    "country": ["In which country is {name}?", "What country is {name} part of?"],
    "river": ["Which river flows through {name}?", "On what river does {name} lie?"],
    "founded": ["When was {name} founded?", "In what year was {name} founded?"],
    "founder": ["Who founded {name}?", "Who was the founder of {name}?"],
    "population": ["What is the population of {name}?", "How many people live in {name}?"],
    "industry": ["What is {name} known for?", "What does the economy of {name} depend on?"],
    "landmark": ["What is the most famous building in {name}?", "What do visitors to {name} come to see?"],
}

_RIVER = [
    (("length", "country"), [
        "The {name} is a river in {country}, {length} long.",
        "The {name}, {length} long, is a river of {country}.",
    ]),
    (("mountains", "sea"), [
        "It rises in the {mountains} and flows into the {sea}.",
        "From the {mountains} it runs down to the {sea}.",
    ]),
    (("tributary",), [
        "Its largest tributary is the {tributary}.",
        "The {tributary} is the largest river that joins it.",
    ]),
    (("bridge_year",), [
        "The first bridge across it was built in {bridge_year}.",
        "It was first bridged in {bridge_year}.",
    ]),
    (("fish",), [
        "About {fish} species of fish live in it.",
        "Biologists have counted {fish} species of fish in the river.",
    ]),
]
_RIVER_QUESTIONS = {
    "length": ["How long is the {name}?", "What is the length of the {name}?"],
    "country": ["In which country does the {name} flow?", "Which country is the {name} in?"],
    "mountains": ["Where does the {name} rise?", "In which mountains is the source of the {name}?"],
    "sea": ["Into which sea does the {name} flow?", "Where does the {name} end?"],
    "tributary": ["What is the largest tributary of the {name}?", "Which river joins the {name}?"],
    "bridge_year": ["When was the first bridge across the {name} built?", "In what year was the {name} first bridged?"],
    "fish": ["How many species of fish live in the {name}?", "How many fish species are found in the {name}?"],
}

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass
class _Article:
    title: str
    values: dict[str, str]
    sentences: list[tuple[tuple[str, ...], list[str]]]
    questions: dict[str, list[str]]


class _Names:
    """Invented, pronounceable names; never the same one twice within a generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: int | None = None, suffix: str = "") -> str:
        rng = self.rng
        while True:
            n = syllables or rng.choice([2, 2, 3])
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS) + suffix
            w = w.capitalize()
            if w not in self.used and 4 <= len(w) <= 12:
                self.used.add(w)
                return w

    def person(self) -> tuple[str, str]:
        first, last = self.word(2), self.word()
        return f"{first} {last}", last

    def city(self) -> str:
        return self.word(2, self.rng.choice(_CITY_SUFFIXES))


def _number(rng: random.Random, low: int, high: int) -> str:
    return f"{rng.randint(low, high):,}"


def _person(rng: random.Random, names: _Names) -> _Article:
    name, short = names.person()
    birth = rng.randint(1610, 1890)
    he = rng.random() < 0.5
    values = {
        "name": name, "short": short,
        "Pron": "He" if he else "She", "pron": "he" if he else "she",
        "Poss": "His" if he else "Her", "poss": "his" if he else "her",
        "profession": rng.choice(_PROFESSIONS), "birth_year": str(birth), "birth_city": names.city(),
        "teacher": names.person()[0],
        "device": names.word(2, rng.choice(_DEVICE_SUFFIXES)).lower(), "purpose": rng.choice(_PURPOSES),
        "papers": str(rng.randint(4, 180)), "death_year": str(birth + rng.randint(30, 85)),
    }
    return _Article(name, values, _PERSON, _PERSON_QUESTIONS)


def _city(rng: random.Random, names: _Names) -> _Article:
    name = names.city()
    values = {
        "name": name, "country": names.word(), "river": f"{names.word()} River",
        "founded": str(rng.randint(900, 1900)), "founder": names.person()[0],
        "population": _number(rng, 2_000, 900_000), "industry": rng.choice(_INDUSTRIES),
        "landmark": rng.choice(_LANDMARK_FORMS).format(names.word()),
    }
    return _Article(name, values, _CITY, _CITY_QUESTIONS)


def _river(rng: random.Random, names: _Names) -> _Article:
    name = names.word()
    values = {
        "name": name, "length": f"{rng.randint(40, 2400)} kilometres", "country": names.word(),
        "mountains": rng.choice(_MOUNTAIN_FORMS).format(names.word()),
        "sea": rng.choice(_SEA_FORMS).format(names.word()),
        "tributary": names.word(), "bridge_year": str(rng.randint(1100, 1900)), "fish": str(rng.randint(12, 140)),
    }
    return _Article(f"{name} (river)", values, _RIVER, _RIVER_QUESTIONS)


def _render(template: str, values: dict[str, str], offset: int, spans: dict[str, tuple[int, str]]) -> str:
    """Fill ``template``; record where each fact value lands (first occurrence) in ``spans``."""
    out: list[str] = []
    position = offset
    last = 0
    for match in _SLOT.finditer(template):
        literal = template[last:match.start()]
        out.append(literal)
        position += len(literal)
        key = match.group(1)
        value = values[key]
        spans.setdefault(key, (position, value))
        out.append(value)
        position += len(value)
        last = match.end()
    out.append(template[last:])
    return "".join(out)


def _article_records(
    article: _Article, rng: random.Random, prefix: str, questions_per_article: int, unanswerable_fraction: float
) -> list[dict[str, Any]]:
    intro, *rest = article.sentences
    dropped = rng.randrange(len(rest))
    kept = [intro] + [s for i, s in enumerate(rest) if i != dropped]
    kept = [kept[0]] + rng.sample(kept[1:], len(kept) - 1)
    spans: dict[str, tuple[int, str]] = {}
    parts: list[str] = []
    position = 0
    for _, phrasings in kept:
        sentence = _render(rng.choice(phrasings), article.values, position, spans)
        parts.append(sentence)
        position += len(sentence) + 1
    context = " ".join(parts)

    answerable = [f for facts, _ in kept for f in facts]
    missing = list(rest[dropped][0])
    records = []
    for q in range(questions_per_article):
        impossible = bool(missing) and unanswerable_fraction > 0 and rng.random() < unanswerable_fraction
        pool = missing if impossible else answerable
        fact = rng.choice(pool)
        pool.remove(fact)  # no fact asked twice per paragraph
        question = rng.choice(article.questions[fact]).format(**article.values)
        if impossible:
            answers = {"text": [], "answer_start": []}
        else:
            start, text = spans[fact]
            answers = {"text": [text], "answer_start": [start]}
        records.append({"id": f"{prefix}-q{q}", "title": article.title, "context": context,
                        "question": question, "answers": answers})
        if not answerable:
            break
    return records


def embedded_records(
    seed: int = 0,
    num_train_articles: int = 80,
    num_validation_articles: int = 20,
    questions_per_article: int = 5,
    unanswerable_fraction: float = 0.0,
) -> dict[str, list[dict[str, Any]]]:
    """The embedded dataset as plain records: ``{"train": [...], "validation": [...]}``."""
    if not 0.0 <= unanswerable_fraction < 1.0:
        raise ValueError(f"unanswerable_fraction must be in [0, 1), got {unanswerable_fraction!r}")
    if min(num_train_articles, num_validation_articles, questions_per_article) < 1:
        raise ValueError("num_train_articles, num_validation_articles and questions_per_article must be >= 1")
    rng = random.Random(seed)
    names = _Names(rng)
    makers = [_person, _city, _river]
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, count in (("train", num_train_articles), ("validation", num_validation_articles)):
        records: list[dict[str, Any]] = []
        for a in range(count):
            article = makers[a % len(makers)](rng, names)
            records += _article_records(article, rng, f"emb{seed}-{split}-a{a:03d}",
                                        questions_per_article, unanswerable_fraction)
        splits[split] = records
    return splits


def make_embedded_squad(
    seed: int = 0,
    num_train_articles: int = 80,
    num_validation_articles: int = 20,
    questions_per_article: int = 5,
    unanswerable_fraction: float = 0.0,
) -> datasets.DatasetDict:
    """The embedded dataset as ``DatasetDict(train=…, validation=…)`` in the SQuAD column layout.

    Defaults: 80 train articles and 20 validation articles, 5 questions each (400 / 100
    questions), all answerable; same seed → same data.
    """
    records = embedded_records(seed, num_train_articles, num_validation_articles,
                               questions_per_article, unanswerable_fraction)
    return datasets.DatasetDict(
        {split: dataset_from_records(rows, f"embedded {split}") for split, rows in records.items()}
    )
