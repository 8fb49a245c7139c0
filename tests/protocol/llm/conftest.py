"""Loopback OpenAI and Gemini servers, and the real providers pointed at them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.llm.providers.gemini import GeminiProvider
from common.llm.providers.openai import OpenAIProvider
from tests.protocol.llm.servers import FakeApi

OPENAI_KEY = "sk-proto-0penai-k3y-must-not-leak"
GEMINI_KEY = "AIza-proto-g3mini-k3y-must-not-leak"
# Short enough that the timeout fault keeps the suite quick, long enough for a loaded CI box.
TIMEOUT_SECONDS = 1.5
SLOW_REPLY_SECONDS = 4.0


@pytest.fixture
def openai_api() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.stop()


@pytest.fixture
def gemini_api() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.stop()


@pytest.fixture
def openai_provider(openai_api: FakeApi) -> OpenAIProvider:
    return OpenAIProvider(
        api_key=OPENAI_KEY,
        base_url=f"http://127.0.0.1:{openai_api.port}/v1",
        timeout_seconds=TIMEOUT_SECONDS,
    )


@pytest.fixture
def gemini_provider(gemini_api: FakeApi) -> GeminiProvider:
    return GeminiProvider(
        api_key=GEMINI_KEY,
        base_url=f"http://127.0.0.1:{gemini_api.port}/",
        timeout_seconds=TIMEOUT_SECONDS,
    )
