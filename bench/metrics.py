"""CPU per record of the Prometheus metrics the pipeline updates per batch (`monitor.ingest.pipeline._observe`:
outcomes, findings by detector, latency histograms), against decoding the same messages, in one run.

Generated traffic as in `bench.steps`, batches of 2000, annotated once by the real `DetectStep`; CPU seconds,
best of ``--rounds``.

    python -m bench.metrics               # 10k records, 5 rounds
"""

from __future__ import annotations

import argparse

from bench.steps import best_cpu, chunks, messages
from detectors.chain import DetectorChain
from monitor.config import Config
from monitor.ingest.pipeline import _observe, decode_messages
from monitor.ingest.steps.detect import DetectStep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="records")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    batches = chunks(messages(args.n, args.seed))
    step = DetectStep(DetectorChain.from_config(Config().detectors, "redacted"))
    annotated = []
    for chunk in batches:
        batch = decode_messages(chunk)
        step.process(batch)
        annotated.append(batch)
    decode_s = best_cpu(lambda: [decode_messages(c) for c in batches], args.rounds)
    observe_s = best_cpu(lambda: [_observe(b, batch_s=0.1, store_s=0.05, commit_s=0.01) for b in annotated],
                         args.rounds)
    n = args.n
    print(f"records {n}: decode {decode_s / n * 1e6:.2f} µs/record (baseline), metrics update "
          f"{observe_s / n * 1e6:.3f} µs/record ({observe_s / decode_s:.2%} of decode)")


if __name__ == "__main__":
    main()
