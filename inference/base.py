"""The contract every reference backend keeps: a prompt goes in, an answer (or a typed failure) comes out.

Two backends keep it: `inference.client.OpenAIBackend` (vLLM's OpenAI-compatible server over HTTP, the
default) and `inference.inprocess.InProcessBackend` (``vllm.LLM`` in this process, on a GPU host). The replay
worker only sees this protocol, so it cannot tell them apart and knows nothing of how answers are made.

Failures are split in two because the caller must treat them differently: a `TransientError` (the server is
down, overloaded, slow, or answered garbage) means "try this prompt again later, and back off"; a
`PermanentError` (the server rejected this prompt, e.g. it is longer than the context) means "this prompt will
never replay; record why and move on".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(slots=True, frozen=True)
class Prompt:
    """What to send. ``messages`` (chat turns) go to the chat API; a bare ``text`` goes to the completions API.

    >>> Prompt.chat("Hi").messages
    ({'role': 'user', 'content': 'Hi'},)
    """

    text: str
    messages: tuple[dict[str, str], ...] | None = None

    @classmethod
    def chat(cls, text: str) -> Prompt:
        """A plain prompt sent as a single user turn (how records without stored chat turns are replayed)."""
        return cls(text=text, messages=({"role": "user", "content": text},))


@dataclass(slots=True, frozen=True)
class Answer:
    """The reference model's answer and what it cost."""

    text: str
    model: str
    endpoint: str
    latency_ms: float
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None


class InferenceError(Exception):
    """A prompt got no answer. ``endpoint`` says which reference; the message never holds a secret."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class TransientError(InferenceError):
    """The reference is down, overloaded, slow or broken: retry later and back off."""


class PermanentError(InferenceError):
    """The reference rejected this prompt (a 4xx other than 429): replaying it again would fail the same way."""


@runtime_checkable
class Backend(Protocol):
    """A reference model. ``name`` labels its rows (`shadow_comparisons.reference_endpoint`)."""

    name: str
    model: str

    async def check(self) -> None:
        """Raise `TransientError` unless the reference is up and serves ``model``."""
        ...

    async def answer(self, prompt: Prompt) -> Answer:
        """One answer, or `TransientError` / `PermanentError`. Safe to call concurrently."""
        ...

    async def aclose(self) -> None: ...
