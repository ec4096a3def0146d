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


def test_a_cookie_claiming_a_far_expiry_is_refused_even_when_well_signed(registry):
    """The expiry is capped server-side: a stolen signing key cannot mint a ten-year session."""
    ana = registry.authenticate(registry.add("ana"))
    sessions = Sessions(registry, b"secret", ttl_s=60)
    forged = Sessions(registry, b"secret", ttl_s=10 * 365 * 86400).issue(ana, now=1_000_000.0)
    assert sessions.check(forged, now=1_000_001.0) is None
    assert sessions.check(sessions.issue(ana, now=1_000_000.0), now=1_000_001.0) == ana


def test_without_a_configured_secret_a_read_of_reviewers_cannot_forge_a_cookie(sqlite_url):
    """The old default keyed cookies by the token hash alone; the stored random key closes that."""
    import hashlib
    import hmac

    from monitor.review.auth import _b64, service_secret

    engine = make_engine(sqlite_url)
    metadata.create_all(engine)
    registry = ReviewerRegistry(engine)
    ana = registry.authenticate(registry.add("ana"))
    key = service_secret(engine, "review_session")
    assert key == service_secret(engine, "review_session") and len(key) >= 32  # made once, then reused
    sessions = Sessions(registry, key, ttl_s=3600)
    with engine.connect() as conn:
        token_hash = conn.execute(select(reviewers.c.token_hash)).scalar_one()
    body = f"{ana.id}.{((1_000_000 + 3000) * 1000)}"
    old_key = hashlib.sha256(b"\x00" + token_hash.encode()).digest()  # the former default: no secret at all
    forged = f"{body}.{_b64(hmac.digest(old_key, body.encode(), 'sha256'))}"
    assert sessions.check(forged, now=1_000_000.0) is None
    engine.dispose()


def test_revoking_ends_every_session_but_a_new_sign_in_works(registry):
    ana = registry.authenticate(registry.add("ana"))
    sessions = Sessions(registry, b"secret", ttl_s=3600)
    before = [sessions.issue(ana), sessions.issue(ana)]
    registry.revoke_sessions("ana")
    assert [sessions.check(c) for c in before] == [None, None]
    assert sessions.check(sessions.issue(ana)) == ana
    with pytest.raises(ReviewerError, match="no reviewer"):
        registry.revoke_sessions("nobody")
