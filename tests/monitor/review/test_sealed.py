"""A credential planted in every text field of a record, sent through Kafka and the real daemon, is found on no
review page, in no export, no queued alert and no dead-letter reason — whatever `store_text` the daemon used,
and with the review server started from nothing but the database URL (not the daemon's configuration)."""

from __future__ import annotations

import logging
import os
import secrets
import string
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from monitor.alerts.evaluate import evaluate_once
from monitor.app.logs import SealingFormatter
from monitor.config import Config, DatabaseConfig, ReviewConfig, StorageConfig
from monitor.review.app import ReviewServer
from monitor.review.auth import ReviewerRegistry
from monitor.storage.crypto import new_key
from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import alert_outbox, dead_letters, labels, records, sample_assignments, samples
from tests.helpers import DaemonThread, config_for, encode, good_record, produce, wait_for, write_config
from tests.monitor.review.conftest import CHROMIUM

pytestmark = pytest.mark.browser


def _credentials() -> dict[str, str]:
    """Fresh, valid-format credentials (never the documentation's example values)."""
    upper = string.ascii_uppercase + "234567"
    alnum = string.ascii_letters + string.digits
    return {
        "aws": "AKIA" + "".join(secrets.choice(upper) for _ in range(16)),
        "github": "ghp_" + "".join(secrets.choice(alnum) for _ in range(36)),
        "password": "Zq" + "".join(secrets.choice(alnum) for _ in range(10)) + "!9",
    }


def _traffic(creds: dict[str, str]) -> list[bytes]:
    aws, gh, pw = creds["aws"], creds["github"], creds["password"]
    now_ms = int(time.time() * 1000)  # recent, so the alert rules' windows see it
    answered = good_record(1, ts=now_ms, prompt=f"my AWS key is {aws}, why is it rejected?",
                           response=f"Try the token {gh} instead.",
                           feedback={"score": 0, "comment": f"it printed my password: {pw}"},
                           metadata={"debug": f"aws_access_key_id={aws}", "note": [f"token {gh}"]},
                           deploy_note=f"password={pw}")  # an unknown top-level field lands in metadata
    failed = good_record(2, ts=now_ms, status="error", response="", error=f"upstream 401 for key {aws} (token {gh})")
    malformed = good_record(3, status=f"password={pw} {aws}")  # a wrong value echoed in the reason
    return [encode(answered), encode(failed), encode(malformed)]


@pytest.mark.parametrize("store_text", ["full", "redacted", "none", "full+key"])
def test_a_planted_credential_reaches_no_page_export_alert_or_dead_letter(
        store_text, sqlite_url, kafka_broker, topic, tmp_path, page):  # type: ignore[no-untyped-def]
    """``full+key``: raw text stored encrypted; the review server is given the key (and nothing else of the
    daemon's configuration), so it shows opened raw text, masked."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing")
    creds = _credentials()
    upgrade(sqlite_url)
    key = new_key() if store_text == "full+key" else None
    storage = f'[storage]\nencryption_key = "{key}"\n' if key else ""
    path = write_config(tmp_path / "monitor.toml", db_url=sqlite_url, bootstrap=kafka_broker, topic=topic,
                        extra=f'store_text = "{store_text.removesuffix("+key")}"\n[sampling]\nuniform_rate = 1.0\n'
                              f'[scheduler]\nenabled = false\n{storage}')
    config = config_for(path)
    produce(kafka_broker, topic, _traffic(creds))
    engine = make_engine(sqlite_url)
    with DaemonThread(config):
        wait_for(lambda: _count(engine, records) == 2 and _count(engine, dead_letters) == 1, 60, "3 messages")
    now = datetime.now(UTC)
    for at in (now, now + timedelta(seconds=15)):  # fires, then is announced once its group_wait has passed
        evaluate_once(engine, config, at)

    def leaked(text: str) -> list[str]:
        return [name for name, value in creds.items() if value in text]

    with engine.connect() as conn:
        reasons = conn.execute(select(dead_letters.c.reason)).scalars().all()
        payloads = conn.execute(select(alert_outbox.c.payload)).scalars().all()
        sampled = conn.execute(select(samples.c.record_id)).scalars().all()
    assert leaked(" ".join(reasons)) == [] and "got a 44-character string" in reasons[0]
    assert payloads, "the leak in a response raises an alert"
    assert leaked(" ".join(map(str, payloads))) == []
    assert {"req-000001", "req-000002"} <= set(sampled)
    if key:  # nothing in clear at rest: neither in a record's columns nor in a dead letter's bytes
        with engine.connect() as conn:
            stored = [str(tuple(row)) for table in (records, dead_letters) for row in conn.execute(select(table))]
        assert leaked(" ".join(stored)) == []

    # The review server knows only the database: not store_text, not the daemon's detectors settings.
    token = ReviewerRegistry(engine).add("ana")
    bare = Config(database=DatabaseConfig(url=sqlite_url), review=ReviewConfig(queue_size=10),
                  storage=StorageConfig(encryption_key=key))  # type: ignore[arg-type]
    server = ReviewServer(engine, bare, host="127.0.0.1", port=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        page.goto(base + "/login")
        page.fill("#token", token)
        page.keyboard.press("Enter")
        page.wait_for_selector("#sample-id")
        with engine.connect() as conn:  # the queue assigned on the first page: visit every sample of it
            assigned = conn.execute(select(samples.c.id, samples.c.record_id).join(
                sample_assignments, sample_assignments.c.sample_id == samples.c.id)).all()
        assert {"req-000001", "req-000002"} <= {record_id for _, record_id in assigned}
        for sample_id, record_id in assigned:
            page.goto(f"{base}/samples/{sample_id}")
            page.wait_for_selector("#sample-id")
            html = page.content()
            assert record_id in html and leaked(html) == [], (record_id, leaked(html))
        page.goto(f"{base}/samples/{assigned[0][0]}")
        page.wait_for_selector("#sample-id")
        page.keyboard.press("1")  # label one (verdict, then save), so the export below holds a row
        page.keyboard.press("n")
        wait_for(lambda: _count(engine, labels) == 1, 10, "the label")
        with page.expect_download() as download:
            page.click("#export-csv")
        exported = tmp_path / "labels.csv"
        download.value.save_as(exported)
        assert assigned[0][1] in exported.read_text() and leaked(exported.read_text()) == []
    finally:
        server.stop()
        engine.dispose()


def test_no_log_line_carries_a_credential_whatever_logs_it(caplog) -> None:  # type: ignore[no-untyped-def]
    """A library logging a request body, or an exception quoting a value, is sealed by the one formatter."""
    creds = _credentials()
    formatter = SealingFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord("somelib", logging.WARNING, __file__, 1, "request body %s failed",
                               (f'{{"key": "{creds["aws"]}"}}',), None)
    try:
        raise ValueError(f"bad token {creds['github']}")
    except ValueError:
        import sys
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "[AWS_KEY]" in line and "ValueError" in line
    assert not [v for v in creds.values() if v in line]


def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return len(conn.execute(select(table.c[next(iter(table.c.keys()))])).all())
