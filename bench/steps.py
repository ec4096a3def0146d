"""CPU per record of the drift and sampling steps, against decoding the same messages, in one run.

Generated traffic (`monitor.synthetic.generator.TrafficGenerator`, ~1.6 KB records, three partitions round-robin as
the ingest benchmark produces them) is decoded in batches of 2000 with the pipeline's own
`decode_messages`, annotated once by the real `DetectStep`, then handed to the steps at their default
configuration. Times are CPU seconds (``time.process_time``), best of ``--rounds``:

- decode: ``decode_messages`` per batch (the cost every record already pays; the baseline);
- drift: `DriftStep.process`, which adds each record's signals to the per-stream buckets (`drift_buckets`
  increments; detection runs in the fold job, `bench/drift.py` measures it), with topic drift at its default
  sampling (a quarter of the prompts embedded and assigned a subject) — and, to price it, without topic
  drift and with every prompt embedded, first pass and then after
  ``--warm-passes`` untimed passes. Each pass feeds the same records again with later offsets, so none is
  skipped as a redelivery;
- sampling: `SamplingStep.process`; then again with a drift event on the global stream (as the sampler
  learns it from `drift_events`), so that every record is also considered for the drift reason.

    python -m bench.steps                 # 30k records, 5 rounds
    python -m bench.steps -n 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from detectors.annotation import Annotation
from detectors.chain import DetectorChain
from detectors.drift.subjects import SubjectCells
from monitor.config import Config
from monitor.ingest.batch import Batch, RawMessage
from monitor.ingest.pipeline import decode_messages
from monitor.ingest.record import Record
from monitor.ingest.steps.detect import DetectStep
from monitor.ingest.steps.drift import DriftStep
from monitor.ingest.steps.sampling import SamplingStep
from monitor.storage.schema import drift_buckets, samples
from monitor.synthetic.generator import TrafficGenerator

BATCH = 2000
PARTITIONS = 3


def messages(n: int, seed: int) -> list[RawMessage]:
    gen = TrafficGenerator(seed=seed, start=datetime(2026, 3, 1, tzinfo=UTC))
    return [RawMessage("llm-logs", i % PARTITIONS, i // PARTITIONS, g.key, g.value)
            for i, g in enumerate(gen.generate(n))]


def chunks(items: Sequence[RawMessage], size: int = BATCH) -> list[Sequence[RawMessage]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def best_cpu(run: Callable[[], None], rounds: int, before: Callable[[], None] = lambda: None) -> float:
    """Least CPU seconds of ``rounds`` calls of ``run`` (``before`` runs untimed ahead of each)."""
    best = float("inf")
    for _ in range(rounds):
        before()
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30_000, help="records")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--warm-passes", type=int, default=5, help="untimed passes before the steady-state rounds")
    args = parser.parse_args()

    config = Config()
    batches_in = chunks(messages(args.n, args.seed))
    n = sum(len(b) for b in batches_in)

    decode_s = best_cpu(lambda: [decode_messages(b) for b in batches_in], args.rounds)
    decoded = [decode_messages(b) for b in batches_in]
    detect = DetectStep(DetectorChain.from_config(config.detectors, config.pipeline.store_text))
    for batch in decoded:
        detect.process(batch)
    records: list[list[Record]] = [b.records for b in decoded]
    annotations: list[list[Annotation]] = [b.annotations for b in decoded]
    span = max(r.offset for rs in records for r in rs) + 1

    def fresh() -> list[Batch]:
        return [Batch(records=rs, annotations=an, received_at=datetime.now(UTC))
                for rs, an in zip(records, annotations, strict=True)]

    def later_offsets() -> None:
        for rs in records:
            for r in rs:
                r.offset += span

    rate = config.drift.topic_sample_rate  # topic drift at its default sampling: the subjects of sampled prompts
    drift = DriftStep(bucket_s=config.drift.bucket_s, topic_sample_rate=rate,
                      subjects=SubjectCells() if rate else None)
    drifted: list[Batch] = []

    def run_drift() -> None:
        drifted[:] = fresh()
        for batch in drifted:
            drift.process(batch)

    cold_s = best_cpu(run_drift, 1)
    for _ in range(args.warm_passes):
        later_offsets()
        run_drift()
    drift_s = best_cpu(run_drift, args.rounds, before=later_offsets)
    increments = sum(len(t.increments.get(drift_buckets, ())) for b in drifted for t in b.tallies)
    scalar = DriftStep(bucket_s=config.drift.bucket_s)

    def run_scalar() -> None:
        for batch in fresh():
            scalar.process(batch)

    scalar_s = best_cpu(run_scalar, args.rounds, before=later_offsets)
    every = DriftStep(bucket_s=config.drift.bucket_s, topic_sample_rate=1.0,
                      subjects=drift.subjects or SubjectCells())

    def run_every() -> None:
        for batch in fresh():
            every.process(batch)

    run_every()
    every_s = best_cpu(run_every, args.rounds, before=later_offsets)

    def run_sampling() -> None:
        step = SamplingStep(config.sampling)
        for batch in drifted:
            batch.rows.pop(samples, None)
            step.process(batch)

    sampling_s = best_cpu(run_sampling, args.rounds)
    kept = sum(len(b.rows.get(samples, ())) for b in drifted)
    # The same, while a drift event on the global stream boosts every record (one more decision each).
    boost = {"stream": "*", "detected_at": drifted[0].records[0].ts}

    def run_boosted() -> None:
        step = SamplingStep(config.sampling)
        step.boosts.learn([boost])
        for batch in drifted:
            batch.rows.pop(samples, None)
            step.process(batch)

    boosted_s = best_cpu(run_boosted, args.rounds)

    def per(seconds: float) -> str:
        return f"{seconds / n * 1e6:7.2f} µs/record  ({seconds / decode_s:.2f} × decode)"

    print(f"records: {n} in batches of {BATCH}, {PARTITIONS} partitions, best of {args.rounds} rounds (CPU time)")
    print(f"decode (baseline):      {per(decode_s)}")
    print(f"drift, first pass:      {per(cold_s)}")
    print(f"drift, later passes:    {per(drift_s)}   ({increments} bucket increments in the last pass)")
    print(f"drift, no topic drift:  {per(scalar_s)}")
    print(f"drift, every prompt:    {per(every_s)}   (topic_sample_rate = 1)")
    print(f"sampling:               {per(sampling_s)}   samples kept: {kept}")
    print(f"sampling, drift boost:  {per(boosted_s)}   (every record also in a drifting stream)")


if __name__ == "__main__":
    main()
