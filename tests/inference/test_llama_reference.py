"""The HTTP backend against a real small model: llama-cpp-python's OpenAI-compatible server running
SmolLM2-135M on the CPU. It has no /health, answers one request at a time, and — started with --n_batch 1 —
gives the same temperature-0 answer to the same prompt whatever was asked before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from inference.base import Answer, Prompt
from inference.client import EndpointSettings, OpenAIBackend
from tests.inference.llama_server import MODEL_ALIAS, llama_server, missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing() is not None, reason=f"CPU REFERENCE MODEL UNAVAILABLE: {missing()}"),
]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with llama_server() as url:
        yield url


def ask_all(url: str, prompts: list[Prompt], max_tokens: int = 32) -> list[Answer]:
    async def go() -> list[Answer]:
        backend = OpenAIBackend(EndpointSettings(url=url, model=MODEL_ALIAS, max_tokens=max_tokens))
        try:
            await backend.check()
            return [await backend.answer(p) for p in prompts]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_a_chat_prompt_gets_a_real_answer_with_token_counts(server_url: str) -> None:
    [answer] = ask_all(server_url, [Prompt.chat("What is the capital of France?")])
    assert "Paris" in answer.text
    assert answer.model == MODEL_ALIAS and answer.endpoint == server_url
    assert answer.tokens_in is not None and answer.tokens_in > 5
    assert answer.tokens_out is not None and 0 < answer.tokens_out <= 32
    assert answer.finish_reason in ("stop", "length") and answer.latency_ms > 0


def test_a_plain_prompt_is_continued_through_the_completions_api(server_url: str) -> None:
    [answer] = ask_all(server_url, [Prompt("The capital of France is")], max_tokens=8)
    assert answer.text.strip() and answer.tokens_out is not None and answer.tokens_out <= 8


def test_temperature_zero_answers_do_not_depend_on_what_was_asked_before(server_url: str) -> None:
    france, bread, france_again = ask_all(server_url, [
        Prompt.chat("What is the capital of France?"),
        Prompt.chat("How do I bake bread?"),
        Prompt.chat("What is the capital of France?"),
    ], max_tokens=24)
    assert france.text == france_again.text
    assert bread.text != france.text
