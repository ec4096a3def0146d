"""Who is reviewing: per-reviewer tokens, stored hashed, and the session cookie that follows a login.

A token (``wkr_`` + 43 random URL-safe characters) is printed once by ``watchkeeper reviewer add NAME``;
the database keeps only ``sha256$salt$digest``. Tokens carry 256 random bits, so a salted SHA-256 is as
strong as a slow KDF here, and cheap enough to check on every ``Authorization: Bearer`` request.

A session cookie is ``reviewer_id.expiry.signature``: an HMAC keyed by the reviewer's stored token hash
(and the optional configured secret). Nothing is kept server-side, any daemon can check it, and disabling
the reviewer or replacing their token ends every session at once. The CSRF token of a form is derived
from the cookie with the same key.
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

from monitor.storage.schema import reviewers

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

    def _token_hash(self, reviewer_id: int) -> tuple[Reviewer, str] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(reviewers).where(reviewers.c.id == reviewer_id,
                                                       reviewers.c.active.is_(True))).first()
        if row is None:
            return None
        return Reviewer(row.id, row.name, row.active, row.created_at), row.token_hash


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Sessions:
    """Signed session cookies and the CSRF tokens derived from them."""

    def __init__(self, registry: ReviewerRegistry, secret: bytes = b"", ttl_s: float = 12 * 3600) -> None:
        self._registry = registry
        self._secret = secret
        self._ttl_s = ttl_s

    def _key(self, token_hash: str) -> bytes:
        return hashlib.sha256(self._secret + b"\x00" + token_hash.encode()).digest()

    def issue(self, reviewer: Reviewer, now: float | None = None) -> str:
        found = self._registry._token_hash(reviewer.id)
        if found is None:
            raise ReviewerError("reviewer is not active")
        expiry = int((now or time.time()) + self._ttl_s)
        body = f"{reviewer.id}.{expiry}"
        return f"{body}.{_b64(hmac.digest(self._key(found[1]), body.encode(), 'sha256'))}"

    def check(self, cookie: str, now: float | None = None) -> Reviewer | None:
        """The reviewer a cookie belongs to, or None if it is forged, expired or revoked."""
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        if int(parts[1]) < (now or time.time()):
            return None
        found = self._registry._token_hash(int(parts[0]))
        if found is None:
            return None
        reviewer, token_hash = found
        body = f"{parts[0]}.{parts[1]}"
        expected = _b64(hmac.digest(self._key(token_hash), body.encode(), "sha256"))
        return reviewer if hmac.compare_digest(expected, parts[2]) else None

    def csrf_token(self, cookie: str) -> str:
        """The form token for a session: HMAC of the cookie, so a cross-site page cannot know it."""
        return _b64(hmac.digest(self._secret + b"csrf", cookie.encode(), "sha256"))

    def csrf_ok(self, cookie: str, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token(cookie), token)
