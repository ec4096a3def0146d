"""Every HTTP client Watchkeeper opens verifies the server's certificate: a server whose certificate the system
does not trust is refused by the reference client, the reference's health/metrics scrape and both Slack sinks,
and accepted once that client's CA file option names the CA. Real HTTPS on loopback, certificates made here."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from inference.base import TransientError
from inference.client import EndpointSettings, OpenAIBackend
from monitor.alerts.outbox import DeliveryError, Outgoing
from monitor.alerts.slack import SlackApiSink, SlackWebhookSink
from monitor.config import Config, ReferenceConfig, ShadowConfig
from monitor.jobs.reference_health import ReferenceHealth
from tests.tls_certs import make_certs


class _Handler(BaseHTTPRequestHandler):
    def _send(self, body: bytes, kind: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._send(orjson.dumps({"data": [{"id": "m"}]}))
        elif self.path == "/metrics":
            self._send(b"vllm:num_requests_waiting 0\n", "text/plain")
        else:
            self._send(b"ok", "text/plain")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "chat.postMessage" in self.path:
            self._send(orjson.dumps({"ok": True, "channel": "C1", "ts": "1.0"}))
        else:
            self._send(b"ok", "text/plain")

    def log_message(self, *args: object) -> None:
        pass


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # refused handshakes are what these tests cause


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Base URL of an HTTPS server with a certificate from a private CA, and that CA's PEM file."""
    certs = make_certs(tmp_path_factory.mktemp("https"))
    server = _Quiet(("127.0.0.1", 0), _Handler)
    server.socket = certs.server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://localhost:{server.server_address[1]}", certs.ca_file
    finally:
        server.shutdown()
        server.server_close()


def _check(url: str, ca_file: Path | None) -> None:
    async def go() -> None:
        backend = OpenAIBackend(EndpointSettings(url=url, model="m", timeout_s=5,
                                                 ca_file=str(ca_file) if ca_file else None))
        try:
            await backend.check()
        finally:
            await backend.aclose()
    asyncio.run(go())


def test_the_reference_client_verifies_the_certificate(https: tuple[str, Path]) -> None:
    url, ca = https
    with pytest.raises(TransientError, match="unreachable"):
        _check(url, None)
    _check(url, ca)


def test_the_health_and_metrics_scrape_verifies_the_certificate(https: tuple[str, Path], engine) -> None:  # type: ignore[no-untyped-def]
    url, ca = https
    for ca_file, up in ((None, False), (str(ca), True)):
        config = Config(shadow=ShadowConfig(references=[ReferenceConfig(model="m", url=url, ca_file=ca_file)]))
        [row] = ReferenceHealth(config, gpu=False).scrape_once(engine)
        assert row["up"] is up, row["error"]


def test_the_slack_sinks_verify_the_certificate(https: tuple[str, Path]) -> None:
    url, ca = https
    message = Outgoing(1, "slack-webhook", "#c", "firing", {"text": "hello"}, datetime.now(UTC))
    with pytest.raises(DeliveryError):
        SlackWebhookSink(f"{url}/hooks/x", timeout=5).send(message)
    SlackWebhookSink(f"{url}/hooks/x", timeout=5, ca_file=str(ca)).send(message)
    with pytest.raises(DeliveryError):
        SlackApiSink("xoxb-test", base_url=f"{url}/api/", timeout=5).send(message)
    assert SlackApiSink("xoxb-test", base_url=f"{url}/api/", timeout=5, ca_file=str(ca)).send(message) == "C1:1.0"
