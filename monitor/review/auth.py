"""Who is reviewing: per-reviewer tokens, stored hashed, and the session cookie that follows a login.

A token (``wkr_`` + 43 random URL-safe characters) is printed once by ``watchkeeper reviewer add NAME``;
the database keeps only ``sha256$salt$digest``. Tokens carry 256 random bits, so a salted SHA-256 is as
strong as a slow KDF here, and cheap enough to check on every ``Authorization: Bearer`` request.

A session cookie is ``reviewer_id.expiry_ms.signature``: an HMAC keyed by a server secret (``[review]
session_secret``, or a random key made on first use and kept in ``service_secrets``) and the reviewer's stored
token hash, so a read of ``reviewers`` alone cannot forge one. Any server can check it; the expiry is capped
server-side at ``session_hours`` from now; disabling the reviewer, replacing their token, signing out or
``watchkeeper reviewer revoke`` (``reviewers.sessions_not_before``) ends every session of theirs at once. The
CSRF token of a form is derived from the cookie with the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from monitor.storage.db import as_utc, insert_ignore
from monitor.storage.schema import reviewers, service_secrets

TOKEN_PREFIX = "wkr_"


def hash_token(token: str, salt: str | None = None) -> str:
    """``sha256$salt$hexdigest`` of a token; a fresh random salt unless one is given."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()
    return f"sha256${salt}${digest}"


def verify_token(token: str, stored: str) -> bool:
    """Constant-time check of a token against its stored hash.

    >>> stored = hash_token("wkr_abc")
    >>> verify_token("wkr_abc", stored), verify_token("wkr_abd", stored)
    (True, False)
    """
    try:
        scheme, salt, _ = stored.split("$", 2)
    except ValueError:
        return False
    return scheme == "sha256" and hmac.compare_digest(hash_token(token, salt), stored)


@dataclass(frozen=True, slots=True)
class Reviewer:
    id: int
    name: str
    active: bool
    created_at: datetime


class ReviewerError(ValueError):
    """A reviewer that cannot be created or found; the message says which."""


