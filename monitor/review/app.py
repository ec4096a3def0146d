"""The review page: a small server-rendered Starlette app over `ReviewQueue`.

Routes: ``GET /`` (the reviewer's queue and the sample to label now), ``GET /samples/{id}``,
``POST /samples/{id}/label``, ``GET /estimates`` (accuracy and agreement), ``GET /export?format=csv|jsonl``
(the reviewer's own labels), ``GET|POST /login``, ``POST /logout``. Every route but login needs a reviewer:
a session cookie (HttpOnly, SameSite=Strict) set by the login form, or ``Authorization: Bearer <token>``.
A form posted with the cookie must carry the session's CSRF token; a bad bearer token gets a bare 401.

`ReviewServer` runs the app with uvicorn in a background thread (the daemon's ``serve_in_daemon`` and the
tests); ``watchkeeper review serve`` runs it in the foreground.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.config import Config
from monitor.review.auth import LoginLimit, Reviewer, ReviewerRegistry, Sessions, service_secret
from monitor.review.estimates import accuracy_estimates, agreement
from monitor.review.export import export_filename, write_labels
from monitor.review.queue import LabelError, ReviewQueue

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "wk_session"
LOGIN_FAILURES_ALLOWED = 10
"""Failed sign-ins one client address may make per `LOGIN_WINDOW_S` before it gets 429s."""
LOGIN_WINDOW_S = 300.0
MAX_SAMPLE_ID = 2**63 - 1
LOGIN_COOKIE = "wk_login"
_RESERVED_KEYS = set("jn")
_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000")
"""Sent over HTTPS only (directly, or from a trusted proxy that says so)."""


class _SecurityHeaders:
    """Adds CSP and no-store headers to every response: pages hold prompts and must not be cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = [*_HEADERS, _HSTS] if scope.get("scheme") == "https" else _HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def shortcut_keys(tags: list[str]) -> dict[str, str]:
    """A keyboard key per tag: its first letter not yet taken (``j`` and ``n`` are navigation).

    >>> shortcut_keys(["hallucination", "toxic", "harm"])
    {'hallucination': 'h', 'toxic': 't', 'harm': 'a'}
    """
    used = set(_RESERVED_KEYS)
    keys = {}
    for tag in tags:
        for char in tag.lower():
            if char.isalpha() and char not in used:
                keys[tag] = char
                used.add(char)
                break
    return keys


Handler = Callable[[Request, Reviewer, str | None], Awaitable[Response]]


