"""Message formats other than our JSON record: what one Kafka message becomes.

A topic's format (``[kafka] format``, ``[kafka.formats]`` per topic, ``WATCHKEEPER_KAFKA_FORMAT``) picks a
`Decoder`. A decoder turns ONE message into any number of records, dead letters and skipped items
(`Decoded`), and never raises: whatever it cannot read is a dead letter with the message's bytes and the
reason, so nothing is lost and the pipeline's offset and replay guarantees hold unchanged (every record keeps
its message's topic/partition/offset; its id is a natural key, so a replay stores nothing twice).

* ``otlp`` (`monitor.ingest.formats.otlp`): OpenTelemetry trace export batches, protobuf or JSON;
* ``otlp_logs`` (`monitor.ingest.formats.otlp_logs`): OpenTelemetry log export batches; their GenAI content
  events (``gen_ai.user.message``, ``gen_ai.choice``…) are joined to their span's record
  (`monitor.ingest.steps.genai_join`), the other log records skipped and counted;
* ``litellm`` (`monitor.ingest.formats.litellm`): LiteLLM's ``StandardLoggingPayload``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson

from monitor.ingest.batch import Batch, DeadLetter, GenAIEvent, Message
from monitor.ingest.record import Record, RecordError, decode

FORMATS = ("watchkeeper", "otlp", "otlp_logs", "litellm")


@dataclass(slots=True)
class Decoded:
    """What one message became. ``skipped`` counts items that are not LLM calls (e.g. HTTP or database spans)."""

    records: list[Record] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0
    events: list[GenAIEvent] = field(default_factory=list)
    """GenAI content events (logs topic) for the join step, which stores and joins them."""


Decoder = Callable[[Message], Decoded]


def as_record(obj: dict, message: Message) -> Record:
    """Validate a record-shaped dict through the one record validator (`monitor.ingest.record.decode`), so a
    foreign format can never store what our own JSON contract would refuse. Raises `RecordError`."""
    try:
        raw = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise RecordError(f"cannot be represented as a record: {exc}") from None
    record = decode(raw)
    record.topic, record.partition, record.offset = message.topic, message.partition, message.offset
    return record


def dead_letter(message: Message, reason: str) -> DeadLetter:
    """A dead letter for ``message`` as a whole (its bytes, its coordinates)."""
    return DeadLetter(message.topic, message.partition, message.offset, message.key, message.value, reason)


def decode_foreign(decoder: Decoder, message: Message, batch: Batch) -> None:
    """Add what ``message`` became to ``batch`` and advance the batch's next offset past it."""
    decoded = decoder(message)
    batch.records += decoded.records
    batch.dead_letters += decoded.dead_letters
    batch.skipped += decoded.skipped
    batch.genai_events += decoded.events
    for record in decoded.records:
        batch.raw[record.id] = message.value
    key = (message.topic, message.partition)
    if message.offset + 1 > batch.next_offsets.get(key, -1):
        batch.next_offsets[key] = message.offset + 1


def decoder_for(format_name: str, *, app: str | None = None) -> Decoder | None:
    """The decoder for ``format_name``; None for ``watchkeeper`` (the pipeline's own JSON decoder)."""
    if format_name == "otlp":
        from monitor.ingest.formats.otlp import OtlpDecoder

        return OtlpDecoder(app=app)
    if format_name == "otlp_logs":
        from monitor.ingest.formats.otlp_logs import decode_otlp_logs

        return decode_otlp_logs
    if format_name == "litellm":
        from monitor.ingest.formats.litellm import decode_litellm

        return decode_litellm
    if format_name == "watchkeeper":
        return None
    raise ValueError(f"unknown message format {format_name!r}; expected one of {', '.join(FORMATS)}")


def decoders_for(topics: list[str], default: str, overrides: Mapping[str, str], *,
                 app: str | None = None) -> dict[str, Decoder]:
    """Topic -> decoder for every topic whose format is not our JSON record."""
    decoders: dict[str, Decoder] = {}
    for topic in set(topics) | set(overrides):
        decoder = decoder_for(overrides.get(topic, default), app=app)
        if decoder is not None:
            decoders[topic] = decoder
    return decoders


__all__ = ["FORMATS", "Decoded", "Decoder", "as_record", "dead_letter", "decode_foreign", "decoder_for", "decoders_for"]
