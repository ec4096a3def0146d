"""The configured chain: detectors by config, signals per record, redaction from the batch's findings."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig, PiiConfig, SecretsConfig, ToxicityConfig
from detectors.pii import PiiDetector
from detectors.refusal import RefusalDetector
from monitor.ingest.record import Record
from monitor.storage.store import record_row, text_policy


def _rec(prompt: str, response: str, **kw) -> SimpleNamespace:  # type: ignore[no-untyped-def]
    fields = {"status": "ok", "finish_reason": "stop", "tokens_out": 10, "metadata": {}} | kw
    return SimpleNamespace(id="r", prompt=prompt, response=response, **fields)


@pytest.fixture(scope="module")
def chain() -> DetectorChain:
    return DetectorChain.from_config(DetectorsConfig())


def test_default_chain_runs_every_detector_once_per_record(chain: DetectorChain) -> None:
    annotations = chain.run([_rec("hi", "hello there"), _rec("?", "I cannot help with that.")])
    assert [[d.detector for d in a.detections] for a in annotations] == \
        [["toxicity", "prompt_toxicity", "pii", "secrets", "refusal", "prompt_injection"]] * 2
    assert annotations[1].signals["refusal"] is True and annotations[0].signals["refusal"] is False


def test_signals_fill_the_records_columns(chain: DetectorChain) -> None:
    [a] = chain.run([_rec("My mail is a@b.io", "ok: AKIA4HKQ2ZP7LW3NXR6T", finish_reason="length")])
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


def test_an_error_a_feedback_comment_and_metadata_are_redacted_like_the_texts(chain: DetectorChain) -> None:
    record = _rec("hi", "hello", error="rate limit for key AKIA4HKQ2ZP7LW3NXR6T", feedback_comment="mail me: a@b.io",
                  metadata={"user": {"email": "bob@corp.io"}, "max_tokens": 1024})
    [a] = chain.run([record])
    assert (a.redacted_error, a.redacted_feedback_comment) == ("rate limit for key [AWS_KEY]", "mail me: [EMAIL]")
    assert a.redacted_metadata == {"user": {"email": "[EMAIL]"}, "max_tokens": 1024}
    assert record.metadata["user"]["email"] == "bob@corp.io"  # the record itself is left as it came
    assert (a.signals["pii_count"], a.signals["secret_count"]) == (2, 1)


def test_a_clean_records_extra_fields_are_stored_as_they_came(chain: DetectorChain) -> None:
    metadata = {"max_tokens": 1024, "region": "eu-west-1"}
    [a] = chain.run([_rec("hi", "hello", error="upstream timeout after 30000 ms", feedback_comment="helpful",
                          metadata=metadata)])
    assert (a.redacted_error, a.redacted_feedback_comment) == ("upstream timeout after 30000 ms", "helpful")
    assert a.redacted_metadata is metadata


def test_with_store_text_none_the_extra_fields_are_still_redacted_unless_they_cannot_be() -> None:
    record = _rec("mail bob@corp.io", "ok", error="bad key AKIA4HKQ2ZP7LW3NXR6T", feedback_comment=None)
    [a] = DetectorChain.from_config(DetectorsConfig(), store_text="none").run([record])
    assert (a.redacted_prompt, a.redacted_response, a.redacted_error) == (None, None, "bad key [AWS_KEY]")
    no_pii = DetectorChain.from_config(DetectorsConfig(pii=PiiConfig(enabled=False)), store_text="none")
    [b] = no_pii.run([record])
    assert (b.redacted_error, b.redacted_metadata) == (None, None)  # the store then writes none of them
    assert text_policy("none")(record, b) == (None, None, None, None, None)


AWS_KEY = "AKIA4HKQ2ZP7LW3NXR6T"
OPENAI_KEY = "sk-proj-3xAmPlEkEy_4bCdEfGhIjKlMnOpQrStUvWxYz0123456789ab"


def _leaky_record() -> Record:
    return Record(
        id="r-leak", ts=datetime(2026, 1, 1, tzinfo=UTC), model="m1", status="error",
        prompt="Summarise the incident for ops@acme.io", response="",
        error=f"upstream 401: invalid credentials for {AWS_KEY}",
        feedback_score=0.0, feedback_comment="Broken again, reach me at jane.doe@example.org",
        metadata={"api_key": OPENAI_KEY, "db": {"password": "hunter2!x"}, "max_tokens": 1024},
    )


def test_a_stored_row_carries_no_raw_secret_or_address_from_any_field(chain: DetectorChain) -> None:
    """A failed call whose error names the AWS key, whose feedback gives an address and whose metadata holds
    an API key and a password reaches the `records` row, under the default policy, with placeholders only."""
    record = _leaky_record()
    [annotation] = chain.run([record])
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    row = record_row(record, annotation, text_policy("redacted")(record, annotation), now)
    assert row["prompt"] == "Summarise the incident for [EMAIL]"
    assert row["error"] == "upstream 401: invalid credentials for [AWS_KEY]"
    assert row["feedback_comment"] == "Broken again, reach me at [EMAIL]"
    assert row["metadata"] == {"api_key": "[OPENAI_KEY]", "db": {"password": "[PASSWORD]"}, "max_tokens": 1024}
    stored = orjson.dumps(row, default=str).decode() + repr([d.details for d in annotation.detections])
    for raw in (AWS_KEY, OPENAI_KEY, "hunter2", "jane.doe@example.org", "ops@acme.io"):
        assert raw not in stored

    none = record_row(record, annotation, text_policy("none")(record, annotation), now)
    assert (none["prompt"], none["response"], none["error"]) == (None, None, row["error"])
    assert none["metadata"] == row["metadata"] and none["feedback_comment"] == row["feedback_comment"]
    full = record_row(record, annotation, text_policy("full")(record, annotation), now)
    assert (full["error"], full["metadata"]["api_key"]) == (record.error, OPENAI_KEY)  # "full" is raw, by choice
    unannotated = record_row(record, None, text_policy("redacted")(record, None), now)
    assert (unannotated["error"], unannotated["feedback_comment"], unannotated["metadata"]) == (None, None, None)
