"""The tokenizer is tiktoken's real o200k_base, loaded offline from a verified file."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import tiktoken
import tiktoken.registry

from common.llm import tokens
from common.llm.base import Message

# tiktoken_ext.openai_public.o200k_base() loads this URL and checks its sha256.
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"

CORPUS = [
    "Hello, world!",
    "RaptorFlow routes 'simple' tasks to GPT-5 nano; isn't that neat? It's 40% cheaper.",
    "Ünïcödé façade — naïve café, 日本語のテキスト, 한국어 문장, العربية, emoji 🚀🔥",
    '{"icps":[{"name":"Retail owner","pains":["time","cash flow"]}]}\n\n\t  indented\r\n',
    "12345678901234567890 3.14159 1e-9 $0.05/1M tokens",
    "<|endoftext|> is plain text inside a message",
    "    def f(x):\n        return x ** 2  # squares\n",
]


@pytest.fixture
def tiktoken_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tiktoken.Encoding:
    """tiktoken's own o200k_base, built by tiktoken from our vocabulary file placed in its cache:
    tiktoken checks the file's sha256 itself and would try (and fail) to download on mismatch."""
    cache_key = hashlib.sha1(O200K_URL.encode()).hexdigest()
    (tmp_path / cache_key).write_bytes(tokens._read_vocabulary())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return tiktoken.get_encoding("o200k_base")


def test_vocabulary_is_the_file_tiktoken_expects(tiktoken_reference: tiktoken.Encoding) -> None:
    ours = tokens.encoding()
    assert ours.name == tiktoken_reference.name == "o200k_base"
    assert ours._pat_str == tiktoken_reference._pat_str
    assert ours._special_tokens == tiktoken_reference._special_tokens
    assert ours.n_vocab == tiktoken_reference.n_vocab


def test_token_ids_match_tiktoken(tiktoken_reference: tiktoken.Encoding) -> None:
    ours = tokens.encoding()
    for text in CORPUS:
        assert ours.encode_ordinary(text) == tiktoken_reference.encode_ordinary(text), text


def test_known_counts() -> None:
    # Reference counts for o200k_base (GPT-4o/GPT-5 tokenizer).
    assert tokens.encoding().encode_ordinary("hello world") == [24912, 2375]
    assert tokens.count_tokens("") == 0


def test_a_tampered_vocabulary_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    class Fake:
        def joinpath(self, _: str) -> Fake:
            return self

        def read_bytes(self) -> bytes:
            return gzip.compress(b"aGVsbG8= 0\n")

    monkeypatch.setattr("importlib.resources.files", lambda _: Fake())
    with pytest.raises(tokens.TokenizerUnavailable, match="sha256"):
        tokens._read_vocabulary()


def test_message_framing_follows_openai() -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Summarise: the cat sat on the mat."),
    ]
    content = sum(tokens.count_tokens(m["content"]) for m in messages)
    assert tokens.count_message_tokens(messages) == content + 2 * 3 + 3


def test_prompt_bounds_cover_the_schema_and_gemini_margin() -> None:
    messages = [Message(role="user", content="Describe our ideal customer. " * 50)]
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    exact = tokens.count_message_tokens(messages)
    openai_bound = tokens.prompt_token_bound("openai", messages, schema)
    assert openai_bound > exact + tokens.count_tokens('{"type":"object"}')
    gemini_bound = tokens.prompt_token_bound("gemini", messages, None)
    assert gemini_bound >= len(messages[0]["content"].encode())


ADVERSARIAL = {
    "digits": "3141592653589793238462643383279502884197169399375105820974944" * 200,
    "cjk": "市场定位与理想客户画像每一个细分市场都需要不同的信息" * 300,
    "emoji": "🚀📈💡🎯🔥✨🧠📊" * 500,
    "code": "def f(x):\n    return {k: v**2 for k, v in x.items() if v % 3 == 0}\n" * 200,
    "one character": "a" * 100_000,
    "mixed scripts": "Ünïcödé Ελληνικά русский עברית العربية हिन्दी 한국어 ไทย " * 300,
}


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_the_gemini_bound_holds_for_any_text(kind: str) -> None:
    """No SentencePiece piece is shorter than one UTF-8 byte, so the byte length bounds the
    tokens of any text, whatever the script; the bound is at least that. (The earlier bound,
    o200k_base x 1.25, is below it for digits, which o200k_base packs three to a token.)"""
    text = ADVERSARIAL[kind]
    messages = [
        Message(role="system", content="Answer in JSON."),
        Message(role="user", content=text),
    ]
    bound = tokens.prompt_token_bound("gemini", messages, None)
    assert bound >= len(text.encode()) + len(b"Answer in JSON.") + 2
    if kind == "digits":
        assert math.ceil(tokens.count_tokens(text) * 1.25) < len(text.encode())
