"""The ops endpoint: ``/metrics`` (Prometheus text format), ``/livez`` and ``/readyz`` on one port.

It runs in the process that runs the scheduler (the daemon, or the supervisor of ``workers > 1``), on a
thread of its own. In multiprocess mode it sums the workers' files; either way it adds the database-derived
families (`monitor.ops.state`) and ``watchkeeper_build_info``. Probes answer JSON: each check and ``ok`` or
why not, 200 or 503.
"""

from __future__ import annotations

import json
import logging
import platform
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from monitor.ops import multiproc
from monitor.ops.health import Health, Verdict

log = logging.getLogger(__name__)


def build_version() -> str:
    try:
        return version("watchkeeper")
    except PackageNotFoundError:
        return "unknown"


class _BuildInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("watchkeeper_build_info", "Always 1; the labels say which build is running.",
                                 labels=["version", "python"])
        info.add_metric([build_version(), platform.python_version()], 1)
        yield info


class _Delegate(Collector):
    """This process's own metrics (the default registry) inside the endpoint's registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def build_registry(*extra: Collector) -> CollectorRegistry:
    """The registry ``/metrics`` serves: the workers' files in multiprocess mode, else this process's
    metrics; then ``extra`` (the database-derived state) and the build info."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc.enabled():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Delegate())
    for collector in (*extra, _BuildInfo()):
        registry.register(collector)
    return registry


def gauge_value(registry: CollectorRegistry, name: str) -> float:
    """The sum of a gauge's samples as ``/metrics`` would show it (0 when absent)."""
    total = 0.0
    for metric in registry.collect():
        if metric.name == name:
            total += sum(sample.value for sample in metric.samples if sample.name == name)
    return total


class OpsServer:
    """``start()`` binds and serves on a daemon thread; ``stop()`` closes. ``port`` is the bound port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        self.registry = registry
        self.health = health
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path in ("/livez", "/readyz"):
                    verdict = server.health.live() if path == "/livez" else server.health.ready()
                    self._verdict(verdict)
                else:
                    self._reply(404, b"not found: try /metrics, /livez or /readyz\n", "text/plain")

            def _verdict(self, verdict: Verdict) -> None:
                body = json.dumps({"ok": verdict.ok, "checks": verdict.checks}).encode() + b"\n"
                self._reply(200 if verdict.ok else 503, body, "application/json")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ops-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