class ReviewerRegistry:
    """Reviewers and their tokens.

    >>> from sqlalchemy import create_engine
    >>> from monitor.storage.schema import metadata
    >>> engine = create_engine("sqlite://"); metadata.create_all(engine)
    >>> registry = ReviewerRegistry(engine)
    >>> token = registry.add("ana")
    >>> registry.authenticate(token).name, registry.authenticate(token + "x")
    ('ana', None)
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, name: str, now: datetime | None = None) -> str:
        """Create a reviewer and return their token; it is shown this once and never stored."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ReviewerError("a reviewer name must be 1..200 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            if conn.execute(select(reviewers.c.id).where(reviewers.c.name == name)).first():
                raise ReviewerError(f"reviewer {name!r} already exists")
            conn.execute(insert(reviewers).values(
                name=name, token_hash=hash_token(token), created_at=now or datetime.now(UTC), active=True))
        return token

    def list(self) -> list[Reviewer]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(reviewers.c.id, reviewers.c.name, reviewers.c.active,
                                       reviewers.c.created_at).order_by(reviewers.c.name)).all()
        return [Reviewer(*row) for row in rows]

    def revoke_sessions(self, name: str, now: datetime | None = None) -> None:
        """End every session of ``name`` now (their token still signs in again)."""
        with self._engine.begin() as conn:
            done = conn.execute(update(reviewers).where(reviewers.c.name == name)
                                .values(sessions_not_before=now or datetime.now(UTC)))
        if done.rowcount == 0:
            raise ReviewerError(f"no reviewer named {name!r}")

    def end_sessions(self, reviewer_id: int, now: datetime | None = None) -> None:
        """Sign-out: every session of this reviewer, on every server, ends now."""
        with self._engine.begin() as conn:
            conn.execute(update(reviewers).where(reviewers.c.id == reviewer_id)
                         .values(sessions_not_before=now or datetime.now(UTC)))

    def disable(self, name: str) -> None:
        """Revoke a reviewer's token and sessions; their labels stay."""
        with self._engine.begin() as conn:
            done = conn.execute(update(reviewers).where(reviewers.c.name == name).values(active=False))
        if done.rowcount == 0:
            raise ReviewerError(f"no reviewer named {name!r}")

    def authenticate(self, token: str) -> Reviewer | None:
        """The active reviewer holding ``token``, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self._engine.connect() as conn:
            rows = conn.execute(select(reviewers).where(reviewers.c.active.is_(True))).all()
        found = None
        for row in rows:  # check them all: the time taken does not say which one matched
            if verify_token(token, row.token_hash):
                found = Reviewer(row.id, row.name, row.active, row.created_at)
        return found

    def _token_hash(self, reviewer_id: int) -> tuple[Reviewer, str, float] | None:
        """The active reviewer, their token hash and the time (epoch s) before which sessions are void."""
        with self._engine.connect() as conn:
            row = conn.execute(select(reviewers).where(reviewers.c.id == reviewer_id,
                                                       reviewers.c.active.is_(True))).first()
        if row is None:
            return None
        not_before = as_utc(row.sessions_not_before).timestamp() if row.sessions_not_before else 0.0
        return Reviewer(row.id, row.name, row.active, row.created_at), row.token_hash, not_before


def service_secret(engine: Engine, name: str) -> bytes:
    """The stored random secret ``name``, made on first use; two servers starting at once agree on one."""
    with engine.begin() as conn:
        insert_ignore(conn, service_secrets, [{"name": name, "value": secrets.token_hex(32),
                                               "created_at": datetime.now(UTC)}])
        return str(conn.execute(select(service_secrets.c.value).where(service_secrets.c.name == name))
                   .scalar_one()).encode()


class LoginLimit:
    """At most ``allowed`` failed sign-ins per client address in a sliding ``window_s``: a token carries 256
    bits, so this is not what keeps it safe, but it keeps a guessing script from filling the log and the
    database's CPU. In memory, per server process.

    >>> limit = LoginLimit(2, 60.0)
    >>> limit.failed("a", now=0.0); limit.failed("a", now=1.0)
    >>> limit.wait_s("a", now=2.0), limit.wait_s("b", now=2.0), limit.wait_s("a", now=61.0)
    (58.0, 0.0, 0.0)
    """

    def __init__(self, allowed: int, window_s: float) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, client: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(client, ()) if t > now - self.window_s]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return recent

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures[client] = [*self._recent(client, now), now]
        if len(self._failures) > 10_000:  # many addresses: forget the quietest rather than grow
            self._failures.pop(next(iter(self._failures)))

    def wait_s(self, client: str, now: float | None = None) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        recent = self._recent(client, now)
        return recent[-self.allowed] + self.window_s - now if len(recent) >= self.allowed else 0.0


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Sessions:
    """Signed session cookies and the CSRF tokens derived from them."""

    def __init__(self, registry: ReviewerRegistry, secret: bytes, ttl_s: float = 12 * 3600) -> None:
        if len(secret) < 6:
            raise ValueError("a session secret is required (configured, or `service_secret`)")
        self._registry = registry
        self._secret = secret
        self._ttl_s = ttl_s

    def _key(self, token_hash: str) -> bytes:
        return hashlib.sha256(self._secret + b"\x00" + token_hash.encode()).digest()

    def issue(self, reviewer: Reviewer, now: float | None = None) -> str:
        found = self._registry._token_hash(reviewer.id)
        if found is None:
            raise ReviewerError("reviewer is not active")
        expiry = int(((now or time.time()) + self._ttl_s) * 1000)  # milliseconds: a sign-out voids it at once
        body = f"{reviewer.id}.{expiry}"
        return f"{body}.{_b64(hmac.digest(self._key(found[1]), body.encode(), 'sha256'))}"

    def check(self, cookie: str, now: float | None = None) -> Reviewer | None:
        """The reviewer a cookie belongs to, or None if it is forged, expired, signed out or revoked.

        The expiry is trusted no further than ``ttl_s`` from now (a cookie claiming ten years is refused),
        and the cookie was issued ``ttl_s`` before its expiry: one issued at or before the reviewer's
        ``sessions_not_before`` is void."""
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[1]) > 15:
            return None
        now = now or time.time()
        expiry = int(parts[1]) / 1000
        if expiry < now or expiry > now + self._ttl_s + 1:
            return None
        found = self._registry._token_hash(int(parts[0]))
        if found is None:
            return None
        reviewer, token_hash, not_before = found
        if expiry - self._ttl_s <= not_before:
            return None
        body = f"{parts[0]}.{parts[1]}"
        expected = _b64(hmac.digest(self._key(token_hash), body.encode(), "sha256"))
        return reviewer if hmac.compare_digest(expected, parts[2]) else None

    def csrf_token(self, cookie: str) -> str:
        """The form token for a session: HMAC of the cookie, so a cross-site page cannot know it."""
        return _b64(hmac.digest(self._secret + b"csrf", cookie.encode(), "sha256"))

    def csrf_ok(self, cookie: str, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token(cookie), token)
