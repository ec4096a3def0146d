"""Put synthetic LLM traffic, or a user's own JSONL file, on a Kafka topic.

The demo, the benchmarks and people trying Watchkeeper against their own broker all need load on a
topic; this is the one place that knows how to send it. `produce_to_kafka` is the function behind the
command: it sends every message, flushes, and raises if any message was not acknowledged, so a caller
that gets a count back knows that many messages are on the topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from monitor.synthetic.generator import Generated


class ProduceError(RuntimeError):
    """Some messages were not acknowledged by the broker."""


def produce_to_kafka(
    bootstrap_servers: str | Sequence[str],
    topic: str,
    generated: Iterable[Generated | bytes],
    rate: float = 0.0,
    compression: str | None = None,
    connect_timeout_s: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> int:
    """Send ``generated`` to ``topic`` and return how many messages the broker acknowledged.

    Items are `Generated` (value and key) or plain ``bytes`` values (no key). ``rate`` > 0 paces sending
    to that many messages per second of wall time (the schedule catches up after a slow moment rather
    than drifting); 0 sends as fast as the producer can batch. Raises `ProduceError` when any message
    failed, after flushing the rest; a broker not reachable within ``connect_timeout_s`` raises
    kafka-python's ``NoBrokersAvailable``. ``security`` is kafka-python's TLS/SASL arguments
    (`KafkaConfig.client_options`).
    """
    servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
    producer = KafkaProducer(
        bootstrap_servers=servers,
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        compression_type=compression,
        bootstrap_timeout_ms=int(connect_timeout_s * 1000),
        **(security or {}),
    )
    failures: list[BaseException] = []
    sent = 0
    started = time.monotonic()
    try:
        for item in generated:
            if isinstance(item, Generated):
                future = producer.send(topic, value=item.value, key=item.key)
            else:
                future = producer.send(topic, value=item)
            future.add_errback(failures.append)
            sent += 1
            if rate > 0:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0.001:
                    time.sleep(ahead)
            if failures:
                break
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise ProduceError(f"{len(failures)} of {sent} messages to {topic!r} failed; first: {failures[0]!r}")
    return sent


def read_lines(path: str | Path) -> Iterator[bytes]:
    """A JSONL file's lines as raw bytes, without the line break; blank lines are skipped."""
    with open(path, "rb") as f:
        for line in f:
            line = line.removesuffix(b"\n")
            if line.strip():
                yield line


class Counting:
    """Passes generated messages through and counts the malformed ones for the summary."""

    def __init__(self, items: Iterable[Generated]) -> None:
        self._items = items
        self.malformed = 0

    def __iter__(self) -> Iterator[Generated]:
        for item in self._items:
            self.malformed += item.truth.is_malformed
            yield item
