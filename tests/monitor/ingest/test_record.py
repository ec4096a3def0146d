"""The record format (docs/record-format.md): what a log record may look like, and the reason given
when it breaks the contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from monitor.ingest.record import RecordError, decode


def test_chat_records_take_the_last_user_turn_as_the_prompt():
    record = decode(b'{"id": "c1", "ts": "2026-03-01T10:00:00+02:00", "model": "m", "response": "ok",'
                    b' "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},'
                    b' {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye", "name": "u"}]}')
    assert record.prompt == "bye"
    assert record.ts == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert record.messages is not None and record.messages[-1]["name"] == "u"


def test_epoch_millis_feedback_and_unknown_fields():
    record = decode(b'{"id": "r", "ts": 1767225600000, "model": "m", "prompt": "p", "response": "r",'
                    b' "feedback": {"score": 0, "comment": "wrong"}, "region": "eu", "metadata": {"k": 1},'
                    b' "tokens_out": 12.0, "latency_ms": 5}')
    assert record.ts == datetime(2026, 1, 1, tzinfo=UTC)
    assert (record.feedback_score, record.feedback_comment) == (0.0, "wrong")
    assert record.metadata == {"k": 1, "region": "eu"}
    assert (record.tokens_out, record.latency_ms) == (12, 5.0)


def test_field_mapping_reads_a_deployments_own_names():
    record = decode(b'{"request_id": "x", "ts": 0, "model": "m", "prompt": "p", "completion": "c"}',
                    {"id": "request_id", "response": "completion"})
    assert (record.id, record.response) == ("x", "c")


def test_error_records_may_have_no_response():
    record = decode(b'{"id": "e", "ts": 0, "model": "m", "prompt": "p", "status": "error", "error": "timeout"}')
    assert (record.status, record.response, record.error) == ("error", "", "timeout")


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"id": "a", "ts": 0, "model": "m", "prompt": "p"}', "missing required field 'response'"),
    (b'{"id": "a", "ts": 0, "model": "m", "response": "r"}', "one of 'prompt' or 'messages' is required"),
    (b'{"id": "a", "ts": "yesterday", "model": "m", "prompt": "p", "response": "r"}', "not an RFC 3339"),
    (b'{"id": "a", "ts": "2026-01-01T00:00:00", "model": "m", "prompt": "p", "response": "r"}', "no time zone"),
    (b'{"id": "a", "ts": 0, "model": "m", "prompt": "p", "response": "r", "status": "meh"}', "'ok' or 'error'"),
    (b'{"id": "a", "ts": 0, "model": "m", "response": "r", "messages": [{"role": "user"}]}',
     "messages[0] must be an object"),
    (b'{"id": "a", "ts": 0, "model": "m", "prompt": "p", "response": "r", "tokens_in": -3}', "must not be negative"),
    (b'{"id": "a", "ts": 0, "model": "m", "prompt": "p", "response": "r", "tokens_out": 3000000000}',
     "'tokens_out' is larger than 2147483647"),
    (b'{"id": "a", "ts": 0, "model": "m", "prompt": "p", "response": "r", "app": 7}', "'app' must be a string"),
    (b'{"id": "", "ts": 0, "model": "m", "prompt": "p", "response": "r"}', "'id' must be 1..200"),
    (b'{"id": "a", "ts": 0, "model": "m", "prompt": "p", "response": "r", "latency_ms": NaN}', "not valid"),
])
def test_contract_violations_say_which_field_and_why(raw, reason):
    with pytest.raises(RecordError, match=re.escape(reason)):
        decode(raw)
