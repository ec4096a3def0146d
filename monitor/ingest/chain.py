"""The data path, described and assembled in one place.

    source → decode → (join GenAI log events) → detect → aggregate → drift → sample → persist → commit

* **source** (`monitor.ingest.source`): a Kafka consumer in a group; offsets are committed by hand.
* **decode** (`monitor.ingest.record`): bytes → a validated `Record`, or a dead letter with the reason.
* **join** (`steps.genai_join`, only when a topic is read as ``otlp_logs``): GenAI content events
  from the OTLP logs topic into the records of their spans, whichever arrived first.
* **detect** (`steps.detect`): every detector on every record (toxicity, PII, secrets, refusal), and the
  redacted texts that replace the raw ones in storage.
* **aggregate** (`steps.aggregate`): per-minute counters per stream that the alert rules read.
* **drift** (`steps.drift`): each record's signals added to short per-stream buckets (`drift_buckets`) —
  global, per model, per app, per (model, app) — once per record; the detectors run beside the chain, in
  the fold job (`monitor.jobs.drift`, on one daemon), so a stream is watched whole whatever the partitions
  and daemons. Topic drift too: a sample of prompts is embedded and counted per fixed subject cell.
* **sample** (`steps.sampling`): the review sample, boosted for flagged records and drifting streams; last
  because it reads what the steps before it found.
* **persist** (`monitor.storage.store`): the whole batch in one transaction, idempotent by natural keys.
* **commit**: the batch's offsets, only after persist succeeded (at-least-once).

`monitor.ingest.pipeline.Pipeline` runs one batch at a time through this chain; `build_steps` below is the
only place that decides which steps run and in what order.
"""

from __future__ import annotations

from sqlalchemy import Engine

from detectors.chain import DetectorChain
from detectors.drift.subjects import SubjectCells
from monitor.config import Config
from monitor.ingest.steps import Step
from monitor.ingest.steps.aggregate import AggregateStep
from monitor.ingest.steps.detect import DetectStep
from monitor.ingest.steps.drift import DriftStep
from monitor.ingest.steps.genai_join import GenAIJoinStep
from monitor.ingest.steps.sampling import SamplingStep


def build_steps(config: Config, engine: Engine) -> list[Step]:
    """The chain between decode and persist, in order: detect → aggregate → drift → sample.

    The per-minute counters the alert rules read (`monitor.ingest.steps.aggregate`) need the detectors' signals.
    Sampling comes last because it boosts records the detectors flagged and streams that drifted.
    """
    toxic_at = config.detectors.toxicity.threshold  # the one toxic cut-off: flagged, counters, drift, rule
    store_text = config.pipeline.store_text
    if store_text == "full" and config.storage.encryption_key is not None:
        store_text = "redacted"  # raw text is sealed; the clear columns get the redacted copy
    kafka = config.kafka
    formats = {kafka.format_of(topic) for topic in kafka.topics} | set(kafka.formats.values())
    join: list[Step] = [GenAIJoinStep(engine)] if "otlp_logs" in formats else []  # no logs topic: nothing to join
    steps: list[Step] = [*join, DetectStep(DetectorChain.from_config(config.detectors, store_text)),
                         AggregateStep(toxic_at)]
    if config.drift.enabled:
        rate = config.drift.topic_sample_rate
        steps.append(DriftStep(bucket_s=config.drift.bucket_s, toxic_at=toxic_at,
                               subjects=SubjectCells() if rate > 0 else None, topic_sample_rate=rate))
    if config.sampling.enabled:
        steps.append(SamplingStep.from_database(config.sampling, engine))
    return steps
