"""The offline provider: deterministic, schema-valid placeholder answers without any API key.

It makes RaptorFlow runnable end to end on a laptop or in CI: every answer is generated from the
request's JSON schema (array sizes, enums and numeric bounds respected; integers in arrays such as
`week` or `rank` count 1, 2, 3, ...; an enum inside nested arrays cycles through its values), and
grounded in the business named by the prompt's `BUSINESS_JSON: {...}` line, so a reader sees it
is about that business. Every text starts with "[offline]" so nobody mistakes it for analysis;
texts of one answer are numbered apart, and those of different requests carry a short mark of
their request, so that no two answers repeat each other word for word (as a model's would not).
Tokens are counted with the real tokenizer and the router prices them as the routed model, so
budgets behave as they would online.

**Weak answers.** Given a rate per model, a seeded share of answers is weak, deterministically
(the same seed, model and messages give the same draw): schema-valid, but every text merely
repeats the business's own description and every number sits at its bound. Sense checks catch
such an answer; asked again (a new request, a new draw) the model may do better. Tests and
benches use it to see repairs and escalations without a provider.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.llm.base import (
    InvalidRequest,
    Message,
    OutputSink,
    ProviderRequest,
    ProviderResponse,
)
from common.llm.tokens import count_message_tokens, count_tokens, encoding
from common.spend.records import TokenUsage

PROVIDER = "offline"
MARK = "[offline]"
_BUSINESS_LINE = re.compile(r"^BUSINESS_JSON:\s*(\{.*\})\s*$", re.MULTILINE)
# What an item of a list of objects is called in text ("ICP 2 for Acme").
_ITEM_NOUNS = {
    "icps": "ICP",
    "options": "Option",
    "asset_templates": "Brief",
    "north_star_metrics": "Metric",
    "calendar": "Week",
    "competitor_ladder": "Rung",
    "route_back": "Trigger",
    "amec": "Stage",
}
_DEFAULT_ARRAY_SIZE = 3
# How many words of the business's description a weak answer may repeat, at most and at least.
_ECHO_WORDS = 48
_ECHO_MIN_WORDS = 8
# Names that refer to something (an ICP, a competitor): the same in every request.
_REFERENCES = frozenset({"name", "option_name", "icp", "competitor"})
# A streamed answer arrives in at most this many chunks of at least this many tokens.
_STREAM_CHUNKS = 8
_STREAM_CHUNK_TOKENS = 16


@dataclass(frozen=True)
class Business:
    """The parts of the business input the placeholder text mentions."""

    name: str = "the business"
    industry: str = "its industry"
    goals: tuple[str, ...] = ("grow revenue",)
    competitors: tuple[str, ...] = field(default_factory=tuple)
    target_market: str = "its target market"
    icp_count: int | None = None
    description: str = "A business."


def business_from(messages: Sequence[Message]) -> Business:
    """The business described by the last `BUSINESS_JSON:` line of `messages` (a generic one if
    there is none or it is not valid JSON)."""
    found: dict[str, Any] | None = None
    for message in messages:
        for match in _BUSINESS_LINE.finditer(message["content"]):
            try:
                candidate = json.loads(match.group(1))
            except json.JSONDecodeError:
                continue
            if isinstance(candidate, dict):
                found = candidate
    if found is None:
        return Business()

    def text(key: str, default: str) -> str:
        value = found.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else default

    def texts(key: str) -> tuple[str, ...]:
        value = found.get(key)
        if not isinstance(value, list):
            return ()
        return tuple(v.strip() for v in value if isinstance(v, str) and v.strip())

    icp_count = found.get("icp_count")
    # Cut to a few tokens each so an answer's token count stays bounded whatever the input.
    return Business(
        name=_short(text("name", Business.name), 12),
        industry=_short(text("industry", Business.industry), 12),
        goals=tuple(_short(g, 16) for g in texts("goals")) or Business.goals,
        competitors=tuple(_short(c, 12) for c in texts("competitors")),
        target_market=_short(text("target_market", Business.target_market), 24),
        icp_count=icp_count if isinstance(icp_count, int) else None,
        # Whole words, no ellipsis: a weak answer repeats them as they were written.
        description=" ".join(text("description", Business.description).split()[:_ECHO_WORDS]),
    )


def _short(text: str, max_tokens: int) -> str:
    ids = encoding().encode_ordinary(text)
    if len(ids) <= max_tokens:
        return text
    return encoding().decode(ids[:max_tokens]).rstrip() + "…"


# fmt: off
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_CALLS = (
    "alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
)
# fmt: on


def spelled(n: int) -> str:
    """`n` in digits and two words (its number, below 100, and a call sign): texts told apart
    by words, not only by a digit, as a model's distinct answers would be."""
    if n < 20:
        number = _ONES[n]
    elif n < 100:
        tens, ones = divmod(n, 10)
        number = _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    else:
        number = str(n)
    return f"{n} {number} {_CALLS[(n - 1) % len(_CALLS)]}"


def _label(key: str | None) -> str:
    return (key or "item").replace("_", " ")


