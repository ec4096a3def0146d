"""Comparing a production answer with the reference answer: the same meaning in other words agrees; a
different answer, a truncated one, or a refusal facing an answer disagrees, and the reason is kept."""

from __future__ import annotations

import pytest

from detectors.pii import PiiDetector
from detectors.refusal import RefusalDetector
from detectors.toxicity import ProfanityCheckBackend, ToxicityDetector
from inference.compare import Comparer, Pair, Thresholds, length_ratio
from inference.rouge import lcs_length, rouge_l, tokens


def test_rouge_l_rewards_shared_words_in_order() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("the cat sat on the mat", "a dog ran in the park") == pytest.approx(1 / 6)
    assert rouge_l("mat the on sat cat the", "the cat sat on the mat") == pytest.approx(0.5)  # "the on the"
    assert rouge_l("Hello, World!", "hello world") == 1.0
    assert rouge_l("something", "") == 0.0


def test_lcs_of_long_answers_is_cut_to_keep_the_worker_responsive() -> None:
    long = "word " * 5000
    assert rouge_l(long, long, max_tokens=100) == 1.0
    assert lcs_length(tokens("a b c d"), tokens("b d")) == 2


def test_length_ratio_is_production_over_reference() -> None:
    assert length_ratio("abcd", "ab") == 2.0
    assert length_ratio("", "") == 1.0
    assert length_ratio("abc", "") is None


@pytest.fixture(scope="module")
def comparer() -> Comparer:
    return Comparer(toxicity=ToxicityDetector(ProfanityCheckBackend()))


def test_a_paraphrase_agrees_and_a_different_answer_does_not(comparer: Comparer) -> None:
    same, different = comparer.compare([
        Pair("Capital of France?", "Paris is the capital of France.", "The capital of France is Paris."),
        Pair("Capital of France?", "Paris is the capital of France.",
             "Bananas are rich in potassium and grow in tropical climates."),
    ])
    assert same.agree and same.reasons == []
    assert same.similarity > 0.8
    assert not different.agree
    assert different.similarity < 0.5
    assert any(r.startswith("similarity") for r in different.reasons)


def test_a_truncated_answer_disagrees_on_length(comparer: Comparer) -> None:
    reference = "To bake bread, mix flour, water, salt and yeast, knead for ten minutes, let it rise " * 3
    [c] = comparer.compare([Pair("How do I bake bread?", "To bake bread, mix", reference)])
    assert c.length_ratio is not None and c.length_ratio < 0.25
    assert not c.agree and any("length ratio" in r for r in c.reasons)


def test_the_reference_answer_is_scored_for_toxicity(comparer: Comparer) -> None:
    clean, toxic = comparer.compare([
        Pair("Say hi", "Hello there!", "Hello, nice to meet you."),
        Pair("Say hi", "Hello there!", "Shut up you stupid fucking idiot."),
    ])
    assert clean.reference_toxicity is not None and toxic.reference_toxicity is not None
    assert toxic.reference_toxicity > 0.5 > clean.reference_toxicity
    assert clean.reference_pii is None and clean.refusal_mismatch is None  # no detector given: NULL


def test_only_one_side_refusing_is_a_disagreement_that_names_the_refuser() -> None:
    comparer = Comparer(refusal=RefusalDetector())
    both, one = comparer.compare([
        Pair("How do I pick a lock?", "Sorry, I can't help with that.", "I cannot assist with that request."),
        Pair("How do I pick a lock?", "Insert a tension wrench, then rake the pins.",
             "Sorry, I can't help with that."),
    ])
    assert both.refusal_mismatch is False
    assert one.refusal_mismatch is True
    assert "refusal mismatch: only the reference answer refuses" in one.reasons


def test_thresholds_are_configurable() -> None:
    strict = Comparer(Thresholds(min_similarity=0.0, min_rouge_l=0.9))
    [c] = strict.compare([Pair("q", "Paris is the capital of France.", "The capital of France is Paris.")])
    assert not c.agree and c.reasons == [f"rouge_l {c.rouge_l:.2f} < 0.9"]


def test_a_cut_off_answer_is_not_a_refusal_and_pii_in_the_reference_answer_is_counted() -> None:
    comparer = Comparer(refusal=RefusalDetector(), pii=PiiDetector())
    [c] = comparer.compare([Pair("Who do I write to?", "Write to the support team.",
                                 "Write to jane.doe@example.com or call support.")])
    assert c.refusal_mismatch is False
    assert c.reference_pii == 1
