"""A real OpenTelemetry GenAI producer: the official ``openai`` client instrumented by
``opentelemetry-instrumentation-openai-v2``, calling a real model server, its spans serialised exactly as the
Collector's kafka exporter writes them (``otlp_proto``: an ``ExportTraceServiceRequest``; ``otlp_json``).

Run as a subprocess (``python -m tests.monitor.ingest.formats.otel_producer URL OUT CAPTURE``) because the
instrumentation reads its content-capture settings from the environment once, at instrumentation time.
CAPTURE ``1``: text on the span; ``0``: no text; ``events``: text only as log events on the logs topic
(``OUT.logs.pb``, ``OUT.logs.json``, as the Collector's kafka exporter writes them), joined to the spans by the
daemon.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

PROMPTS = [
    "Say hello in one short sentence.",
    "Repeat exactly this key and nothing else: AKIAZ7Q4K2M3N6P5R2TX",
    "Name one colour.",
]


def main(url: str, out: Path, capture: str) -> None:
    # opentelemetry-util-genai here only has the latest conventions (is_experimental_mode() is always True), so
    # "events" gives the one event it emits, gen_ai.client.inference.operation.details, with the messages as
    # attributes; the per-message events of older releases are covered by test_otlp_logs.py.
    modes = {"1": "SPAN_ONLY", "events": "EVENT_ONLY"}
    if capture in modes:
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = modes[capture]
    import openai
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from monitor.ingest.formats.otlp import to_otlp_json
    from monitor.ingest.formats.otlp_logs import logs_to_otlp_json

    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "bread-bot"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider, logger_provider=logger_provider)
    tracer = provider.get_tracer("bread-bot.http")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)
    with tracer.start_as_current_span("POST /ask"):  # an application span: not GenAI, skipped and counted
        for prompt in PROMPTS:
            client.chat.completions.create(
                model="smollm2", temperature=0, max_tokens=24,
                messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}])
        broken = openai.OpenAI(base_url=f"{url}/no-such-api", api_key="not-needed", max_retries=0)
        with contextlib.suppress(openai.APIError):  # a failed call (HTTP 404): the span records the error
            broken.chat.completions.create(model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    request = encode_spans(exporter.get_finished_spans())  # one export batch, as the Collector receives it
    out.with_suffix(".pb").write_bytes(request.SerializeToString())
    out.with_suffix(".json").write_bytes(to_otlp_json(request))
    logs = log_exporter.get_finished_logs()
    if logs:
        log_request = encode_logs(logs)
        out.with_suffix(".logs.pb").write_bytes(log_request.SerializeToString())
        out.with_suffix(".logs.json").write_bytes(logs_to_otlp_json(log_request))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
