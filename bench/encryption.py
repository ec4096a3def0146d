"""CPU per record of encryption at rest, against the detector chain every record already pays, in one run.

Generated traffic (~1.6 KB records) is decoded in batches of 2000 with the pipeline's own `decode_messages`;
then, CPU seconds (``time.process_time``), best of ``--rounds``, per record:

- chain (baseline): the `DetectStep` as `store_text = "full"` builds it (no redaction);
- chain + redaction: as it is built when a key is set with `store_text = "full"` (the clear columns get a
  redacted copy);
- rows, no key: `record_row` with the `full` text policy (what the store builds before writing);
- rows, key: the same with the sealing policy (JSON of the five texts + Fernet: AES-128-CBC + HMAC-SHA256).

The product figure (records/s of the daemon into Postgres with and without a key, same topic) is
``python bench/ingest.py --key-cost --config "$(printf '[pipeline]\\nstore_text = "full"')"``.

    python -m bench.encryption             # 20k records, 3 rounds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.ingest.batch import Batch, RawMessage
from monitor.ingest.pipeline import decode_messages
from monitor.ingest.steps.detect import DetectStep
from monitor.storage.crypto import Cipher, new_key
from monitor.storage.store import TextPolicy, record_row, text_policy
from monitor.synthetic.generator import TrafficGenerator

BATCH = 2000


def _best(rounds: int, work: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    values = [g.value for g in TrafficGenerator(seed=7).generate(args.n)]
    batches: list[Batch] = [decode_messages([RawMessage("bench", 0, i + j, None, v)
                                             for j, v in enumerate(values[i:i + BATCH])])
                            for i in range(0, len(values), BATCH)]
    n = sum(len(b.records) for b in batches)
    plain_chain = DetectStep(DetectorChain.from_config(DetectorsConfig(), "full"))
    redacting_chain = DetectStep(DetectorChain.from_config(DetectorsConfig(), "redacted"))
    now = datetime.now(UTC)

    def chain(step: DetectStep) -> Callable[[], None]:
        return lambda: [step.process(b) for b in batches]  # type: ignore[func-returns-value]

    def rows(policy: TextPolicy) -> Callable[[], None]:
        def go() -> None:
            for b in batches:
                for record, annotation in zip(b.records, b.annotations, strict=True):
                    record_row(record, annotation, policy(record, annotation), now)
        return go

    figures = {"chain": _best(args.rounds, chain(plain_chain)),
               "chain + redaction": _best(args.rounds, chain(redacting_chain))}
    figures["rows, no key"] = _best(args.rounds, rows(text_policy("full")))
    figures["rows, key"] = _best(args.rounds, rows(text_policy("full", Cipher([new_key()]))))
    for name, seconds in figures.items():
        print(f"{name:>18}: {seconds / n * 1e6:7.1f} µs/record")
    extra = (figures["chain + redaction"] - figures["chain"] + figures["rows, key"] - figures["rows, no key"]) / n
    base = (figures["chain"] + figures["rows, no key"]) / n
    print(f"a key adds {extra * 1e6:.1f} µs/record to {base * 1e6:.1f} µs (chain + rows): "
          f"{extra / base:+.0%} of that CPU")


if __name__ == "__main__":
    main()
