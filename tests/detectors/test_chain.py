"""The configured chain: detectors by config, signals per record, redaction from the batch's findings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from detectors.chain import DetectorChain
from detectors.pii import PiiDetector
from detectors.refusal import RefusalDetector
from monitor.config import DetectorsConfig, PiiConfig, SecretsConfig, ToxicityConfig


def _rec(prompt: str, response: str, **kw) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    fields = {"status": "ok", "finish_reason": "stop", "tokens_out": 10, "metadata": {}} | kw
    return SimpleNamespace(id="r", prompt=prompt, response=response, **fields)


@pytest.fixture(scope="module")
def chain() -> DetectorChain:
    return DetectorChain.from_config(DetectorsConfig())


def test_default_chain_runs_every_detector_once_per_record(chain: DetectorChain) -> None:
    annotations = chain.run([_rec("hi", "hello there"), _rec("?", "I cannot help with that.")])
    assert [[d.detector for d in a.detections] for a in annotations] == \
        [["toxicity", "prompt_toxicity", "pii", "secrets", "refusal"]] * 2
    assert annotations[1].signals["refusal"] is True and annotations[0].signals["refusal"] is False


def test_signals_fill_the_records_columns(chain: DetectorChain) -> None:
    [a] = chain.run([_rec("My mail is a@b.io", "ok: AKIAIOSFODNN7EXAMPLE", finish_reason="length")])
    s = a.signals
    assert (s["prompt_chars"], s["prompt_words"], s["response_words"]) == (17, 4, 2)
    assert (s["pii_count"], s["secret_count"], s["truncated"], s["refusal"]) == (1, 1, True, False)
    assert 0 <= s["prompt_toxicity"] <= 1 and 0 <= s["response_toxicity"] <= 1


def test_stored_text_is_redacted_per_field(chain: DetectorChain) -> None:
    [a] = chain.run([_rec("reach me at bob@corp.io", "Use 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")])
    assert (a.redacted_prompt, a.redacted_response) == ("reach me at [EMAIL]", "Use [GITHUB_TOKEN]")


def test_switched_off_detectors_leave_their_signals_null() -> None:
    cfg = DetectorsConfig(toxicity=ToxicityConfig(enabled=False))
    [a] = DetectorChain.from_config(cfg, store_text="full").run([_rec("hi", "there")])
    assert a.signals["response_toxicity"] is None and a.signals["prompt_toxicity"] is None
    assert a.redacted_prompt is None  # full text is stored: nothing redacted


def test_redaction_without_the_pii_or_secrets_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="redaction needs"):
        DetectorChain.from_config(DetectorsConfig(secrets=SecretsConfig(enabled=False)), store_text="redacted")
    with pytest.raises(ValueError, match="redaction needs"):
        DetectorChain([PiiDetector(), RefusalDetector()], redact=True)
    chain = DetectorChain.from_config(DetectorsConfig(pii=PiiConfig(enabled=False)), store_text="none")
    assert "pii" not in [d.name for d in chain.detectors]


def test_hf_backend_needs_a_model_path() -> None:
    with pytest.raises(ValueError, match="model_path"):
        ToxicityConfig(backend="hf-pipeline")


def test_a_clean_record_is_stored_as_it_came_and_the_collector_state_is_restored(chain: DetectorChain) -> None:
    import gc

    record = _rec("How do I reset my password?", "Click 'Forgot password' on the sign-in page.")
    gc.disable()
    try:
        [a] = chain.run([record])
        assert not gc.isenabled()  # a caller that switched the collector off keeps it off
    finally:
        gc.enable()
    [b] = chain.run([record])
    assert gc.isenabled()
    assert (a.redacted_prompt, a.redacted_response) == (record.prompt, record.response)
    assert b.signals == a.signals and b.signals["pii_count"] == 0 and b.signals["secret_count"] == 0
