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


TEXTS = ["you are a stupid idiot", "Here is how to configure the consumer group.", "naïve café SHIT", ""]


def test_the_model_cache_holds_the_wheels_model_and_a_damaged_one_is_rebuilt(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The first backend writes the model's arrays to the cache folder, the next reads them: both give the
    wheel's probabilities; a damaged file is rebuilt, not trusted."""
    from profanity_check import predict_prob

    monkeypatch.setenv("WATCHKEEPER_CACHE_DIR", str(tmp_path))
    first = ProfanityCheckBackend()
    [cached] = tmp_path.glob("profanity-check-*.npz")
    second = ProfanityCheckBackend()
    cached.write_bytes(cached.read_bytes()[:1000])  # a file cut short
    third = ProfanityCheckBackend()
    for backend in (first, second, third):
        assert np.allclose(backend.predict(TEXTS), predict_prob(TEXTS), rtol=0, atol=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # rewritten whole, no temporary left
    with np.load(cached) as arrays:
        assert len(arrays["words"]) == len(arrays["columns"]) == len(arrays["idf"]) > 10_000


def test_a_cache_folder_that_cannot_be_written_only_costs_time(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from profanity_check import predict_prob

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WATCHKEEPER_CACHE_DIR", str(blocker / "cache"))
    assert np.allclose(ProfanityCheckBackend().predict(TEXTS), predict_prob(TEXTS), rtol=0, atol=1e-12)
    assert blocker.read_text() == "not a folder"


def test_with_a_warm_cache_the_backend_loads_without_scikit_learn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What the cache is for: a daemon's start skips importing scikit-learn (~1 s of CPU) to unpickle the model."""
    import os
    import subprocess
    import sys

    script = ("import sys; from detectors.toxicity import ProfanityCheckBackend; b = ProfanityCheckBackend(); "
              "print(round(float(b.predict(['you stupid idiot'])[0]), 2), 'sklearn' in sys.modules)")
    env = {**os.environ, "WATCHKEEPER_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert [run.stdout.split() for run in runs] == [["1.0", "True"], ["1.0", "False"]]
