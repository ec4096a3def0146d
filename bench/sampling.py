"""How much the sampler adds per record, against decoding the same records (the cheapest step every
record already pays), measured in the same run.

    python -m bench.sampling [records]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import orjson

from detectors.annotation import Annotation
from detectors.base import Detection
from monitor.config import SamplingConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import decode
from monitor.ingest.steps.sampling import SamplingStep


def main(n: int = 200_000) -> None:
    raw = [orjson.dumps({"id": f"req-{i}", "ts": 1_770_000_000_000 + i * 10, "model": f"m{i % 3}",
                         "app": f"app{i % 7}", "prompt": "How do I reset my password? " * 4,
                         "response": "Open settings, choose security, then reset. " * 6,
                         "feedback": {"score": i % 2}}) for i in range(n)]
    t0 = time.perf_counter()
    records = [decode(r) for r in raw]
    decode_s = time.perf_counter() - t0

    annotations = [Annotation(detections=[Detection("toxicity", 0.9, i % 50 == 0), Detection("pii", 0.0, False)])
                   for i in range(n)]
    step = SamplingStep(SamplingConfig())
    batches = [Batch(records=records[i:i + 2000], annotations=annotations[i:i + 2000],
                     received_at=datetime.now(UTC)) for i in range(0, n, 2000)]
    t0 = time.perf_counter()
    for batch in batches:
        step.process(batch)
    sample_s = time.perf_counter() - t0
    kept = sum(len(b.rows[next(iter(b.rows))]) for b in batches if b.rows)
    print(f"records: {n}, samples kept: {kept}")
    print(f"decode (baseline): {decode_s / n * 1e6:.2f} µs/record")
    print(f"sampling:          {sample_s / n * 1e6:.2f} µs/record")
    print(f"ratio sampling/decode: {sample_s / decode_s:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
