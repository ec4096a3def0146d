"""Redaction before storage: each PII/secret finding becomes a typed placeholder (``[EMAIL]``, ``[AWS_KEY]``).

The detector chain redacts every record when ``pipeline.store_text = "redacted"`` (the default); the store
(`monitor.storage.store.text_policy`) writes that text and never falls back to the raw text.
"""

from __future__ import annotations

from collections.abc import Iterable

from detectors.base import Finding
from detectors.secrets import SECRET_KINDS

_SECRET = frozenset(SECRET_KINDS)


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with each finding's span replaced by ``[KIND]``; overlapping spans merge into one placeholder
    (a secret's kind wins over a PII kind, then the longer span's).

    >>> redact("mail bob@x.io key AKIAIOSFODNN7EXAMPLE", [Finding("EMAIL", "prompt", 5, 13),
    ...        Finding("AWS_KEY", "prompt", 18, 38)])
    'mail [EMAIL] key [AWS_KEY]'
    """
    spans = sorted(findings, key=lambda f: (f.start, -f.end))
    if not spans:
        return text
    parts: list[str] = []
    cursor = 0
    best, start, end = spans[0], spans[0].start, spans[0].end
    for f in spans[1:]:
        if f.start < end:  # overlaps the current group: widen it, keep the most severe kind
            best = max(best, f, key=_rank)
            end = max(end, f.end)
            continue
        parts += [text[cursor:start], f"[{best.kind}]"]
        cursor, best, start, end = end, f, f.start, f.end
    parts += [text[cursor:start], f"[{best.kind}]", text[end:]]
    return "".join(parts)


def _rank(f: Finding) -> tuple[bool, int]:
    return f.kind in _SECRET, f.end - f.start
