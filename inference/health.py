"""What a reference server says about its own health: ``/health`` and the Prometheus text of ``/metrics``.

vLLM's OpenAI server exposes (among many) ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``
(gauges), ``vllm:kv_cache_usage_perc`` (a gauge, 0–1; ``gpu_cache_usage_perc`` in older releases),
``vllm:time_to_first_token_seconds`` and ``vllm:e2e_request_latency_seconds`` (histograms),
``vllm:request_success_total`` (a counter labelled by ``finished_reason``) and ``vllm:generation_tokens_total``.
`scrape` reads both endpoints into one `Scrape` of cumulative values; `interval` turns two scrapes of the same
server into what happened between them (requests finished, latency sums and quantiles, tokens), treating
counters that went down as a server restart. Servers without ``/metrics`` (llama.cpp) still report up/down.

Knows nothing of Watchkeeper's storage: `monitor.jobs.reference_health` stores the results.

>>> text = '''# TYPE vllm:num_requests_waiting gauge
... vllm:num_requests_waiting{model_name="m"} 3.0
... # TYPE vllm:e2e_request_latency_seconds histogram
... vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="m"} 2.0
... vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 4.0
... vllm:e2e_request_latency_seconds_count{model_name="m"} 4.0
... vllm:e2e_request_latency_seconds_sum{model_name="m"} 6.0
... '''
>>> s = parse_metrics(text)
>>> s.gauges["waiting"], s.histograms["e2e"].count, s.histograms["e2e"].buckets
(3.0, 4.0, ((1.0, 2.0), (inf, 4.0)))
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",
}
HISTOGRAMS = {
    "vllm:e2e_request_latency_seconds": "e2e",
    "vllm:time_to_first_token_seconds": "ttft",
}
COUNTERS = {
    "vllm:generation_tokens": "generation_tokens",
    "vllm:prompt_tokens": "prompt_tokens",
}
SUCCESS = "vllm:request_success"


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram summed over label sets: ``buckets`` are ``(upper bound, cumulative count)``."""

    count: float
    total: float
    buckets: tuple[tuple[float, float], ...]


@dataclass(slots=True)
class Scrape:
    """One look at a server. ``up`` is ``/health`` answering 200 (or 404 on servers without it, when
    ``/v1/models`` answers); the rest is cumulative, empty when ``/metrics`` is missing."""

    up: bool = True
    error: str | None = None
    gauges: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    """Successful requests by finish reason (``stop``, ``length``, ``abort``…), cumulative."""
    monotonic: float = field(default_factory=time.monotonic)


def parse_metrics(text: str) -> Scrape:
    """The metrics this module knows from Prometheus exposition text, summed over label sets (several
    models or engines on one server add up). Unknown metrics are ignored. Samples are matched by their own
    name (``…_bucket``, ``…_total``), not by the family the parser put them in: how the parser groups a
    counter depends on its ``# TYPE`` line, which servers write differently."""
    scrape = Scrape()
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if name in GAUGES:
                key = GAUGES[name]
                scrape.gauges[key] = scrape.gauges.get(key, 0.0) + s.value
                continue
            base, _, suffix = name.rpartition("_")
            if base in HISTOGRAMS:
                key = HISTOGRAMS[base]
                acc = sums.setdefault(key, [0.0, 0.0])
                if suffix == "bucket":
                    le = float(s.labels["le"])
                    found = buckets.setdefault(key, {})
                    found[le] = found.get(le, 0.0) + s.value
                elif suffix == "count":
                    acc[0] += s.value
                elif suffix == "sum":
                    acc[1] += s.value
            elif suffix == "total" and base in COUNTERS:
                key = COUNTERS[base]
                scrape.counters[key] = scrape.counters.get(key, 0.0) + s.value
            elif suffix == "total" and base == SUCCESS:
                reason = s.labels.get("finished_reason", "unknown")
                scrape.finished[reason] = scrape.finished.get(reason, 0.0) + s.value
    for key, (count, total) in sums.items():
        scrape.histograms[key] = Histogram(count, total, tuple(sorted(buckets.get(key, {}).items())))
    return scrape


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket holding the rank; None without data.

    >>> quantile(0.5, ((0.5, 0.0), (1.0, 10.0), (math.inf, 10.0)))
    0.75
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = upper, cumulative
    return lower


def _delta(now: float, before: float | None) -> float:
    """A counter's increase; a counter that went down means the server restarted and counts from zero."""
    return now if before is None or now < before else now - before


def interval(now: Scrape, before: Scrape | None) -> dict[str, Any]:
    """What happened between two scrapes of one server (or since its start when ``before`` is None or it
    restarted): requests finished, e2e/ttft latency sum and p50/p95 (seconds), tokens, finish reasons."""
    out: dict[str, Any] = {}
    for key, hist in now.histograms.items():
        old = before.histograms.get(key) if before else None
        restarted = old is not None and hist.count < old.count
        base = None if old is None or restarted else old
        n = _delta(hist.count, base.count if base else None)
        old_buckets = dict(base.buckets) if base else {}
        diff = tuple((le, max(0.0, c - old_buckets.get(le, 0.0))) for le, c in hist.buckets)
        out[f"{key}_n"] = n
        out[f"{key}_sum_s"] = _delta(hist.total, base.total if base else None)
        out[f"{key}_p50_s"] = quantile(0.5, diff) if n > 0 else None
        out[f"{key}_p95_s"] = quantile(0.95, diff) if n > 0 else None
    for key, value in now.counters.items():
        out[key] = _delta(value, before.counters.get(key) if before else None)
    out["finished"] = {reason: _delta(v, before.finished.get(reason) if before else None)
                       for reason, v in now.finished.items()}
    return out


async def scrape(http: httpx.AsyncClient, timeout_s: float = 5.0) -> Scrape:
    """``/health`` then ``/metrics`` of the server ``http`` points at (its ``base_url``). Never raises for
    the server's sake: an unreachable or unhealthy server is ``Scrape(up=False, error=...)``."""
    try:
        async with asyncio.timeout(timeout_s):
            health = await http.get("/health")
            if health.status_code == 404:  # llama.cpp: no /health; up if it lists its models
                health = await http.get("/v1/models")
            if health.status_code != 200:
                return Scrape(up=False, error=f"/health answered {health.status_code}")
            metrics = await http.get("/metrics")
    except (httpx.HTTPError, TimeoutError) as exc:
        return Scrape(up=False, error=f"unreachable: {type(exc).__name__}")
    if metrics.status_code != 200:
        return Scrape()
    try:
        return parse_metrics(metrics.text)
    except ValueError as exc:
        return Scrape(error=f"/metrics unreadable: {str(exc)[:200]}")


def gpu_stats() -> list[dict[str, float]] | None:
    """Memory and utilisation of this host's GPUs through NVML (``nvidia-ml-py``), or None where there is no
    NVML or no GPU — the normal case on a CPU host, not an error."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded: no GPU here
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            out.append({"index": i, "memory_used_bytes": float(memory.used),
                        "memory_total_bytes": float(memory.total), "utilization": util.gpu / 100.0})
        return out or None
    finally:
        pynvml.nvmlShutdown()
