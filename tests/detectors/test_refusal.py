"""Refusals, empty answers and cut-off answers are flagged; caveats and idioms are not refusals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from detectors.refusal import _DECLINE_HINT, _DECLINE_WORDS, RefusalDetector, is_refusal


def _rec(response: str, *, status: str = "ok", finish_reason: str | None = "stop", tokens_out: int | None = 50,
         metadata: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(prompt="?", response=response, status=status, finish_reason=finish_reason,
                           tokens_out=tokens_out, metadata=metadata or {})


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that.",
    "I cannot assist with this request.",
    "As an AI language model, I am unable to provide that information.",
    "I must decline this request.",
    "I’m not able to share that.",  # typographic apostrophe
    "Sorry. I won't be able to help with that.",
    "I apologize, but I cannot fulfill this request.",
])
def test_refusals_are_recognised(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize("text", [
    "Sure! Note that I can't guarantee this works on Windows.",
    "I can't help but notice the bug is on line 3.",
    "You can't do that in Python; use a list comprehension instead.",
    "If it hangs, kill the process and start again. I cannot stress this enough.",
    "We do not share data with third parties.",
    "Here is the answer. Later on: I'm sorry, but I can't help with the rest of your homework.",
])
def test_answers_with_refusal_words_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_empty_refused_and_truncated_answers_are_flagged_with_their_reason() -> None:
    det = RefusalDetector()
    records = [
        _rec("Here you go: 42."),
        _rec("  \n "),
        _rec("I'm sorry, but I can't help with that."),
        _rec("The first step is to", finish_reason="length"),
        _rec("", status="error", finish_reason=None),
    ]
    assert [d.details["reasons"] for d in det.detect(records)] == [[], ["empty"], ["refusal"], ["truncated"], []]
    assert [d.flagged for d in det.detect(records)] == [False, True, True, True, False]


def test_a_length_at_the_token_limit_counts_as_truncated_when_no_finish_reason_is_logged() -> None:
    configured = RefusalDetector(token_limit=256)
    at_limit = _rec("long answer", finish_reason=None, tokens_out=256)
    below = _rec("short answer", finish_reason=None, tokens_out=100)
    request_limit = _rec("answer", finish_reason=None, tokens_out=64, metadata={"max_tokens": 64})
    assert [d.flagged for d in configured.detect([at_limit, below, request_limit])] == [True, False, True]
    assert not RefusalDetector().detect([at_limit])[0].flagged  # no limit known


def test_deployments_can_add_their_own_refusal_phrases() -> None:
    det = RefusalDetector(extra_patterns=[r"^je ne peux pas"])
    assert det.detect([_rec("Je ne peux pas vous aider.")])[0].details["reasons"] == ["refusal"]


@pytest.mark.parametrize("word", _DECLINE_WORDS)
def test_the_hint_finds_every_decline_word(word: str) -> None:
    """The one-pass prefilter must never rule out an opening that holds a declining word."""
    opening = f"well, i {word} do it"
    assert _DECLINE_HINT.search(opening) or "refuse" in opening or "comfortable" in opening


def test_the_hint_passes_over_ordinary_answers() -> None:
    assert _DECLINE_HINT.search("you can see the cannon from the northern window; none of it is closed") is None
