"""Word counting for the toxicity model: the fast batch counter agrees with scikit-learn word for word."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from detectors.wordcount import WordCounter

VOCABULARY = ["cat", "sat", "mat", "idiot", "kill", "process", "café", "naïve", "straße", "x1", "__init__",
              "snake_case", "understand", "understanding", "understandings", "internationalization",
              "internationalizations", "counterrevolutionaries", "abcdefgh", "abcdefghi", "abcdefghijklmnop"]


@pytest.fixture(scope="module")
def vocabulary() -> dict[str, int]:
    return {word: i for i, word in enumerate(VOCABULARY)}


def _same_as_sklearn(counter: WordCounter, vocabulary: dict[str, int], texts: list[str]) -> None:
    expected = CountVectorizer(vocabulary=vocabulary).transform(texts).toarray()
    assert np.array_equal(counter.counts(texts).toarray(), expected)


def test_counts_match_scikit_learn_on_everyday_and_awkward_text(vocabulary: dict[str, int]) -> None:
    texts = [
        "The CAT sat on the mat. The cat SAT.", "", "   ", "a b c x1 X1 x",
        "Kill the process, kill -9 it; killed processes don't count.",
        "snake_case __init__ and snake-case", "naïve CAFÉ — straße STRASSE ’cat’ «mat»",
        "understand understanding UNDERSTANDINGS understandingsx abcdefgh abcdefghi abcdefghijklmnop",
        "INTERNATIONALIZATION internationalizations counterrevolutionaries counterrevolutionariess",
        "idiot\tidiot\nidiot\r\nidiot",
    ]
    _same_as_sklearn(WordCounter(vocabulary), vocabulary, texts)


def test_a_large_random_batch_crosses_chunks_and_still_agrees(vocabulary: dict[str, int]) -> None:
    rng = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ ,.-'\n\téüßİ’—"
    words = [*VOCABULARY, *(w.upper() for w in VOCABULARY)]
    texts = [" ".join(rng.choice(words) if rng.random() < 0.5 else
                      "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
                      for _ in range(rng.randint(0, 120)))
             for _ in range(3000)]  # ~1.5 MB: several chunks, with and without non-ASCII texts
    _same_as_sklearn(WordCounter(vocabulary), vocabulary, texts)


def test_an_empty_batch_has_no_rows(vocabulary: dict[str, int]) -> None:
    assert WordCounter(vocabulary).counts([]).shape == (0, len(vocabulary))
