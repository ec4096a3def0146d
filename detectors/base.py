"""The contract every per-record detector keeps.

A detector sees a batch of records and returns one `Detection` per record, in order. Batching is part of
the contract because the cheap way to run a classifier is over many texts at once. A detector must not keep
per-record state between calls, must not write anywhere, and must never put the value of a finding (a
secret, an e-mail address) into `details`: only its type and position, so that detections are safe to store
and to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class Recordlike(Protocol):
    """What detectors read from a record (monitor.record.Record satisfies it)."""

    id: str
    prompt: str
    response: str
    status: str
    tokens_out: int | None
    finish_reason: str | None


@dataclass(slots=True, frozen=True)
class Finding:
    """A span of text a detector found: its type (``EMAIL``, ``AWS_KEY``…) and where it is."""

    kind: str
    field: str  # "prompt" or "response"
    start: int
    end: int

    def as_details(self) -> dict[str, Any]:
        return {"kind": self.kind, "field": self.field, "start": self.start, "end": self.end}


@dataclass(slots=True)
class Detection:
    """One detector's verdict on one record: a score, a flag and JSON-safe details."""

    detector: str
    score: float
    flagged: bool
    details: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


@runtime_checkable
class Detector(Protocol):
    """A per-record detector. ``name`` is stable: it is the `detections.detector` value analysts query."""

    name: str

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        """Return exactly one Detection per record, in the same order."""
        ...