class ReviewApp:
    """Builds the Starlette app; ``app`` is what uvicorn serves."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config
        review = config.review
        self.registry = ReviewerRegistry(engine)
        secret = (review.session_secret.get_secret_value().encode() if review.session_secret
                  else service_secret(engine, "review_session"))
        self.sessions = Sessions(self.registry, secret, review.session_hours * 3600)
        self.login_limit = LoginLimit(LOGIN_FAILURES_ALLOWED, LOGIN_WINDOW_S)
        self.cipher = config.storage.cipher()
        self.queue = ReviewQueue(engine, review, full_text=config.pipeline.store_text == "full", cipher=self.cipher)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
        self.templates = Jinja2Templates(env=env)
        self.tag_keys = shortcut_keys(review.tags)
        routes = [
            Route("/", self._auth(self.index)),
            Route("/samples/{sample_id:int}", self._auth(self.sample)),
            Route("/samples/{sample_id:int}/label", self._auth(self.label), methods=["POST"]),
            Route("/records/{record_id}", self._auth(self.record)),
            Route("/estimates", self._auth(self.estimates)),
            Route("/export", self._auth(self.export)),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self._auth(self.logout), methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.app = _SecurityHeaders(Starlette(routes=routes))

    # -- authentication -------------------------------------------------------------------------------------
    def _auth(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization")
            if header is not None:
                scheme, _, token = header.partition(" ")
                reviewer = None
                if scheme.lower() == "bearer":
                    reviewer = await run_in_threadpool(self.registry.authenticate, token.strip())
                if reviewer is None:
                    return PlainTextResponse("invalid token", 401, headers={"WWW-Authenticate": "Bearer"})
                return await handler(request, reviewer, None)
            cookie = request.cookies.get(SESSION_COOKIE)
            reviewer = await run_in_threadpool(self.sessions.check, cookie) if cookie else None
            if reviewer is None:
                if request.method == "GET":
                    return RedirectResponse("/login", 303)
                return PlainTextResponse("not signed in", 401)
            return await handler(request, reviewer, cookie)

        return endpoint

    async def _form(self, request: Request, cookie: str | None) -> Any | None:
        """The posted form, or None when a cookie-authenticated post lacks the session's CSRF token."""
        form = await request.form()
        if cookie is not None and not self.sessions.csrf_ok(cookie, str(form.get("csrf", ""))):
            return None
        return form

    def _page(self, request: Request, name: str, reviewer: Reviewer | None, cookie: str | None,
              status: int = 200, **context: Any) -> Response:
        context.update(
            reviewer=reviewer, csrf=self.sessions.csrf_token(cookie) if cookie else "",
            review=self.config.review, tag_keys=self.tag_keys,
        )
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    async def login_form(self, request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        response = self._page(request, "login.html", None, None, nonce=nonce, error=None)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=600, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        wait_s = self.login_limit.wait_s(client)
        if wait_s > 0:
            return PlainTextResponse("too many failed sign-ins; try again later", 429,
                                     headers={"Retry-After": str(int(wait_s) + 1)})
        form = await request.form()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        token = str(form.get("token", "")).strip()
        reviewer = None
        if nonce and secrets.compare_digest(nonce, str(form.get("nonce", ""))):
            reviewer = await run_in_threadpool(self.registry.authenticate, token)
        if reviewer is None:
            self.login_limit.failed(client)
            log.info("review page: failed login from %s", client)
            retry = secrets.token_urlsafe(16)
            response = self._page(request, "login.html", None, None, status=401, nonce=retry,
                                  error="Unknown or disabled token.")
            response.set_cookie(LOGIN_COOKIE, retry, max_age=600, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
            return response
        cookie = await run_in_threadpool(self.sessions.issue, reviewer)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=int(self.config.review.session_hours * 3600),
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE)
        return response

    async def logout(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        if await self._form(request, cookie) is None:
            return PlainTextResponse("bad form token", 403)
        await run_in_threadpool(self.registry.end_sessions, reviewer.id)  # this cookie, and every other one
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- pages ----------------------------------------------------------------------------------------------
    async def index(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        await run_in_threadpool(self.queue.fill, reviewer.id)
        pending = await run_in_threadpool(self.queue.pending, reviewer.id)
        current = pending[0].sample_id if pending else None
        return await self._sample_page(request, reviewer, cookie, current, pending)

    async def sample(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        if request.path_params["sample_id"] > MAX_SAMPLE_ID:
            return PlainTextResponse("no such sample in your queue", 404)
        pending = await run_in_threadpool(self.queue.pending, reviewer.id)
        return await self._sample_page(request, reviewer, cookie, request.path_params["sample_id"], pending)

    async def _sample_page(self, request: Request, reviewer: Reviewer, cookie: str | None,
                           sample_id: int | None, pending: list[Any], error: str | None = None,
                           status: int = 200) -> Response:
        view = None
        if sample_id is not None:
            view = await run_in_threadpool(self.queue.view, reviewer.id, sample_id)
            if view is None:
                return PlainTextResponse("no such sample in your queue", 404)
        done = await run_in_threadpool(self.queue.done, reviewer.id)
        skip = await run_in_threadpool(self.queue.next_after, reviewer.id, sample_id) if view else None
        return self._page(request, "queue.html", reviewer, cookie, status=status, view=view, pending=pending,
                          done=done, skip=skip, error=error)

    async def label(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        sample_id = request.path_params["sample_id"]
        if sample_id > MAX_SAMPLE_ID:
            return PlainTextResponse("no such sample in your queue", 404)
        form = await self._form(request, cookie)
        if form is None:
            return PlainTextResponse("bad form token", 403)
        verdicts, note = form.getlist("verdict"), form.get("note", "")
        if len(verdicts) != 1 or not isinstance(verdicts[0], str) or not isinstance(note, str) \
                or not all(isinstance(t, str) for t in form.getlist("tag")):
            return PlainTextResponse("one verdict, text tags and a text note are expected", 400)
        verdict = verdicts[0]
        tags = [str(t) for t in form.getlist("tag")]
        try:
            ok = await run_in_threadpool(self.queue.label, reviewer.id, sample_id, verdict, tags, note)
        except LabelError as exc:
            pending = await run_in_threadpool(self.queue.pending, reviewer.id)
            return await self._sample_page(request, reviewer, cookie, sample_id, pending, str(exc), 400)
        if not ok:
            return PlainTextResponse("no such sample in your queue", 404)
        return RedirectResponse("/", 303)

    async def record(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        """Where an alert's example links point: the record's sample in this reviewer's queue."""
        sample_id = await run_in_threadpool(self.queue.sample_of, reviewer.id, request.path_params["record_id"])
        if sample_id is None:
            return PlainTextResponse("this record is not in your review queue", 404)
        return RedirectResponse(f"/samples/{sample_id}", 303)

    async def estimates(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        days = self.config.review.estimate_days
        end = datetime.now(UTC)
        start, previous = end - timedelta(days=days), end - timedelta(days=2 * days)
        confidence = self.config.review.confidence

        def compute() -> dict[str, Any]:
            return {
                "by_model": accuracy_estimates(self.engine, start, end, ("model",), confidence),
                "by_app": accuracy_estimates(self.engine, start, end, ("model", "app"), confidence),
                "previous": {tuple(e.group.values()): e for e in
                             accuracy_estimates(self.engine, previous, start, ("model",), confidence)},
                "agreement": agreement(self.engine, start, end),
            }

        data = await run_in_threadpool(compute)
        return self._page(request, "estimates.html", reviewer, cookie, start=start, end=end, days=days,
                          confidence=confidence, **data)

    async def export(self, request: Request, reviewer: Reviewer, cookie: str | None) -> Response:
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "jsonl"):
            return PlainTextResponse("format must be csv or jsonl", 400)

        def render() -> str:
            out = io.StringIO()
            write_labels(self.engine, fmt, out, reviewer_id=reviewer.id, cipher=self.cipher)  # type: ignore[arg-type]
            return out.getvalue()

        body = await run_in_threadpool(render)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{export_filename(fmt)}"'})  # type: ignore[arg-type]


def create_app(engine: Engine, config: Config) -> ASGIApp:
    """The review page as an ASGI app."""
    return ReviewApp(engine, config).app


def uvicorn_config(engine: Engine, config: Config, *, host: str, port: int, certfile: str | None,
                   keyfile: str | None, **options: Any) -> uvicorn.Config:
    """How the page is served, by the daemon's `ReviewServer` and by ``watchkeeper review serve`` alike: no
    access log, HTTPS when a certificate is given, forwarded headers believed from the trusted proxies only."""
    return uvicorn.Config(create_app(engine, config), host=host, port=port, log_level="warning",
                          ssl_certfile=certfile, ssl_keyfile=keyfile, proxy_headers=True,
                          forwarded_allow_ips=",".join(config.review.trusted_proxies), **options)


class ReviewServer:
    """The review page served by uvicorn on a background thread; `start` returns once it listens.

    ``port=0`` picks a free port; `port` tells which after `start`.
    """

    def __init__(self, engine: Engine, config: Config, host: str | None = None, port: int | None = None):
        review = config.review
        self._uvicorn = uvicorn.Server(uvicorn_config(
            engine, config, host=host or review.host, port=review.port if port is None else port,
            certfile=review.certfile, keyfile=review.keyfile, lifespan="off"))
        self.url = f"{'https' if review.certfile else 'http'}://{host or review.host}"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        servers = getattr(self._uvicorn, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self._uvicorn.config.port

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._uvicorn.serve()),
                                        name="review-server", daemon=True)
        self._thread.start()
        deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
        while not self._uvicorn.started:
            if not self._thread.is_alive() or datetime.now(UTC) > deadline:
                raise RuntimeError("review server did not start (port in use?)")
            threading.Event().wait(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
