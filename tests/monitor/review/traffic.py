"""Generated LLM traffic for the review tests: records with a known truth, annotated the way the detector
chain does (real PII findings, redacted text), stored through the real Store with the real sampler."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Engine

from detectors.annotation import Annotation
from detectors.base import Detection
from detectors.pii import PiiDetector
from monitor.ingest.batch import Batch
from monitor.ingest.record import Record
from monitor.ingest.steps.sampling import SamplingStep
from monitor.storage.schema import metadata
from monitor.storage.store import Store, text_policy

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def create_schema(engine: Engine) -> None:
    """Tables from schema.py plus this feature's views, applied by the real 0002 migration code."""
    import importlib.util
    from pathlib import Path

    metadata.create_all(engine)
    path = Path(__file__).resolve().parents[3] / "alembic" / "versions" / "0002_review_views.py"
    spec = importlib.util.spec_from_file_location("review_views_migration", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        module.upgrade()


@dataclass(frozen=True)
class Stream:
    model: str
    app: str | None
    volume: int
    error_rate: float


def generate(streams: Iterable[Stream], seed: int, start: datetime = DAY0,
             span: timedelta = timedelta(hours=23)) -> tuple[list[Record], dict[str, bool]]:
    """Records spread over ``span`` and, for each, whether its answer is actually correct."""
    rng = random.Random(seed)
    records, truth = [], {}
    for stream in streams:
        for i in range(stream.volume):
            rid = f"{seed}-{stream.model}-{stream.app}-{i}"
            ts = start + timedelta(seconds=rng.uniform(0, span.total_seconds()))
            records.append(Record(id=rid, ts=ts, model=stream.model, app=stream.app,
                                  prompt=f"question {i} from {stream.app}", response=f"answer {i}"))
            truth[rid] = rng.random() >= stream.error_rate
    records.sort(key=lambda r: r.ts)
    return records, truth


def annotate(record: Record, toxic: bool = False) -> Annotation:
    """What the detect step produces: real PII findings, redacted text, a toxicity verdict (the error,
    feedback comment and metadata are the record's own: the test records hold nothing to redact there)."""
    pii = PiiDetector().detect([record])[0]
    redacted = {"prompt": record.prompt, "response": record.response}
    for finding in sorted(pii.findings, key=lambda f: -f.start):
        text = redacted[finding.field]
        redacted[finding.field] = text[:finding.start] + f"[{finding.kind}]" + text[finding.end:]
    toxicity = Detection("toxicity", 0.97 if toxic else 0.02, toxic, {})
    return Annotation(detections=[pii, toxicity], signals={"response_toxicity": toxicity.score},
                      redacted_prompt=redacted["prompt"], redacted_response=redacted["response"],
                      redacted_error=record.error, redacted_feedback_comment=record.feedback_comment,
                      redacted_metadata=record.metadata)


def store(engine: Engine, step: SamplingStep, records: list[Record], annotations: list[Annotation] | None = None,
          batch_size: int = 500, store_text: str = "redacted") -> None:
    """Run records through the sampler and the real store, batch by batch, as the pipeline does."""
    writer = Store(engine, text_policy(store_text))
    for i in range(0, len(records), batch_size):
        batch = Batch(records=records[i:i + batch_size],
                      annotations=(annotations or [])[i:i + batch_size])
        batch.received_at = datetime.now(UTC)
        step.process(batch)
        writer.write(batch)
