"""What the detector chain learns about one record, in the shape the pipeline stores.

Defined here, not in the pipeline, so that `detectors` knows nothing of `monitor`: the chain returns one
`Annotation` per record and the ingest batch (`monitor.ingest.batch.Batch.annotations`) carries them to the
store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.base import Detection


@dataclass(slots=True)
class Annotation:
    """What the detect step learnt about one record: its detections, per-record signal columns for
    `records`, and the redacted texts that replace the raw ones in storage.

    A ``redacted_*`` value is what the store writes for that field (the raw value when nothing was found in
    it); None when the chain did not redact it, in which case the store writes nothing rather than the raw
    value. ``redacted_error``, ``redacted_feedback_comment`` and ``redacted_metadata`` are filled when
    ``store_text`` is ``redacted`` or ``none`` (`detectors.chain.DetectorChain`)."""

    detections: list[Detection] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)
    redacted_prompt: str | None = None
    redacted_response: str | None = None
    redacted_error: str | None = None
    redacted_feedback_comment: str | None = None
    redacted_metadata: dict[str, Any] | None = None

    def flagged(self, detector: str) -> bool | None:
        """Whether ``detector`` flagged this record; None when that detector did not run (not judged).

        >>> judged = Annotation([Detection("prompt_injection", 0.9, True, {})])
        >>> judged.flagged("prompt_injection"), Annotation().flagged("prompt_injection")
        (True, None)
        """
        for d in self.detections:
            if d.detector == detector:
                return d.flagged
        return None
