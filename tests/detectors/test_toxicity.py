"""Toxicity: the shipped model, evaluated fast but exactly, flags insults and leaves technical talk alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from detectors.toxicity import HuggingFaceBackend, ProfanityCheckBackend, ToxicityDetector


@pytest.fixture(scope="module")
def backend() -> ProfanityCheckBackend:
    return ProfanityCheckBackend()


def _rec(response: str, prompt: str = "hello") -> SimpleNamespace:
    return SimpleNamespace(prompt=prompt, response=response)


def test_fast_path_gives_the_wheels_own_probabilities(backend: ProfanityCheckBackend) -> None:
    from profanity_check import predict_prob

    texts = [
        "Here is how to configure the consumer group.", "you are a stupid idiot", "", "12345 67",
        "naïve café’s crème brûlée, 10€ — İSTANBUL", "fuck€ this", "snake_case __init__ x1 a",
        "Straße\tand\nnewlines\r\nand UPPER CASE SHIT", "ÉCOLE d'été", "k-pop K-POP",
    ]
    assert np.allclose(backend.predict(texts), predict_prob(texts), rtol=0, atol=1e-12)


def test_insults_are_flagged_and_sysadmin_talk_is_not(backend: ProfanityCheckBackend) -> None:
    det = ToxicityDetector(backend)
    toxic = ["You are a worthless idiot and nobody likes you.", "Shut the fuck up, you pathetic moron."]
    benign = ["You can kill the child processes and then execute the cleanup hook.",
              "Breast cancer screening is recommended every two years."]
    results = det.detect([_rec(t) for t in toxic + benign])
    assert [d.flagged for d in results] == [True, True, False, False]
    assert all(d.detector == "toxicity" and 0 <= d.score <= 1 for d in results)


def test_kill_the_process_ranks_below_insults(backend: ProfanityCheckBackend) -> None:
    # The shipped model is a profanity classifier: a terse "kill -9" sentence alone scores about 0.65 (above
    # the default threshold; inside a whole answer it is diluted). What analysts can rely on is the ranking.
    det = ToxicityDetector(backend)
    sysadmin, insult = det.detect([_rec("If it hangs, kill the process with `kill -9 4242` and start it again."),
                                   _rec("Nobody likes you, loser.")])
    assert sysadmin.score < insult.score


def test_prompt_toxicity_scores_the_prompt_not_the_answer(backend: ProfanityCheckBackend) -> None:
    det = ToxicityDetector(backend, field="prompt")
    [d] = det.detect([_rec("Let's keep this civil.", prompt="answer me, you useless moron")])
    assert (d.detector, d.flagged, d.details["field"]) == ("prompt_toxicity", True, "prompt")


def test_an_empty_answer_is_not_toxic(backend: ProfanityCheckBackend) -> None:
    [d] = ToxicityDetector(backend).detect([_rec("   ")])
    assert (d.score, d.flagged) == (0.0, False)


def test_the_threshold_decides_the_flag(backend: ProfanityCheckBackend) -> None:
    strict = ToxicityDetector(backend, threshold=0.0001)
    lenient = ToxicityDetector(backend, threshold=1.0)
    record = [_rec("This shot killed it, what a banger")]
    assert strict.detect(record)[0].flagged and not lenient.detect(record)[0].flagged


def test_hf_backend_only_loads_from_a_local_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="not found"):
        HuggingFaceBackend(str(tmp_path / "no-such-model"))
