"""Answers that did not answer (``refusal``): the model refused, said nothing, or was cut off.

- *refusal*: the response opens by declining ("I'm sorry, but I can't help with that", "As an AI language
  model, I cannot…"). Only the opening is read, so an answer that later says "I can't guarantee this
  works" is not a refusal, and neither is "I can't help but notice…".
- *empty*: a successful (``status = ok``) response with no visible text. Failed requests are not flagged
  here: their ``status`` already says so.
- *truncated*: the finish reason says the token limit stopped it (``length``), or ``tokens_out`` reached
  the limit — the request's ``metadata.max_tokens`` when logged, else the configured ``token_limit``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from detectors.base import Detection, Recordlike

_OPENING_CHARS = 300
_APOLOGY = r"(?:(?:i'?m|i am|we'?re|we are)\s+)?(?:so\s+|very\s+|really\s+)?(?:sorry|apologi[sz]e)"
_DECLINE = (
    r"\b(?:i|we)\s*(?:must|have to|will have to)\s+(?:respectfully\s+|politely\s+)?(?:decline|refuse)"
    r"|\b(?:i|we)\s*(?:can(?:no|')t|can not|am unable to|'m unable to|are unable to|am not able to"
    r"|'m not able to|won'?t|will not|do not feel comfortable|don'?t feel comfortable"
    r"|am not going to|'m not going to)\s+"
    r"(?:(?:be able to|really|currently|in good conscience)\s+)?"
    r"(?:help(?! but)|assist|provide|do that|comply|fulfil|share|support|create|write|generate|give|answer"
    r"|engage|continue|produce|disclose|reveal|offer|discuss|participate)"
)
_REFUSAL = re.compile(
    rf"\W*(?:{_APOLOGY}[^.!?\n]{{0,60}}[.!,;:]?\s*)?(?:as an ai[^.!?\n]{{0,40}}?,\s*)?"
    rf"(?:but\s+|however,?\s+|unfortunately,?\s+)?[^.!?\n]{{0,40}}?(?:{_DECLINE})"
    rf"|\W*(?:{_APOLOGY}|unfortunately)[^.!?\n]{{0,60}}\b(?:not able|unable|can(?:no|')t|cannot)\b"
)
# Every refusal `_REFUSAL` matches holds one of these words; an opening without any (most answers) skips
# the regex, which tries its declining phrases at each of the first 40 positions (~10x the cost).
_DECLINE_WORDS = ("cannot", "can't", "unable", "not able", "won't", "decline", "can not", "will not", "wont",
                  "comfortable", "not going", "refuse")
# The same test in one pass: every word but the last two holds an "n", so the pattern starts there (a literal
# first character, which the regex engine finds like `str.find`) and checks what precedes it by lookbehind;
# ~3x cheaper than twelve `in` tests. `test_the_hint_finds_every_decline_word` keeps the two in step.
_DECLINE_HINT = re.compile(
    r"n(?:(?<=can)(?:not|'t| not)|(?<=un)able|(?<=won)'?t|(?<=declin)e|ot (?:able|going)|(?<=will n)ot)"
)
_TRUNCATION_REASONS = frozenset({"length", "max_tokens", "max_output_tokens", "token_limit"})


def is_refusal(response: str, extra: re.Pattern[str] | None = None) -> bool:
    """Whether the opening of ``response`` declines the request.

    >>> is_refusal("I'm sorry, but I can't help with that."), is_refusal("To kill the process, run kill -9.")
    (True, False)
    """
    opening = response[:_OPENING_CHARS].lower().replace("’", "'")
    if (_DECLINE_HINT.search(opening) is not None or "refuse" in opening or "comfortable" in opening) \
            and _REFUSAL.match(opening):
        return True
    return extra is not None and extra.search(opening) is not None


class RefusalDetector:
    """Flags refused, empty and truncated answers.

    Score: 1 when flagged, else 0. Details: ``reasons``, a subset of refusal / empty / truncated.

    >>> from types import SimpleNamespace as R
    >>> rec = R(prompt="?", response="I cannot assist with that request.", status="ok", tokens_out=8,
    ...         finish_reason="stop", metadata={})
    >>> RefusalDetector().detect([rec])[0].details
    {'reasons': ['refusal']}
    """

    name = "refusal"

    def __init__(self, token_limit: int | None = None, extra_patterns: Sequence[str] = ()) -> None:
        self.token_limit = token_limit
        self._extra = re.compile("|".join(f"(?:{p})" for p in extra_patterns)) if extra_patterns else None

    def reasons(self, record: Recordlike) -> list[str]:
        if record.status != "ok":
            return []
        reasons = []
        if not record.response or record.response.isspace():
            reasons.append("empty")
        elif is_refusal(record.response, self._extra):
            reasons.append("refusal")
        if self._truncated(record):
            reasons.append("truncated")
        return reasons

    def _truncated(self, record: Recordlike) -> bool:
        if record.finish_reason is not None:
            return record.finish_reason.lower() in _TRUNCATION_REASONS
        metadata = getattr(record, "metadata", None) or {}
        limit = metadata.get("max_tokens") if isinstance(metadata, dict) else None
        if not isinstance(limit, int) or isinstance(limit, bool):
            limit = self.token_limit
        return limit is not None and record.tokens_out is not None and record.tokens_out >= limit

    def detect(self, records: Sequence[Recordlike]) -> list[Detection]:
        out = []
        clean: dict[str, list[str]] = {"reasons": []}  # shared by the batch's answers that answered
        for record in records:
            reasons = self.reasons(record)
            if reasons:
                out.append(Detection(self.name, 1.0, True, {"reasons": reasons}))
            else:
                out.append(Detection(self.name, 0.0, False, clean))
        return out
