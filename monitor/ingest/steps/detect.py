"""The detect step: every accepted record of a batch goes through the detector chain before it is stored.

It fills ``batch.annotations`` (aligned with ``batch.records``) with each record's detections, its signal
columns and its redacted texts; the store writes them in the same transaction as the records. Like every
step it does no database I/O, so a batch that fails to store is detected again, identically, on replay.
"""

from __future__ import annotations

import logging

from detectors.chain import DetectorChain
from monitor.ingest.batch import Batch
from monitor.ingest.steps import Step

log = logging.getLogger(__name__)


class DetectStep(Step):
    """`monitor.ingest.batch.Step` that runs a `DetectorChain` over the batch's records.

    >>> from detectors.config import DetectorsConfig
    >>> from monitor.ingest.record import decode
    >>> step = DetectStep(DetectorChain.from_config(DetectorsConfig()))
    >>> raw = b'{"id":"r1","ts":0,"model":"m","prompt":"hi","response":"key AKIA4HKQ2ZP7LW3NXR6T"}'
    >>> batch = Batch(records=[decode(raw)])
    >>> step.process(batch)
    >>> batch.annotations[0].redacted_response
    'key [AWS_KEY]'
    """

    def __init__(self, chain: DetectorChain) -> None:
        self.chain = chain

    def process(self, batch: Batch) -> None:
        batch.annotations = self.chain.run(batch.records) if batch.records else []
        if batch.late:  # stored records whose text came later (monitor.ingest.steps.genai_join)
            try:
                batch.late_annotations = self.chain.run(batch.late)
            except Exception as exc:  # noqa: BLE001 - the type only: the exception's text may quote the content
                log.warning("detectors failed on %d record(s) joined late (%s); their stored rows are kept",
                            len(batch.late), type(exc).__name__)
                batch.late, batch.late_annotations = [], []

    def close(self) -> None:
        """Nothing to release: detectors hold no per-batch resources."""
