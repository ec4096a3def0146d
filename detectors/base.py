"""The contract every per-record detector keeps.

A detector sees a batch of records and returns one `Detection` per record, in order. Batching is part of
the contract because the cheap way to run a classifier is over many texts at once. A detector must not keep
per-record state between calls, must not write anywhere, and must never put the value of a finding (a
secret, an e-mail address) into `details`: only its type and position, so that detections are safe to store
and to show.

Besides the prompt and the response, a record may carry free text that is stored too: ``error`` (an
upstream error message), ``feedback_comment`` and ``metadata`` (a JSON object). The PII and secrets detectors
scan those as well when a record has them (`EXTRA_FIELDS`); `metadata_texts` lists what of a metadata object
can hold a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

EXTRA_FIELDS = ("error", "feedback_comment", "metadata")
"""Record fields besides prompt and response that are stored and therefore scanned and redacted."""

MetadataPath = tuple[str | int | None, ...]
"""Keys and list indices from a metadata object down to a text in it; a trailing None means the text is the
last key itself, not the value under it."""

# An integer of 13+ digits can be a payment card number (the only kind of finding that fits in digits alone).
_MIN_CARD_INT = 10**12


class Recordlike(Protocol):
    """What detectors read from a record (monitor.ingest.record.Record satisfies it).

    The PII and secrets detectors also read ``error``, ``feedback_comment`` and ``metadata`` (`EXTRA_FIELDS`)
    when the record has them; a record without those attributes (a test's or a benchmark's stand-in) is
    treated as having none.
    """

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
    field: str  # "prompt", "response" or one of EXTRA_FIELDS
    start: int
    end: int
    path: MetadataPath = ()
    """For a ``metadata`` finding, where in the object the text is (see `metadata_texts`; ``start`` and ``end``
    are positions in that text). In memory only, for redaction: keys can be values, so it never goes into
    details."""

    def as_details(self) -> dict[str, Any]:
        return {"kind": self.kind, "field": self.field, "start": self.start, "end": self.end}


@dataclass(slots=True)
class Detection:
    """One detector's verdict on one record: a score, a flag and JSON-safe details.

    Read-only once a detector returned it: detectors hand the same ``details`` object to every clean record
    of a batch (one fewer allocation per record and detector, on the path every record takes)."""

    detector: str
    score: float
    flagged: bool
    details: dict[str, Any] = field(default_factory=dict)
    findings: Sequence[Finding] = ()


@runtime_checkable
class Detector(Protocol):
    """A per-record detector. ``name`` is stable: it is the `detections.detector` value analysts query."""

    name: str

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        """Return exactly one Detection per record, in the same order."""
        ...


def extra_fields(record: Recordlike) -> tuple[str | None, str | None, Any]:
    """``error``, ``feedback_comment`` and ``metadata`` of a record, None for those it lacks (a stand-in).

    Read on every record by the chain and both span detectors: a real `Record` has all three, so the
    attributes are read directly and the per-attribute fallback only runs for stand-ins."""
    try:
        return record.error, record.feedback_comment, record.metadata  # type: ignore[attr-defined]
    except AttributeError:
        return (getattr(record, "error", None), getattr(record, "feedback_comment", None),
                getattr(record, "metadata", None))


def metadata_texts(metadata: Any) -> list[tuple[MetadataPath, str]]:
    """Every text of a metadata object that can hold a finding, with its path: string values at any depth,
    integers of 13 or more digits (as text: they can be card numbers), and keys that are not identifiers
    (``"bob@corp.io"``, ``"203.0.113.42"``; an identifier such as ``max_tokens`` holds no personal data).

    >>> metadata_texts({"max_tokens": 1024, "user": {"mail": "bob@corp.io"}, "bob@corp.io": [1, "x"]})
    [(('user', 'mail'), 'bob@corp.io'), (('bob@corp.io', 1), 'x'), (('bob@corp.io', None), 'bob@corp.io')]
    """
    out: list[tuple[MetadataPath, str]] = []
    if type(metadata) is not dict:
        if type(metadata) is list:
            _walk(metadata, (), out)
        return out
    for key, value in metadata.items():  # the top level inline: most metadata is flat
        kind = type(value)
        if kind is str:
            out.append(((key,), value))
        elif kind is int:
            if value >= _MIN_CARD_INT:
                out.append(((key,), str(value)))
        elif kind is dict or kind is list:
            _walk(value, (key,), out)
        if type(key) is str and not key.isidentifier():
            out.append(((key, None), key))
    return out


def _walk(node: dict[Any, Any] | list[Any], path: MetadataPath, out: list[tuple[MetadataPath, str]]) -> None:
    items = node.items() if type(node) is dict else enumerate(node)
    for key, value in items:
        kind = type(value)
        if kind is str:
            out.append(((*path, key), value))
        elif kind is dict or kind is list:
            _walk(value, (*path, key), out)
        elif kind is int and value >= _MIN_CARD_INT:
            out.append(((*path, key), str(value)))
        if type(key) is str and not key.isidentifier():
            out.append(((*path, key, None), key))
