"""A real OpenAI-compatible HTTP server on 127.0.0.1 whose failures follow a script.

It stands in for a misbehaving vLLM: each POST takes the next step of the script (``ok``, ``slow``, ``hang``,
``429``, ``500``, ``400``, ``malformed``, ``drop``); once the script is used up every request is answered ``ok`` (or
with ``then``). Answers echo the prompt, so a test can tell which request got which answer.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def echo(prompt: str) -> str:
    return f"You asked: {prompt}"


@dataclass
class Script:
    steps: list[str] = field(default_factory=list)
    then: str = "ok"
    slow_s: float = 2.0
    health: int = 200
    metrics: str | None = None
    """Prometheus text served at ``/metrics`` (404 when None, as llama.cpp)."""
    models: tuple[str, ...] = ("ref-model",)
    answer: Callable[[str], str] = echo
    release: threading.Event = field(default_factory=threading.Event)
    """``hang`` steps wait for this (at most a minute), then answer."""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    auth: str | None = None
    """The ``Authorization`` header every request must carry (401 otherwise), as a proxy in front of vLLM."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step(self, path: str, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests.append((path, body))
            return self.steps.pop(0) if self.steps else self.then


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _refused(self) -> bool:
        if self.script.auth is None or self.headers.get("Authorization") == self.script.auth:
            return False
        self._send(401, b'{"error": "unauthorized"}', {"WWW-Authenticate": 'Basic realm="vllm"'})
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
        if self.path == "/health":
            self._send(self.script.health, b"{}")
        elif self.path == "/metrics" and self.script.metrics is not None:
            self._send(200, self.script.metrics.encode())
        elif self.path == "/v1/models":
            data = [{"id": m, "object": "model"} for m in self.script.models]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self._refused():
            return
        step = self.script.next_step(self.path, body)
        if step == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
            self.close_connection = True
            return
        if step == "slow":
            time.sleep(self.script.slow_s)
        if step == "hang":
            self.script.release.wait(60)
        if step in ("429", "500", "400"):
            headers = {"Retry-After": "0"} if step == "429" else None
            self._send(int(step), b'{"error": {"message": "scripted failure"}}', headers)
            return
        if step == "malformed":
            self._send(200, b'{"choices": [{"text": "cut off')
            return
        chat = self.path == "/v1/chat/completions"
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        text = self.script.answer(prompt)
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                  if chat else {"index": 0, "text": text, "finish_reason": "stop"})
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        self._send(200, json.dumps({"choices": [choice], "usage": usage, "model": body["model"]}).encode())


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    """Serve ``script`` on a free loopback port; yields the base URL."""
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
