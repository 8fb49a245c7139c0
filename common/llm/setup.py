"""Building the process's router from settings and the secrets that are present, and the
catalogue-only estimator budget checks use."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel

from common.llm.base import Complexity, Message, Provider
from common.llm.catalogue import ProviderName, default_catalogue
from common.llm.fallback import CircuitBreaker
from common.llm.providers.offline import OfflineProvider
from common.llm.router import Router
from common.llm.routing import Estimator
from common.platform.process import per_settings
from common.platform.secrets import find_secret
from common.platform.settings import Settings, get_settings
from common.spend.records import ModelTier

logger = logging.getLogger(__name__)


class NoProviderConfigured(RuntimeError):
    """Production has no model provider and offline placeholders were not asked for."""


def build_router(settings: Settings | None = None) -> Router:
    """A router configured from settings and the secrets that are present.

    OpenAI when OPENAI_API_KEY is set (or `openai_base_url` points at a self-hosted server that
    needs no key); Gemini when GEMINI_API_KEY is set or `gemini_use_vertex` is on; the offline
    provider, priced as the first catalogue provider's models, when `llm_offline` is on or, in
    development, when neither is configured; in production that raises `NoProviderConfigured`.
    """
    # The provider SDKs take ~0.4 s to import: only load those a configured provider needs.
    from common.llm.providers.gemini import GeminiProvider
    from common.llm.providers.openai import OpenAIProvider

    settings = settings or get_settings()
    catalogue = default_catalogue(settings.model_catalogue_path)
    timeout = settings.llm_timeout_seconds
    providers: dict[ProviderName, Provider] = {}
    if not settings.llm_offline:
        openai_key = find_secret("OPENAI_API_KEY")
        if openai_key is None and settings.openai_base_url:
            openai_key = "self-hosted"  # OpenAI-compatible servers usually ignore the key
        if openai_key is not None:
            providers["openai"] = OpenAIProvider(
                api_key=openai_key, base_url=settings.openai_base_url, timeout_seconds=timeout
            )
        if settings.gemini_use_vertex:
            providers["gemini"] = GeminiProvider(
                vertex_project=settings.project_id,
                vertex_location=settings.gemini_location or settings.region,
                base_url=settings.gemini_base_url,
                timeout_seconds=timeout,
            )
        else:
            gemini_key = find_secret("GEMINI_API_KEY")
            if gemini_key is not None:
                providers["gemini"] = GeminiProvider(
                    api_key=gemini_key, base_url=settings.gemini_base_url, timeout_seconds=timeout
                )
    if not providers:
        if settings.app_mode == "production" and not settings.llm_offline:
            # Placeholders sold as strategy would be worse than an error.
            raise NoProviderConfigured(
                "no model provider is configured in production: add OPENAI_API_KEY or "
                "GEMINI_API_KEY to Secret Manager (or enable GEMINI_USE_VERTEX), or set "
                "LLM_OFFLINE=true to serve offline placeholders on purpose"
            )
        first = catalogue.provider_order[0]
        weak_rates = {
            catalogue.routed(first, tier).name: rate
            for tier, rate in settings.offline_weak_rates.items()
        }
        providers[first] = OfflineProvider(
            latency_ms=settings.offline_latency_ms,
            weak_rates=weak_rates,
            seed=settings.offline_weak_seed,
        )
    router = Router(
        providers,
        catalogue=catalogue,
        timeout_seconds=timeout,
        breaker=CircuitBreaker(cooldown_seconds=settings.llm_circuit_cooldown_seconds),
    )
    logger.info(
        "llm router ready",
        extra={
            "json_fields": {
                "providers": router.providers,
                "catalogue_version": catalogue.version,
            }
        },
    )
    return router


@per_settings
def get_router(settings: Settings) -> Router:
    """The process's router, built on first use from the settings and the secrets (again when
    the settings are replaced)."""
    return build_router(settings)


@per_settings
def estimator(settings: Settings) -> Estimator:
    """The process's catalogue-only estimator (no key, no provider)."""
    return Estimator(default_catalogue(settings.model_catalogue_path))


def estimate_task_cost(
    task_type: str,
    input: str | Sequence[Message],
    *,
    complexity: Complexity | None = None,
    allowed_tiers: frozenset[ModelTier] | None = None,
    schema: type[BaseModel] | None = None,
) -> int:
    """Upper bound in nano-dollars of one attempt of `task_type` on `input` (a prompt or the
    messages), for the budget to reserve before a run; see `Router.estimate`."""
    messages = [Message(role="user", content=input)] if isinstance(input, str) else input
    return get_router().estimate(task_type, messages, complexity, allowed_tiers, schema=schema)
