"""The default reference backend: vLLM's OpenAI-compatible server (``vllm serve MODEL``) over HTTP.

Chat prompts go to ``/v1/chat/completions``, plain prompts to ``/v1/completions``. Settings are deterministic by
default (temperature 0, a fixed seed, a ``max_tokens`` cap) so that a disagreement means the models differ, not
the dice. Each attempt has a wall-clock timeout; 429, 5xx, dropped connections, timeouts and malformed bodies
are retried with jittered exponential back-off (a ``Retry-After`` is honoured); any other 4xx is permanent.

Any OpenAI-compatible server works. llama.cpp's server has no ``/health`` (404), so a 404 there is accepted;
``/v1/models`` must answer and list the model.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from inference.backoff import Backoff
from inference.base import Answer, PermanentError, Prompt, TransientError
from inference.tls import client_context

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(slots=True, frozen=True)
class EndpointSettings:
    """One OpenAI-compatible reference endpoint and the request settings used against it."""

    url: str
    """Base URL, e.g. ``http://gpu-1:8000`` (a trailing ``/v1`` is accepted)."""
    model: str
    api_key: str | None = field(default=None, repr=False)
    name: str | None = None
    """Label stored with each comparison; defaults to the URL."""
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = 0
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_initial_s: float = 0.5
    retry_max_s: float = 20.0
    ca_file: str | None = None
    """PEM file of the CA that signed an ``https`` server's certificate (default: the system's roots)."""


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def display_url(url: str) -> str:
    """The URL as rows, alerts, logs and pages show it: without credentials.

    A reference behind a proxy may carry basic auth in its URL (httpx sends it), or a token as the user name or
    in the query; the URL is also the reference's default label, stored with every comparison and health row
    and sent to Slack in alert scopes. So the user part is replaced by ``***`` and query values are masked.

    >>> display_url("https://alice:hunter2@gpu-1:8000/v1?api-key=s3cret&x=1")
    'https://***@gpu-1:8000/v1?api-key=***&x=***'
    >>> display_url("http://127.0.0.1:8000")
    'http://127.0.0.1:8000'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{pair.split('=', 1)[0]}=***" for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _parse(body: Any, chat: bool) -> tuple[str, int | None, int | None, str | None]:
    """(text, prompt tokens, completion tokens, finish reason) from an OpenAI-shaped body, or ValueError."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise ValueError("response has no 'choices'")
    choice = body["choices"][0]
    text = choice.get("message", {}).get("content") if chat else choice.get("text")
    if not isinstance(text, str):
        raise ValueError("response choice has no text")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    finish = choice.get("finish_reason")
    return (
        text,
        tokens_in if isinstance(tokens_in, int) else None,
        tokens_out if isinstance(tokens_out, int) else None,
        finish if isinstance(finish, str) else None,
    )


class OpenAIBackend:
    """An OpenAI-compatible server as a `inference.base.Backend`.

    >>> backend = OpenAIBackend(EndpointSettings(url="http://127.0.0.1:8000/v1", model="smollm2"))
    >>> backend.name, backend.model
    ('http://127.0.0.1:8000', 'smollm2')

    Then ``await backend.check()`` once, ``await backend.answer(Prompt.chat("Hi"))`` per prompt (concurrently is
    fine; the replay budget bounds how many), ``await backend.aclose()`` at the end.
    """

    def __init__(self, settings: EndpointSettings, *, max_connections: int = 16) -> None:
        self.settings = settings
        self.base_url = _base_url(settings.url)
        self.name = settings.name or display_url(self.base_url)
        self.model = settings.model
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=client_context(settings.ca_file),
        )

    async def check(self) -> None:
        """Raise `TransientError` if the server is unreachable or unhealthy, `PermanentError` if it does not
        serve ``model``."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                health = await self._http.get("/health")
                if health.status_code not in (200, 404):
                    raise TransientError(f"/health answered {health.status_code}", endpoint=self.name)
                models = await self._http.get("/v1/models")
        except (httpx.HTTPError, TimeoutError) as exc:
            raise TransientError(f"reference unreachable: {type(exc).__name__}", endpoint=self.name) from None
        if models.status_code != 200:
            raise TransientError(f"/v1/models answered {models.status_code}", endpoint=self.name)
        try:
            served = [entry["id"] for entry in models.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise TransientError("/v1/models answered malformed JSON", endpoint=self.name) from None
        if self.model not in served:
            raise PermanentError(f"model {self.model!r} is not served here; served: {served}", endpoint=self.name)

    def _request(self, prompt: Prompt) -> tuple[str, dict[str, Any]]:
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "max_tokens": s.max_tokens, "temperature": s.temperature}
        if s.seed is not None:
            body["seed"] = s.seed
        if prompt.messages is not None:
            return "/v1/chat/completions", body | {"messages": list(prompt.messages)}
        return "/v1/completions", body | {"prompt": prompt.text}

    async def answer(self, prompt: Prompt) -> Answer:
        path, body = self._request(prompt)
        chat = prompt.messages is not None
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        reason = ""
        for attempt in range(self.settings.max_retries + 1):
            retry_after = None
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    response = await self._http.post(path, json=body)
                    if response.status_code == 200:
                        text, tokens_in, tokens_out, finish = _parse(response.json(), chat)
                        return Answer(
                            text=text,
                            model=self.model,
                            endpoint=self.name,
                            latency_ms=(time.perf_counter() - started) * 1000.0,
                            tokens_in=tokens_in,
                            tokens_out=tokens_out,
                            finish_reason=finish,
                        )
            except TimeoutError:
                reason = f"no answer within {self.settings.timeout_s:g} s"
            except httpx.HTTPError as exc:
                reason = f"connection failed: {type(exc).__name__}"
            except ValueError as exc:  # includes JSONDecodeError
                reason = f"malformed response: {exc}"
            else:
                if response.status_code not in _RETRY_STATUS:
                    raise PermanentError(
                        f"HTTP {response.status_code}: {response.text[:200]}", endpoint=self.name
                    )
                reason = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            if attempt < self.settings.max_retries:
                await asyncio.sleep(backoff.next_delay(retry_after))
        raise TransientError(
            f"{reason} (after {self.settings.max_retries + 1} attempts)", endpoint=self.name
        )

    async def queue_length(self) -> float | None:
        """Requests the server has queued but not started (``vllm:num_requests_waiting``), or None when it
        does not say (no ``/metrics``, unreachable): what `inference.guest.GuestLimit` backs off on."""
        from inference.health import scrape  # prometheus_client loads only where a queue is watched

        seen = await scrape(self._http, timeout_s=min(5.0, self.settings.timeout_s))
        return seen.gauges.get("waiting") if seen.up else None

    async def aclose(self) -> None:
        await self._http.aclose()
