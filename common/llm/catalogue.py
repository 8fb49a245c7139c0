"""The model catalogue: which models exist, their tier and limits, and exact token prices.

The data lives in `catalogue.yaml` beside this module (or the file named by the
`model_catalogue_path` setting). Prices are exact decimals in USD per 1M tokens; costs come out as
integer nano-dollars, rounded up when a price is not a whole number of nano-dollars per token.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import math
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.money import NANOS_PER_USD
from common.platform.errors import problems
from common.spend.records import ModelTier, TokenUsage

ProviderName = Literal["openai", "gemini"]
TIERS: tuple[ModelTier, ...] = ("nano", "mini", "full")
# USD per 1M tokens -> nano-dollars per token.
_NANOS_PER_USD_PER_MILLION = Decimal(NANOS_PER_USD) / Decimal(1_000_000)


class CatalogueError(ValueError):
    """The catalogue file is missing or invalid; the message names the file and the field."""


class UnpricedModel(LookupError):
    """A model the catalogue has no price for: its cost is unknown, never zero."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rates(_Frozen):
    """USD per 1M tokens."""

    input: Decimal = Field(ge=0)
    cached_input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    source: str = Field(min_length=1)
    as_of: dt.date


class LongContextRates(Rates):
    """Prices that apply to every token of a call whose prompt exceeds `above_prompt_tokens`."""

    above_prompt_tokens: int = Field(gt=0)


class ModelSpec(_Frozen):
    name: str = Field(min_length=1)
    provider: ProviderName
    tier: ModelTier
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    price: Rates
    long_context: LongContextRates | None = None

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The prices that apply to a call with `prompt_tokens` prompt tokens."""
        if self.long_context is not None and prompt_tokens > self.long_context.above_prompt_tokens:
            return self.long_context
        return self.price

    def cost_nanos(self, usage: TokenUsage) -> int:
        """Exact cost of `usage` on this model in nano-dollars (rounded up).

        Uncached input at the input price, cached input at the cached price, output and
        reasoning tokens at the output price.
        """
        if usage.cached_input_tokens > usage.input_tokens:
            raise ValueError(
                f"usage.cached_input_tokens ({usage.cached_input_tokens}) exceeds "
                f"usage.input_tokens ({usage.input_tokens}): cached tokens are part of the input"
            )
        rates = self.rates_for(usage.input_tokens)
        usd_millionths = (
            (usage.input_tokens - usage.cached_input_tokens) * rates.input
            + usage.cached_input_tokens * rates.cached_input
            + (usage.output_tokens + usage.reasoning_tokens) * rates.output
        )
        return math.ceil(usd_millionths * _NANOS_PER_USD_PER_MILLION)

    def upper_bound_nanos(self, prompt_tokens: int, output_tokens: int) -> int:
        """Most a call can cost with at most `prompt_tokens` in and `output_tokens` out
        (all input priced uncached)."""
        return self.cost_nanos(TokenUsage(input_tokens=prompt_tokens, output_tokens=output_tokens))


class Catalogue(_Frozen):
    """Every model the router may use or price."""

    version: str = Field(min_length=1)
    provider_order: list[ProviderName] = Field(min_length=1)
    routing: dict[ProviderName, dict[ModelTier, str]]
    models: dict[str, ModelSpec]

    @model_validator(mode="before")
    @classmethod
    def _name_models(cls, data: object) -> object:
        # The YAML keys models by name; each spec carries its name too.
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            data = dict(data)
            data["models"] = {
                name: {"name": name, **spec} if isinstance(spec, dict) else spec
                for name, spec in data["models"].items()
            }
        return data

    @model_validator(mode="after")
    def _check_routing(self) -> Catalogue:
        if len(set(self.provider_order)) != len(self.provider_order):
            raise ValueError(f"provider_order lists a provider twice: {self.provider_order}")
        for provider in self.provider_order:
            tiers = self.routing.get(provider)
            if tiers is None:
                raise ValueError(f"routing.{provider}: missing (every provider needs its tiers)")
            for tier in TIERS:
                name = tiers.get(tier)
                if name is None:
                    raise ValueError(f"routing.{provider}.{tier}: missing")
                spec = self.models.get(name)
                if spec is None:
                    raise ValueError(f"routing.{provider}.{tier}: model {name!r} is not priced")
                if spec.provider != provider or spec.tier != tier:
                    raise ValueError(
                        f"routing.{provider}.{tier}: model {name!r} is a {spec.provider} "
                        f"{spec.tier} model"
                    )
        return self

    def model(self, name: str) -> ModelSpec:
        """The spec of model `name`; raises `UnpricedModel` if the catalogue does not price it."""
        spec = self.models.get(name)
        if spec is None:
            raise UnpricedModel(
                f"model {name!r} is not in model catalogue {self.version}: its cost is unknown "
                f"(known: {', '.join(sorted(self.models))})"
            )
        return spec

    def routed(self, provider: ProviderName, tier: ModelTier) -> ModelSpec:
        """The model that serves `tier` for `provider`."""
        return self.models[self.routing[provider][tier]]


DEFAULT_CATALOGUE = "catalogue.yaml"


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and validate a catalogue file (the bundled one when `path` is None).

    Raises:
        CatalogueError: the file cannot be read or a field is invalid (named in the message).
    """
    where = str(path) if path is not None else f"common/llm/{DEFAULT_CATALOGUE}"
    try:
        if path is None:
            text = importlib.resources.files("common.llm").joinpath(DEFAULT_CATALOGUE).read_text()
        else:
            text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"model catalogue {where}: cannot read: {exc}") from exc
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        found = "; ".join(f"{field}: {message}" for field, message in problems(exc))
        raise CatalogueError(f"model catalogue {where}: {found}") from exc


@functools.cache
def default_catalogue(path: Path | None = None) -> Catalogue:
    """The catalogue for `path` (bundled when None), read once per process."""
    return load_catalogue(path)
