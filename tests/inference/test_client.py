"""The HTTP backend against a real server on loopback that fails on purpose: 429, 500, malformed JSON,
dropped connections and slow answers are retried with back-off; a rejected prompt is not."""

from __future__ import annotations

import asyncio
import socket

import pytest

from inference.base import PermanentError, Prompt, TransientError
from inference.client import EndpointSettings, OpenAIBackend
from tests.helpers import wait_for
from tests.inference.scripted_server import Script, scripted_server


def backend_for(url: str, **overrides: object) -> OpenAIBackend:
    settings = {"url": url, "model": "ref-model", "timeout_s": 5.0, "max_retries": 3,
                "retry_initial_s": 0.01, "retry_max_s": 0.05} | overrides
    return OpenAIBackend(EndpointSettings(**settings))  # type: ignore[arg-type]


def ask(backend: OpenAIBackend, prompt: Prompt):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await backend.answer(prompt)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_an_overloaded_then_broken_server_is_retried_until_it_answers() -> None:
    script = Script(steps=["429", "500", "malformed", "drop"])
    with scripted_server(script) as url:
        answer = ask(backend_for(url, max_retries=4), Prompt.chat("What is the capital of France?"))
    assert answer.text == "You asked: What is the capital of France?"
    assert len(script.requests) == 5
    assert answer.tokens_in == 6 and answer.finish_reason == "stop"


def test_requests_are_deterministic_by_default_and_routed_by_prompt_kind() -> None:
    script = Script()
    with scripted_server(script) as url:
        ask(backend_for(url, max_tokens=64), Prompt.chat("hello"))
        ask(backend_for(url + "/v1/"), Prompt("Once upon a time"))
    (chat_path, chat_body), (plain_path, plain_body) = script.requests
    assert chat_path == "/v1/chat/completions"
    assert chat_body["messages"] == [{"role": "user", "content": "hello"}]
    assert (chat_body["temperature"], chat_body["seed"], chat_body["max_tokens"]) == (0.0, 0, 64)
    assert plain_path == "/v1/completions" and plain_body["prompt"] == "Once upon a time"


def test_a_server_that_never_answers_in_time_is_a_transient_failure() -> None:
    script = Script(steps=["slow", "slow"], slow_s=3.0)
    with scripted_server(script) as url:
        with pytest.raises(TransientError, match="no answer within"):
            ask(backend_for(url, timeout_s=0.2, max_retries=1), Prompt.chat("hi"))
        # The client gives up after 0.2 s; on a busy machine the server's thread may read the second request
        # only after that, so wait for it to be counted (and for no third).
        wait_for(lambda: len(script.requests) >= 2, 10, "the retry to reach the server")
    assert len(script.requests) == 2


def test_retries_stop_after_the_configured_number_and_say_why() -> None:
    script = Script(then="500")
    with scripted_server(script) as url, pytest.raises(TransientError, match=r"HTTP 500 \(after 3 attempts\)"):
        ask(backend_for(url, max_retries=2), Prompt.chat("hi"))
    assert len(script.requests) == 3


def test_a_rejected_prompt_is_permanent_and_not_retried() -> None:
    script = Script(steps=["400"])
    with scripted_server(script) as url, pytest.raises(PermanentError, match="HTTP 400"):
        ask(backend_for(url), Prompt.chat("a prompt longer than the context"))
    assert len(script.requests) == 1


def test_check_accepts_a_server_without_health_but_insists_on_the_model() -> None:
    async def check(url: str, model: str = "ref-model") -> None:
        backend = backend_for(url, model=model)
        try:
            await backend.check()
        finally:
            await backend.aclose()

    with scripted_server(Script(health=404)) as url:
        asyncio.run(check(url))  # llama.cpp's server has no /health
        with pytest.raises(PermanentError, match="'other-model' is not served here"):
            asyncio.run(check(url, "other-model"))
    with scripted_server(Script(health=503)) as url, pytest.raises(TransientError, match="/health answered 503"):
        asyncio.run(check(url))


def test_a_reference_that_is_not_running_is_a_transient_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    with pytest.raises(TransientError, match="connection failed"):
        ask(backend_for(f"http://127.0.0.1:{port}", max_retries=1), Prompt.chat("hi"))
