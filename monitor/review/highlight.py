"""Where to draw the reviewer's eye: the detector findings inside a stored text, as plain segments.

Detection spans point into the *raw* text. When the database keeps redacted text (the default) the values
are already replaced by placeholders such as ``[EMAIL]``, so the placeholders are highlighted instead.
When it keeps full text the spans are used, except that a ``secrets`` finding is masked rather than shown.
Either way every plain segment is sealed (`detectors.redact.seal`), so the page never displays a credential
whatever the database kept or this server's configuration says. Segments are plain strings; the template
escapes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from detectors.redact import seal

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")
MASKED_DETECTORS = frozenset({"secrets"})


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text; ``kind`` is set when it is a finding."""

    text: str
    kind: str | None = None


def _spans(detections: Iterable[Mapping[str, Any]], field: str, length: int) -> list[tuple[int, int, str, bool]]:
    spans = []
    for detection in detections:
        details = detection.get("details") or {}
        for finding in details.get("findings", ()) if isinstance(details, dict) else ():
            try:
                start, end = int(finding["start"]), int(finding["end"])
                kind, where = str(finding["kind"]), finding["field"]
            except (KeyError, TypeError, ValueError):
                continue
            if where == field and 0 <= start < end <= length:
                spans.append((start, end, kind, detection.get("detector") in MASKED_DETECTORS))
    spans.sort()
    return spans


def highlight(text: str | None, field: str, detections: Iterable[Mapping[str, Any]],
              full_text: bool) -> list[Segment]:
    """Split a stored prompt or response into segments with its findings marked.

    >>> [(s.text, s.kind) for s in highlight("mail [EMAIL] now", "prompt", [], full_text=False)]
    [('mail ', None), ('[EMAIL]', 'EMAIL'), (' now', None)]
    >>> key = {"detector": "secrets", "details": {"findings": [
    ...     {"kind": "AWS_KEY", "field": "response", "start": 4, "end": 8}]}}
    >>> [(s.text, s.kind) for s in highlight("key ABCD!", "response", [key], full_text=True)]
    [('key ', None), ('[AWS_KEY]', 'AWS_KEY'), ('!', None)]
    """
    if not text:
        return []
    out: list[Segment] = []
    pos = 0
    if full_text:
        for start, end, kind, masked in _spans(detections, field, len(text)):
            if start < pos:
                continue  # overlapping finding: the first one wins
            if start > pos:
                out.append(Segment(text[pos:start]))
            out.append(Segment(f"[{kind}]" if masked else text[start:end], kind))
            pos = end
    else:
        for match in PLACEHOLDER.finditer(text):
            if match.start() > pos:
                out.append(Segment(text[pos:match.start()]))
            out.append(Segment(match.group(), match.group()[1:-1]))
            pos = match.end()
    if pos < len(text):
        out.append(Segment(text[pos:]))
    return [Segment(seal(s.text)) if s.kind is None else s for s in out]