def _clip(text: str, schema: dict[str, Any]) -> str:
    limit = schema.get("maxLength")
    if isinstance(limit, int) and len(text) > limit:
        text = text[: max(limit - 1, 1)].rstrip() + "…"
        text = text[:limit]
    return text


def _words_within(text: str, limit: int | None) -> str:
    """As many whole words of `text` as fit in `limit` characters (at least one)."""
    if limit is None or len(text) <= limit:
        return text
    words = text.split()
    kept = words[0][:limit]
    for word in words[1:]:
        if len(kept) + 1 + len(word) > limit:
            break
        kept += " " + word
    return kept


class _Generator:
    def __init__(
        self,
        business: Business,
        *,
        longest: bool = False,
        cap: int | None = None,
        tag: str = "",
        weak: bool = False,
    ):
        self.b = business
        self.longest = longest
        self.cap = cap
        self.tag = tag
        self.weak = weak
        self._seen: dict[tuple[str, str | None], int] = {}

    def _next(self, kind: str, key: str | None) -> int:
        """How many values of this kind for `key` this answer holds so far (then one more)."""
        count = self._seen.get((kind, key), 0)
        self._seen[(kind, key)] = count + 1
        return count

    def value(self, schema: dict[str, Any], key: str | None, index: int | None, owner: str) -> Any:
        if "enum" in schema:
            options = schema["enum"]
            return options[self._next("enum", key) % len(options)]
        if "anyOf" in schema:
            choices = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
            return self.value(choices[0], key, index, owner)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            return {
                name: self.value(child, name, index, key or owner)
                for name, child in schema.get("properties", {}).items()
            }
        if kind == "array":
            return self.array(schema, key)
        if kind == "string":
            sound = _clip(self.padded(self.text(schema, key, index, owner), schema), schema)
            if self.weak:
                # As long as the sound text, in the business's own words.
                said = max(len(sound.split()), _ECHO_MIN_WORDS)
                echo = " ".join(self.b.description.split()[:said])
                return _words_within(echo, schema.get("maxLength"))
            return sound
        if kind == "integer":
            return int(self.number(schema, float((index or 0) + 1)))
        if kind == "number":
            return self.extreme(schema) if self.weak else self.number(schema, None)
        if kind == "boolean":
            return not self.weak
        return None

    def extreme(self, schema: dict[str, Any]) -> float:
        """A number at the top of what `schema` allows (far above its usual value if open)."""
        if "maximum" in schema:
            return float(schema["maximum"])
        if "exclusiveMaximum" in schema:
            high = float(schema["exclusiveMaximum"])
            low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0)))
            return high - (high - low) / 1000
        return self.number(schema, None) * 100

    def array(self, schema: dict[str, Any], key: str | None) -> list[Any]:
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        size = max(low, _DEFAULT_ARRAY_SIZE)
        if self.longest and high is not None:
            size = high
        if key == "icps" and self.b.icp_count is not None:
            size = max(low, self.b.icp_count)
        if high is not None:
            size = min(size, high)
        items = schema.get("items", {})
        return [self.value(items, key, i, key or "item") for i in range(size)]

    def padded(self, text: str, schema: dict[str, Any]) -> str:
        """`text`, and with `longest` words about the business after it up to maxLength."""
        limit = schema.get("maxLength")
        if not self.longest or not isinstance(limit, int) or "enum" in schema:
            return text
        if self.cap is not None:
            limit = min(limit, self.cap)
        b = self.b
        words = f" {b.name} {b.industry} for {b.target_market}: {' / '.join(b.goals)}."
        while len(text) < limit:
            text += words
        return text[:limit].rstrip()

    def number(self, schema: dict[str, Any], preferred: float | None) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if preferred is None:
            if low is not None and high is not None:
                preferred = (low + high) / 2
            elif low is not None:
                preferred = low + 10
            elif high is not None:
                preferred = high - 1
            else:
                preferred = 10.0
        if low is not None:
            floor = low + 1 if "minimum" not in schema and schema.get("type") == "integer" else low
            preferred = max(preferred, floor)
        if high is not None:
            ceiling = (
                high - 1 if "maximum" not in schema and schema.get("type") == "integer" else high
            )
            preferred = min(preferred, ceiling)
        return preferred

    def text(self, schema: dict[str, Any], key: str | None, index: int | None, owner: str) -> str:
        b = self.b
        seen = self._next("text", key)
        n = seen + 1
        goal = b.goals[(index or 0) % len(b.goals)]
        tag = "" if key in _REFERENCES else self.tag
        if key == "competitor":
            if seen < len(b.competitors):
                return b.competitors[seen]
            return f"{MARK} Competitor {n} of {b.name}"
        if key == "icp":
            count = b.icp_count or _DEFAULT_ARRAY_SIZE
            return f"{MARK} ICP {seen % count + 1} for {b.name}"
        if key in ("name", "option_name"):
            noun = _ITEM_NOUNS.get(owner, _label(owner).capitalize())
            if key == "option_name":
                noun, n = "Option", 1
            return f"{MARK} {noun} {n} for {b.name}"
        if key == "source":
            return f"{MARK} placeholder source {n}: no research was run for {b.name}"
        if schema.get("maxLength", 0) > 200:
            rivals = ", ".join(b.competitors[:3]) or "its competitors"
            return (
                f"{MARK} {_label(key).capitalize()} {spelled(n)}{tag} for {b.name} "
                f"({b.industry}): '{goal}', against {rivals}, for {b.target_market}."
            )
        return f"{MARK} {_label(key).capitalize()} {spelled(n)}{tag} for {b.name}: {goal}"


