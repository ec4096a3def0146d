"""A real HTTP server on 127.0.0.1 that plays Slack: an incoming webhook and the Web API methods we use.

Endpoints: ``POST /services/T/B/X`` (webhook), ``POST /api/chat.postMessage``, ``POST /api/chat.update``,
``GET|POST /api/conversations.history``. Web API calls must carry ``Authorization: Bearer <token>``.

Faults are scripted, one per coming request, with `fail_next`: ``("status", 500)``, ``("ratelimit", 2)``
(429 with ``Retry-After: 2``), ``("timeout", 5)`` (answer only after 5 s), ``("accept_then_stall", 30)``
(record the message, then answer only after 30 s — a client killed meanwhile is the crash-after-send case).
``down = True`` answers ``down_status`` (503) to everything until cleared. `refuse` closes the listening
socket (connections refused, as when Slack's edge is unreachable) until `accept` opens it again on the same
port.

>>> with FakeSlack() as slack:
...     import urllib.request, json
...     req = urllib.request.Request(slack.webhook_url, data=json.dumps({"text": "hi"}).encode(),
...                                  headers={"Content-Type": "application/json"}, method="POST")
...     urllib.request.urlopen(req).read(), [m["text"] for m in slack.messages]
(b'ok', ['hi'])
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeSlack:
    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []
        """Every message posted (webhook or chat.postMessage), in arrival order, with later edits applied."""
        self.edits: list[dict[str, Any]] = []
        """Every chat.update call that succeeded."""
        self.requests: list[tuple[str, int]] = []
        """(path, status answered) for every request, failures included."""
        self.down = False
        self.down_status = 503
        self._faults: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()
        self._seq = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/services/T000/B000/XXXX"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def fail_next(self, *faults: tuple[str, float]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` messages have arrived (or the timeout); returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.02)
        return list(self.messages)

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def refuse(self) -> None:
        """Stop listening: every connection is refused until `accept`."""
        self._server.shutdown()
        self._server.server_close()

    def accept(self) -> None:
        """Listen again on the same port after `refuse`."""
        port = self._server.server_address[1]
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- request handling --------------------------------------------------------------------------------

    def _next_fault(self) -> tuple[str, float] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _new_ts(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{1_700_000_000 + self._seq}.{self._seq:06d}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        slack = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                slack.requests.append((urlparse(self.path).path, status))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    return json.loads(raw or b"{}")
                return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

            def do_GET(self) -> None:
                self._dispatch({k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()})

            def do_POST(self) -> None:
                self._dispatch(self._body())

            def _dispatch(self, body: dict[str, Any]) -> None:
                path = urlparse(self.path).path
                webhook = path.startswith("/services/")
                if slack.down:
                    down = b"service unavailable" if webhook else {"ok": False, "error": "fatal_error"}
                    return self._reply(slack.down_status, down)
                fault = slack._next_fault()
                if fault is not None:
                    kind, arg = fault
                    if kind == "status":
                        return self._reply(int(arg), b"server error" if webhook else {"ok": False,
                                                                                      "error": "internal_error"})
                    if kind == "ratelimit":
                        return self._reply(429, b"rate_limited" if webhook else {"ok": False, "error": "ratelimited"},
                                           {"Retry-After": str(int(arg))})
                    if kind == "timeout":
                        time.sleep(arg)
                        return self._reply(500, b"late" if webhook else {"ok": False, "error": "request_timeout"})
                    if kind == "accept_then_stall":
                        answer = self._handle(path, body, webhook)
                        time.sleep(arg)
                        return self._reply(*answer)
                return self._reply(*self._handle(path, body, webhook))

            def _handle(self, path: str, body: dict[str, Any], webhook: bool) -> tuple[int, Any]:
                if webhook:
                    slack.messages.append({"via": "webhook", "text": body.get("text"), "blocks": body.get("blocks"),
                                           "ts": slack._new_ts()})
                    return 200, b"ok"
                if self.headers.get("Authorization") != f"Bearer {slack.token}":
                    return 200, {"ok": False, "error": "invalid_auth"}
                method = path.removeprefix("/api/")
                if method == "chat.postMessage":
                    if not body.get("channel"):
                        return 200, {"ok": False, "error": "channel_not_found"}
                    name = body["channel"]  # a channel id (C…) or a #name, which Slack resolves to an id
                    channel = name if name.startswith("C") else "C" + str(abs(hash(name)) % 10**8)
                    msg = {"via": "api", "channel": channel, "channel_name": body["channel"], "ts": slack._new_ts(),
                           "text": body.get("text"), "blocks": body.get("blocks"), "metadata": body.get("metadata")}
                    slack.messages.append(msg)
                    return 200, {"ok": True, "channel": channel, "ts": msg["ts"]}
                if method == "chat.update":
                    for msg in slack.messages:
                        if msg.get("channel") == body.get("channel") and msg["ts"] == body.get("ts"):
                            msg.update(text=body.get("text"), blocks=body.get("blocks"), edited=True)
                            slack.edits.append(dict(body))
                            return 200, {"ok": True, "channel": msg["channel"], "ts": msg["ts"]}
                    return 200, {"ok": False, "error": "message_not_found"}
                if method == "conversations.history":
                    wanted = body.get("channel")
                    found = [m for m in slack.messages if wanted in (m.get("channel"), m.get("channel_name"))]
                    return 200, {"ok": True, "messages": list(reversed(found)), "has_more": False}
                return 404, {"ok": False, "error": "unknown_method"}

        return Handler
