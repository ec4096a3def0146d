"""Per-record signals for drift detection: the `records` columns the detector chain fills.

Latency, token counts, status and feedback are already columns of the record itself; this adds the
lengths and what the detectors found, so that analysts (and the drift detectors downstream) can query
one row per record without joining `detections`. A signal whose detector is not configured is NULL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.base import Detection, Recordlike

SIGNAL_COLUMNS = (
    "prompt_chars", "response_chars", "prompt_words", "response_words", "prompt_toxicity",
    "response_toxicity", "refusal", "truncated", "pii_count", "secret_count",
)


def word_count(text: str) -> int:
    """Whitespace-separated words, counted without splitting (cheap: the chain runs on every record).

    Runs of several separators count once per separator, so this can over-count badly spaced text.

    >>> word_count("two words"), word_count(""), word_count("one\\nline two")
    (2, 0, 3)
    """
    stripped = text.strip()
    if not stripped:
        return 0
    return stripped.count(" ") + stripped.count("\n") + stripped.count("\t") + 1


def record_signals(record: Recordlike, detections: Mapping[str, Detection]) -> dict[str, Any]:
    """Column values for ``record``'s `records` row, from the record and its detections (keyed by name).

    >>> from types import SimpleNamespace as R
    >>> record_signals(R(prompt="hi there", response=""), {})["prompt_words"]
    2
    """
    toxicity = detections.get("toxicity")
    prompt_toxicity = detections.get("prompt_toxicity")
    refusal = detections.get("refusal")
    pii = detections.get("pii")
    secrets = detections.get("secrets")
    reasons = refusal.details.get("reasons", ()) if refusal is not None else ()
    return {
        "prompt_chars": len(record.prompt),
        "response_chars": len(record.response),
        "prompt_words": word_count(record.prompt),
        "response_words": word_count(record.response),
        "prompt_toxicity": prompt_toxicity.score if prompt_toxicity is not None else None,
        "response_toxicity": toxicity.score if toxicity is not None else None,
        "refusal": "refusal" in reasons if refusal is not None else None,
        "truncated": "truncated" in reasons if refusal is not None else None,
        "pii_count": len(pii.findings) if pii is not None else None,
        "secret_count": len(secrets.findings) if secrets is not None else None,
    }
