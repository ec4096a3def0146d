"""Redaction before storage: each PII/secret finding becomes a typed placeholder (``[EMAIL]``, ``[AWS_KEY]``).

The detector chain redacts every record when ``pipeline.store_text = "redacted"`` (the default); the store
(`monitor.storage.store.text_policy`) writes that text and never falls back to the raw text. The error
message, feedback comment and metadata are redacted the same way (`redact_metadata` for the metadata object).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from detectors.base import Finding, MetadataPath
from detectors.secrets import SECRET_KINDS, may_hold_secrets, scan_secrets

_SECRET = frozenset(SECRET_KINDS)


def seal(text: str) -> str:
    """``text`` with every credential the secrets detector finds in it replaced by ``[KIND]``.

    The one masking rule for everything a human or a file sees — review page, exports, alerts, logs, dead-letter
    reasons — whatever the process's own settings and whatever the database kept: it looks at the text itself,
    so text stored in full, stored before a detector improved, or never stored is sealed the same way.

    >>> seal("retry with key AKIAZ7Q4K2M3N6P5R2TX please"), seal("nothing here")
    ('retry with key [AWS_KEY] please', 'nothing here')
    """
    if not text or not may_hold_secrets(text):
        return text
    return redact(text, scan_secrets(text, "text"))


def seal_json(value: Any) -> Any:
    """`seal` applied to every string (and key) inside a JSON-like value; other values as they are."""
    if isinstance(value, str):
        return seal(value)
    if isinstance(value, dict):
        return {seal(k) if isinstance(k, str) else k: seal_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [seal_json(v) for v in value]
    return value


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with each finding's span replaced by ``[KIND]``; overlapping spans merge into one placeholder
    (a secret's kind wins over a PII kind, then the longer span's).

    >>> redact("mail bob@x.io key AKIA4HKQ2ZP7LW3NXR6T", [Finding("EMAIL", "prompt", 5, 13),
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


def redact_metadata(metadata: dict[str, Any], findings: Iterable[Finding]) -> dict[str, Any]:
    """A copy of ``metadata`` with each finding's text (located by its ``path``) redacted: a string value
    becomes its redacted text, a number that held a card number becomes ``"[CARD]"``, a key is renamed to
    its redacted text (``"[EMAIL]"``; ``"[EMAIL]#2"`` when that key is taken). ``metadata`` is not changed.

    >>> redact_metadata({"to": {"bob@corp.io": "hi bob@corp.io"}, "n": 1},
    ...                 [Finding("EMAIL", "metadata", 3, 14, ("to", "bob@corp.io")),
    ...                  Finding("EMAIL", "metadata", 0, 11, ("to", "bob@corp.io", None))])
    {'to': {'[EMAIL]': 'hi [EMAIL]'}, 'n': 1}
    """
    by_path: dict[MetadataPath, list[Finding]] = defaultdict(list)
    for f in findings:
        by_path[f.path].append(f)
    out = copy.deepcopy(metadata)
    keys = []
    for path, found in by_path.items():
        if not path:
            continue
        if path[-1] is None:
            keys.append((path[:-1], found))
            continue
        parent = _node(out, path[:-1])
        value = parent[path[-1]]
        parent[path[-1]] = redact(value if isinstance(value, str) else str(value), found)
    # Values first (their paths name the keys as they were), then keys, deepest first for the same reason.
    for path, found in sorted(keys, key=lambda item: -len(item[0])):
        parent = _node(out, path[:-1])
        old = path[-1]
        new = renamed = redact(str(old), found)
        suffix = 1
        while new in parent and new != old:
            suffix += 1
            new = f"{renamed}#{suffix}"
        items = list(parent.items())
        parent.clear()
        parent.update((new if k == old else k, v) for k, v in items)
    return out


def _node(root: Any, path: MetadataPath) -> Any:
    for step in path:
        root = root[step]
    return root
