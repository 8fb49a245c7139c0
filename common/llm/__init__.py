"""RaptorFlow's model router: every model call goes through here.

    from common.llm import get_router
    completion = get_router().execute("strategy_analysis", messages, schema=StrategyOutput,
                                      ledger=ledger, call_key=f"{run_id}:strategy")

See `common.llm.router` for the flow and docs/decisions/003-model-router.md for the design.
"""

from common.llm.base import (
    FALLBACK_ERRORS,
    AllProvidersFailed,
    Complexity,
    InvalidOutput,
    InvalidRequest,
    Message,
    Provider,
    ProviderError,
    ReasoningEffort,
)
from common.llm.catalogue import (
    Catalogue,
    CatalogueError,
    ModelSpec,
    UnpricedModel,
    default_catalogue,
    load_catalogue,
)
from common.llm.fallback import CircuitBreaker
from common.llm.metering import parse_answer
from common.llm.providers.offline import OfflineProvider
from common.llm.router import Completion, Router
from common.llm.routing import Call, Estimator, RoutingDecision
from common.llm.setup import (
    NoProviderConfigured,
    build_router,
    estimate_task_cost,
    estimator,
    get_router,
)
from common.llm.tasks import TASKS, TaskProfile, task_profile

__all__ = [
    "FALLBACK_ERRORS",
    "TASKS",
    "AllProvidersFailed",
    "Call",
    "Catalogue",
    "CatalogueError",
    "CircuitBreaker",
    "Completion",
    "Complexity",
    "Estimator",
    "InvalidOutput",
    "InvalidRequest",
    "Message",
    "ModelSpec",
    "NoProviderConfigured",
    "OfflineProvider",
    "Provider",
    "ProviderError",
    "ReasoningEffort",
    "Router",
    "RoutingDecision",
    "TaskProfile",
    "UnpricedModel",
    "build_router",
    "default_catalogue",
    "estimate_task_cost",
    "estimator",
    "get_router",
    "load_catalogue",
    "parse_answer",
    "task_profile",
]