def request_tag(messages: Sequence[Message]) -> str:
    """A short mark of the request (two made-up words from its whole conversation), which
    texts of its answer carry."""
    asked = json.dumps([m["content"] for m in messages]).encode()
    digest = hashlib.sha256(asked).digest()
    letters = [chr(ord("a") + byte % 26) for byte in digest[:6]]
    return f" #{''.join(letters[:3])}-{''.join(letters[3:])}"


def placeholder_json(
    json_schema: dict[str, Any],
    messages: Sequence[Message],
    *,
    longest: bool = False,
    max_tokens: int | None = None,
    weak: bool = False,
) -> str:
    """A deterministic JSON document valid against `json_schema`, about the prompt's business.

    With `longest`, the largest document the schema allows, for checks of the worst case
    (memory, cost): every array at its `maxItems` (the ICPs at the count the business asked
    for) and every string at its `maxLength`, or, when that would take more than `max_tokens`
    (a model's output bound), every string at most as long as the longest length that fits.
    With `weak`, a weak answer (see the module docstring).
    """
    business = business_from(messages)
    tag = request_tag(messages)

    def render(cap: int | None) -> str:
        generator = _Generator(business, longest=longest, cap=cap, tag=tag, weak=weak)
        value = generator.value(json_schema, None, None, "answer")
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    text = render(None)
    if not longest or max_tokens is None or count_tokens(text) <= max_tokens:
        return text
    # Bisect the longest string length whose document still fits the output bound.
    low, high, best = 0, max(len(text), 1), render(0)
    while low < high:
        middle = (low + high + 1) // 2
        candidate = render(middle)
        if count_tokens(candidate) <= max_tokens:
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


def placeholder_text(messages: Sequence[Message]) -> str:
    """A deterministic one-line plain-text answer about the prompt's business."""
    b = business_from(messages)
    ask = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    words = " ".join(line for line in ask.splitlines() if not line.startswith("BUSINESS_JSON:"))
    gist = " ".join(words.split()[:20])
    return f"{MARK} Placeholder answer for {b.name} ({b.industry}) to: {gist}"


def weak_draw(seed: int, model: str, messages: Sequence[Message]) -> float:
    """A number in [0, 1) fixed by the seed, the model and the messages."""
    payload = json.dumps([seed, model, list(messages)], sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") / 2**64


class OfflineProvider:
    """A provider that needs no network: answers are placeholders, usage is counted locally.

    Args:
        latency_ms: how long each answer takes (spread over its chunks when streamed).
        sleep: how to wait (tests pass a recorder).
        weak_rates: the share of weak answers (see the module docstring) of each model, by
            name; unlisted models answer well.
        seed: the weak answers' seed.
    """

    name = PROVIDER

    def __init__(
        self,
        *,
        latency_ms: int = 0,
        sleep: Callable[[float], None] | None = None,
        weak_rates: Mapping[str, float] | None = None,
        seed: int = 0,
    ):
        self._latency_s = latency_ms / 1000
        self._sleep = sleep if sleep is not None else time.sleep
        self._weak_rates = dict(weak_rates or {})
        self._seed = seed

    def weak(self, request: ProviderRequest) -> bool:
        """Whether this request gets a weak answer."""
        rate = self._weak_rates.get(request.model, 0.0)
        return rate > 0 and weak_draw(self._seed, request.model, request.messages) < rate

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        started = time.perf_counter()
        if request.json_schema is not None:
            text = placeholder_json(request.json_schema, request.messages, weak=self.weak(request))
        else:
            text = placeholder_text(request.messages)
        output_tokens = count_tokens(text)
        if output_tokens > request.max_output_tokens:
            raise InvalidRequest(
                f"offline answer needs {output_tokens} output tokens but max_output_tokens is "
                f"{request.max_output_tokens}: raise the task's max_output_tokens"
            )
        if request.on_output is not None:
            self._stream(text, request.on_output)
        elif self._latency_s > 0:
            self._sleep(self._latency_s)
        usage = TokenUsage(
            input_tokens=count_message_tokens(request.messages), output_tokens=output_tokens
        )
        return ProviderResponse(
            text=text,
            usage=usage,
            model=request.model,
            provider=PROVIDER,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _stream(self, text: str, sink: OutputSink) -> None:
        """Hand the answer's tokens to `sink` in a few chunks, the latency spread over them as a
        model's generation time is."""
        tokens = len(encoding().encode_ordinary(text))
        chunks = max(1, min(_STREAM_CHUNKS, tokens // _STREAM_CHUNK_TOKENS))
        for chunk in range(1, chunks + 1):
            if self._latency_s > 0:
                self._sleep(self._latency_s / chunks)
            sink(tokens * chunk // chunks)
