"""Reviewer tokens are shown once, kept only as salted hashes, and sessions die with the reviewer."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from monitor.review.auth import ReviewerError, ReviewerRegistry, Sessions
from monitor.storage.db import make_engine
from monitor.storage.schema import metadata, reviewers


@pytest.fixture
def registry(sqlite_url):  # type: ignore[no-untyped-def]
    engine = make_engine(sqlite_url)
    metadata.create_all(engine)
    yield ReviewerRegistry(engine)
    engine.dispose()


def test_a_token_works_once_issued_and_is_never_stored(registry):
    token = registry.add("ana")
    assert registry.authenticate(token).name == "ana"
    with registry._engine.connect() as conn:
        stored = conn.execute(select(reviewers.c.token_hash)).scalar_one()
    assert token not in stored and stored.startswith("sha256$")
    assert registry.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert registry.authenticate("") is None
    with pytest.raises(ReviewerError, match="already exists"):
        registry.add("ana")


def test_disabling_a_reviewer_revokes_token_and_sessions(registry):
    token = registry.add("bo")
    sessions = Sessions(registry, b"secret", ttl_s=3600)
    bo = registry.authenticate(token)
    cookie = sessions.issue(bo)
    assert sessions.check(cookie) == bo
    registry.disable("bo")
    assert registry.authenticate(token) is None
    assert sessions.check(cookie) is None
    assert [(r.name, r.active) for r in registry.list()] == [("bo", False)]


def test_forged_and_expired_cookies_are_refused(registry):
    ana = registry.authenticate(registry.add("ana"))
    bo = registry.authenticate(registry.add("bo"))
    sessions = Sessions(registry, b"secret", ttl_s=60)
    cookie = sessions.issue(ana, now=1_000_000.0)
    rid, expiry, sig = cookie.split(".")
    assert sessions.check(cookie, now=1_000_030.0) == ana
    assert sessions.check(cookie, now=1_000_061.0) is None  # expired
    assert sessions.check(f"{bo.id}.{expiry}.{sig}", now=1_000_030.0) is None  # someone else's id
    assert sessions.check(f"{rid}.{int(expiry) + 999}.{sig}", now=1_000_030.0) is None  # extended
    assert sessions.check("garbage", now=1_000_030.0) is None
    assert sessions.csrf_ok(cookie, sessions.csrf_token(cookie))
    assert not sessions.csrf_ok(cookie, sessions.csrf_token(sessions.issue(bo)))
