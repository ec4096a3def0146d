"""`watchkeeper produce`: synthetic traffic (with incidents and malformed messages), or a user's own JSONL
file, onto a Kafka topic (`monitor.synthetic.produce` does the sending)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from monitor.cli.options import config_option, load

if TYPE_CHECKING:
    from monitor.synthetic.generator import Generated, Incident

DEFAULT_TOPIC = "llm-logs"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _default_topic() -> str:
    topics = [t.strip() for t in os.environ.get("WATCHKEEPER_KAFKA_TOPICS", "").split(",") if t.strip()]
    return topics[0] if topics else DEFAULT_TOPIC


def _incidents(_ctx: click.Context, _param: click.Parameter, specs: tuple[str, ...]) -> list[Incident]:
    from monitor.synthetic.generator import parse_incident

    try:
        return [parse_incident(spec) for spec in specs]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("produce")
@click.option("--bootstrap-servers", envvar="WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS", default=DEFAULT_BOOTSTRAP,
              show_default=True, help="Comma-separated host:port (env WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS).")
@click.option("--topic", default=None,
              help=f"Topic (default: first of WATCHKEEPER_KAFKA_TOPICS, else {DEFAULT_TOPIC}).")
@click.option("-n", "--count", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="How many synthetic messages.")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Messages per second in real time; 0 = as fast as possible.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--malformed-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of deliberately broken messages (dead letters).")
@click.option("--incident", "incidents", multiple=True, callback=_incidents, metavar="SPEC",
              help="kind@start+duration[:magnitude=X,model=M,app=A], repeatable; "
                   "e.g. toxic_burst@5000+2000:magnitude=0.3")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSONL to this file instead of Kafka.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --out: also write each message's ground truth as JSONL.")
@click.option("--file", "replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Replay your own JSONL file into the topic, one message per line, bytes as they are.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to wait for the broker before giving up.")
@click.option("--compression", type=click.Choice(["gzip", "snappy", "lz4", "zstd"]), default=None,
              help="Producer compression codec (snappy/lz4/zstd need their Python packages).")
@click.option("--format", "fmt", type=click.Choice(["watchkeeper", "otlp", "litellm"]), default="watchkeeper",
              show_default=True, help="Message format: our JSON record, OpenTelemetry GenAI trace batches (as the "
                                      "Collector's kafka exporter writes them) or LiteLLM payloads.")
@click.option("--otlp-encoding", type=click.Choice(["proto", "json"]), default="proto", show_default=True,
              help="With --format otlp: otlp_proto or otlp_json.")
@click.option("--spans-per-message", type=click.IntRange(min=1), default=50, show_default=True,
              help="With --format otlp: records per export batch (one Kafka message).")
@config_option
def produce(bootstrap_servers: str, topic: str | None, count: int, rate: float, seed: int,
            malformed_share: float, incidents: list[Incident], out: Path | None, truth: Path | None,
            replay: Path | None, connect_timeout: float, compression: str | None, fmt: str,
            otlp_encoding: str, spans_per_message: int, config_path: str | None) -> None:
    """Produce synthetic LLM traffic (with incidents and malformed messages) or replay a JSONL file.
    TLS and SASL come from the configuration's [kafka] section, as for the daemon."""
    from monitor.synthetic.generator import TrafficGenerator, write_jsonl
    from monitor.synthetic.produce import Counting, read_lines

    if replay and out:
        raise click.UsageError("--file replays into Kafka; it cannot be combined with --out")
    if truth and not out:
        raise click.UsageError("--truth is written next to --out; give --out too")
    if fmt != "watchkeeper" and (out or replay):
        raise click.UsageError("--format otlp/litellm writes synthetic traffic to Kafka; not with --out or --file")
    from monitor.config import broker_problem

    for i, entry in enumerate(part.strip() for part in bootstrap_servers.split(",") if part.strip()):
        if problem := broker_problem(entry):  # kafka-python's ValueError, or user:password@ echoed in its errors
            raise click.BadParameter(f"entry {i + 1} {problem}", param_hint="--bootstrap-servers")
    topic = topic or _default_topic()
    security = {} if out else load(config_path).kafka.client_options()
    started = time.monotonic()
    if replay:
        n = _send(bootstrap_servers, topic, read_lines(replay), rate, compression, connect_timeout, security)
        click.echo(f"replayed {n} lines of {replay} to {topic} at {bootstrap_servers} "
                   f"in {time.monotonic() - started:.1f} s")
        return
    generator = TrafficGenerator(seed=seed, malformed_share=malformed_share, incidents=incidents,
                                 rate_per_s=rate or 50.0)
    counted = Counting(generator.generate(count))
    if out:
        n = write_jsonl(out, counted, truth_path=truth)
        where = f"to {out}" + (f" (truth in {truth})" if truth else "")
    else:
        from monitor.synthetic.formats import reshape

        shaped = reshape(counted, fmt, per_message=spans_per_message, encoding=otlp_encoding)
        n = _send(bootstrap_servers, topic, shaped, rate, compression, connect_timeout, security)
        where = f"to {topic} at {bootstrap_servers}"
    elapsed = time.monotonic() - started
    click.echo(f"produced {n} messages ({counted.malformed} malformed, {len(incidents)} incidents) {where} "
               f"in {elapsed:.1f} s ({n / max(elapsed, 1e-9):,.0f} msg/s)")


def _send(bootstrap_servers: str, topic: str, items: Iterable[Generated | bytes], rate: float,
          compression: str | None, connect_timeout_s: float, security: dict[str, Any]) -> int:
    from monitor.synthetic.produce import ProduceError, produce_to_kafka

    try:
        return produce_to_kafka(bootstrap_servers, topic, items, rate=rate, compression=compression,
                                connect_timeout_s=connect_timeout_s, security=security)
    except ProduceError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - no broker, a codec whose package is missing: say so in one line
        message = f"cannot produce to {bootstrap_servers}: {type(exc).__name__}: {exc}"
        raise click.ClickException(message) from None


