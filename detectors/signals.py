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
    "response_toxicity", "refusal", "truncated", "pii_count", "secret_count", "prompt_injection",
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
    # One pass that drops the separators (space, newline, tab): what it removed is how many there were.
    encoded = stripped.encode("utf-8", "surrogatepass")
    return len(encoded) - len(encoded.translate(None, b" \n\t")) + 1


def record_signals(record: Recordlike, detections: Mapping[str, Detection]) -> dict[str, Any]:
    """Column values for ``record``'s `records` row, from the record and its detections (keyed by name).

    >>> from types import SimpleNamespace as R
    >>> record_signals(R(prompt="hi there", response=""), {})["prompt_words"]
    2
    """
    get = detections.get
    return signals_of(record, get("toxicity"), get("prompt_toxicity"), get("refusal"), get("pii"), get("secrets"),
                      get("prompt_injection"))


def signals_of(record: Recordlike, toxicity: Detection | None, prompt_toxicity: Detection | None,
               refusal: Detection | None, pii: Detection | None, secrets: Detection | None,
               injection: Detection | None = None) -> dict[str, Any]:
    """`record_signals` with the detections already picked out (the chain does it once per batch)."""
    reasons = refusal.details.get("reasons", ()) if refusal is not None else ()
    prompt, response = record.prompt, record.response
    return {
        "prompt_chars": len(prompt),
        "response_chars": len(response),
        "prompt_words": word_count(prompt),
        "response_words": word_count(response),
        "prompt_toxicity": prompt_toxicity.score if prompt_toxicity is not None else None,
        "response_toxicity": toxicity.score if toxicity is not None else None,
        "refusal": "refusal" in reasons if refusal is not None else None,
        "truncated": "truncated" in reasons if refusal is not None else None,
        "pii_count": len(pii.findings) if pii is not None else None,
        "secret_count": len(secrets.findings) if secrets is not None else None,
        "prompt_injection": injection.score if injection is not None else None,
    }
