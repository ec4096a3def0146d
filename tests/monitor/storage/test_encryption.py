"""Encryption at rest: what is stored with a key, read back through the review page's queue and the export, and
rotated to a new key, on SQLite and Postgres."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import insert, select

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.config import ConfigError, ReviewConfig, load_config
from monitor.ingest.batch import RawMessage
from monitor.ingest.pipeline import decode_messages
from monitor.ingest.steps.detect import DetectStep
from monitor.review.export import write_labels
from monitor.review.queue import ReviewQueue
from monitor.storage.crypto import Cipher, Undecryptable, key_id, new_key, open_texts
from monitor.storage.rotation import rotate
from monitor.storage.schema import dead_letters, records, reviewers, sample_assignments, samples
from monitor.storage.store import Store, text_policy
from tests.helpers import good_record

AWS = "AKIA4HKQ2ZP7LW3NXR6T"


def _batch(n: int, first: int = 0):  # type: ignore[no-untyped-def]
    messages = [RawMessage("t", 0, first + i, None, orjson.dumps(good_record(
        first + i, prompt=f"my key is {AWS}, mail bob@example.com", response=f"answer {first + i}",
        error="quota", feedback={"score": 0.0, "comment": f"leaked {AWS}"}))) for i in range(n)]
    messages.append(RawMessage("t", 0, first + n, None, b'{"id": "broken", "secret": "' + AWS.encode() + b'"'))
    batch = decode_messages(messages)
    DetectStep(DetectorChain.from_config(DetectorsConfig(), store_text="redacted")).process(batch)
    return batch


def _store(engine, cipher: Cipher | None, store_text: str = "full") -> Store:  # type: ignore[no-untyped-def]
    return Store(engine, text_policy(store_text, cipher), cipher=cipher)


def test_a_bad_key_is_one_line_naming_the_key_and_never_showing_it() -> None:
    good = new_key()
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"WATCHKEEPER_ENCRYPTION_KEY": f"{good},not-a-key-at-all"})
    message = str(caught.value)
    assert "storage.encryption_key" in message and "WATCHKEEPER_ENCRYPTION_KEY" in message
    assert "key 2 of 2 is not a Fernet key" in message
    assert "not-a-key-at-all" not in message and good not in message
    cipher = load_config(None, env={"WATCHKEEPER_ENCRYPTION_KEY": good}).storage.cipher()
    assert cipher is not None and good not in repr(cipher) and cipher.key_id == key_id(good)


def test_with_a_key_no_raw_text_or_bytes_are_stored_in_clear(engine) -> None:  # type: ignore[no-untyped-def]
    cipher = Cipher([new_key()])
    _store(engine, cipher).write(_batch(250))  # 250: the COPY path on Postgres
    with engine.connect() as conn:
        rows = conn.execute(select(records)).mappings().all()
        letters = conn.execute(select(dead_letters)).mappings().all()
    assert len(rows) == 250 and len(letters) == 1
    for row in rows:
        clear = " ".join(str(row[c.name]) for c in records.columns if c.name != "text_encrypted")
        assert AWS not in clear and "bob@example.com" not in clear
        assert row["prompt"] == "my key is [AWS_KEY], mail [EMAIL]" and row["text_key"] == cipher.key_id
        opened = open_texts(cipher, row["text_encrypted"], row["text_key"])
        assert opened is not None and opened["full"] is True
        assert opened["prompt"] == f"my key is {AWS}, mail bob@example.com"
        assert opened["feedback_comment"] == f"leaked {AWS}"
        assert AWS.encode() not in bytes(row["text_encrypted"])
    letter = letters[0]
    assert letter["raw"] is None and letter["raw_key"] == cipher.key_id
    assert AWS.encode() in cipher.decrypt(letter["raw_encrypted"], letter["raw_key"])
    with pytest.raises(Undecryptable, match=cipher.key_id):
        Cipher([new_key()]).decrypt(letter["raw_encrypted"], letter["raw_key"])


def test_redacted_text_is_stored_as_without_a_key(engine) -> None:  # type: ignore[no-untyped-def]
    """Redacted text is what analysts read: with store_text = redacted a key seals only dead letters."""
    cipher = Cipher([new_key()])
    _store(engine, cipher, "redacted").write(_batch(3))
    with engine.connect() as conn:
        row = conn.execute(select(records).limit(1)).mappings().one()
        letter = conn.execute(select(dead_letters)).mappings().one()
    assert row["prompt"] == "my key is [AWS_KEY], mail [EMAIL]" and row["text_encrypted"] is None
    assert letter["raw"] is None and letter["raw_encrypted"] is not None


def _assign_all(engine) -> int:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        reviewer = conn.execute(insert(reviewers).values(name="ann", token_hash="x", created_at=now)
                                .returning(reviewers.c.id)).scalar_one()
        for rid, ts in conn.execute(select(records.c.id, records.c.ts)).all():
            sid = conn.execute(insert(samples).values(
                record_id=rid, reason="uniform", stratum="*", model="m", ts=ts, window_start=ts,
                inclusion_probability=0.5, sampled_at=now).returning(samples.c.id)).scalar_one()
            conn.execute(insert(sample_assignments).values(sample_id=sid, reviewer_id=reviewer, assigned_at=now))
    return int(reviewer)


def test_the_review_page_and_the_export_open_encrypted_text_and_mask_it(engine) -> None:  # type: ignore[no-untyped-def]
    cipher = Cipher([new_key()])
    _store(engine, cipher).write(_batch(2))
    reviewer = _assign_all(engine)
    with_key = ReviewQueue(engine, ReviewConfig(), cipher=cipher)
    without_key = ReviewQueue(engine, ReviewConfig())  # a server without the key: the redacted clear columns
    for queue in (with_key, without_key):
        item = queue.pending(reviewer)[0]
        view = queue.view(reviewer, item.sample_id)
        assert view is not None and view.record is not None
        page = "".join(s.text for s in view.prompt) + str(view.record)
        assert AWS not in page and "[AWS_KEY]" in page
        assert "text_encrypted" not in view.record
    opened = with_key.view(reviewer, with_key.pending(reviewer)[0].sample_id)
    assert opened is not None and any(s.kind == "EMAIL" for s in opened.prompt)
    assert with_key.label(reviewer, with_key.pending(reviewer)[0].sample_id, "correct")
    out = io.StringIO()
    assert write_labels(engine, "jsonl", out, cipher=cipher) == 1
    exported = orjson.loads(out.getvalue())
    assert AWS not in out.getvalue() and "bob@example.com" in exported["prompt"]  # opened, then sealed


def test_rotation_moves_every_ciphertext_to_the_first_key(engine) -> None:  # type: ignore[no-untyped-def]
    old, new = new_key(), new_key()
    _store(engine, Cipher([old])).write(_batch(120))
    _store(engine, None).write(_batch(2, first=500))  # a clear dead letter from before the key was set
    both = Cipher([new, old])
    report = rotate(engine, both, chunk=50)
    assert report.rotated == {"records": 120, "dead_letters": 1} and report.sealed_clear == 1
    assert sum(report.undecryptable.values()) == 0
    only_new = Cipher([new])
    with engine.connect() as conn:
        rows = conn.execute(select(records.c.text_encrypted, records.c.text_key)
                            .where(records.c.text_encrypted.is_not(None))).all()
        letters = conn.execute(select(dead_letters.c.raw, dead_letters.c.raw_encrypted, dead_letters.c.raw_key)).all()
    assert len(rows) == 120 and {k for _, k in rows} == {only_new.key_id}
    assert all(open_texts(only_new, t, k)["prompt"].endswith("bob@example.com") for t, k in rows)  # type: ignore[index]
    assert len(letters) == 2 and all(raw is None and key == only_new.key_id for raw, _, key in letters)
    assert all(AWS.encode() in only_new.decrypt(token) for _, token, _ in letters)
    assert rotate(engine, both).rotated == {"records": 0, "dead_letters": 0}  # nothing left to do
