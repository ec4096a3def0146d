"""A real OpenTelemetry GenAI producer: the official ``openai`` client instrumented by
``opentelemetry-instrumentation-openai-v2``, calling a real model server, its spans serialised exactly as the
Collector's kafka exporter writes them (``otlp_proto``: an ``ExportTraceServiceRequest``; ``otlp_json``).

Run as a subprocess (``python -m tests.monitor.ingest.formats.otel_producer URL OUT CAPTURE``) because the
instrumentation reads its content-capture settings from the environment once, at instrumentation time.
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


def main(url: str, out: Path, capture: bool) -> None:
    if capture:  # the current conventions: gen_ai.input.messages / gen_ai.output.messages on the span
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    import openai
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from monitor.ingest.formats.otlp import to_otlp_json

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bread-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
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


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1")
