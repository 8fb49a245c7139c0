"""All configuration in one place, read from the environment (and `.env` in development)."""

from __future__ import annotations

import math
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """RaptorFlow settings. Secrets (API keys) are not here: `common.secrets` fetches them."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_mode: Literal["development", "production"] = "development"
    project_id: str = Field(
        default="demo-raptorflow",  # local/stack.py PROJECT: every local stack's project
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "PROJECT_ID"),
        min_length=1,
    )
    region: str = Field(default="us-central1", validation_alias=AliasChoices("REGION"))
    firestore_database: str = "(default)"

    # Workflows: where runs are started. `executions_endpoint` is host:port of a local engine
    # serving the Executions API over plain gRPC; unset means the real Google service.
    workflow_id: str = "marketing_analysis"
    executions_endpoint: str | None = None

    # LLM calls: one attempt per provider, bounded in time (the workflow owns retries). Every
    # other timeout is derived from these two (see `Timeouts` below), so none can disagree.
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    deadline_margin_seconds: float = Field(default=10.0, gt=0, le=120)
    openai_base_url: str | None = None
    model_catalogue_path: Path | None = None

    # LLM router (issue 4): provider selection, Gemini backend, circuit breaker, offline demo speed.
    # `llm_offline` forces the offline provider even when API keys are configured.
    llm_offline: bool = False
    # Gemini through Vertex AI with Application Default Credentials instead of GEMINI_API_KEY;
    # `gemini_location` defaults to `region`.
    gemini_use_vertex: bool = False
    gemini_location: str | None = None
    # A Gemini API endpoint other than Google's (a proxy, or a loopback fake in tests).
    gemini_base_url: str | None = None
    llm_circuit_cooldown_seconds: float = Field(default=30.0, ge=0, le=3600)
    # The offline provider sleeps this long per call so a demo's progress bar is watchable.
    offline_latency_ms: int = Field(default=0, ge=0, le=60_000)
    # Learned complexity router (issue 15), for tasks without a default complexity: the share of
    # the full model's quality to keep (the artefact tabulates cut-offs from 0.50 to 1.00), and
    # another artefact than common/llm/router_model.json (one `make train-router` wrote).
    # 0.90: full for prompts with cues of difficulty, mini for the rest (decision 003).
    router_quality_target: float = Field(default=0.90, ge=0.5, le=1.0)
    router_model_path: Path | None = None
    # The offline provider's weak answers (tests, benches, demos; decision 011): the share of
    # each model tier's answers that are weak, as JSON ({"nano": 0.3, "mini": 0.1}; none by
    # default), and their seed.
    offline_weak_rates: dict[
        Literal["nano", "mini", "full"], Annotated[float, Field(ge=0, le=1)]
    ] = Field(default_factory=dict)
    offline_weak_seed: int = Field(default=0, ge=0)

    # The analysis's cascade (issue 20, decision 011). A sub-task starts on the cheapest tier
    # whose first answers passed their checks at least `router_pass_target` of the time
    # (`router_min_samples` first tries before a tier's rate counts), from the newest
    # `router_outcomes_limit` attempts of the usage records, read at most once every
    # `router_outcomes_seconds` per process; `router_explore_rate` of calls start one tier
    # lower on purpose, so a cheaper tier that got better is found. A model is asked
    # `cascade_asks` times in all before the call moves one tier up (3: asking again costs a
    # fifth of what the next tier does, in the catalogue's prices). `analysis_routing`
    # "strongest" puts every call on the strongest tier the business may use (the benchmark's
    # comparison).
    router_pass_target: float = Field(default=0.65, gt=0, le=1)
    router_min_samples: int = Field(default=20, ge=1, le=10_000)
    router_explore_rate: float = Field(default=0.05, ge=0, le=0.5)
    router_outcomes_seconds: float = Field(default=600.0, ge=0, le=86_400)
    router_outcomes_limit: int = Field(default=2000, ge=10, le=50_000)
    cascade_asks: int = Field(default=3, ge=1, le=5)
    analysis_routing: Literal["cascade", "strongest"] = "cascade"
    # What a run is expected to cost, which must fit before it starts and before each phase
    # (issue 23): each call of a task type at this percentile of what its calls cost lately
    # (every attempt of a call counted: asks again, escalations, fallbacks), from the same
    # usage records; a task type with fewer recorded calls than `run_estimate_min_calls`
    # counts its first try's upper bound (the cold start). Every model call still reserves
    # its own upper bound, so a run that turns out dearer stops at a call, never overspends.
    run_estimate_percentile: float = Field(default=90.0, gt=0, le=100)
    run_estimate_min_calls: int = Field(default=5, ge=1, le=10_000)
    # Live progress streamed from a model's answer: at most one write per phase this often.
    progress_write_seconds: float = Field(default=1.0, ge=0, le=60)

    # Budget escrow (common/budget, docs/decisions/006). How long a process may reuse what it
    # read of a business's limits and the platform controls: the time within which a lowered
    # limit, a tier change, a pause or a new cap reaches every instance.
    budget_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # A block is granted from for this long after it was taken; closed when idle this long;
    # its settled spending is moved into the periods in steps of this share of the day's limit
    # (at most once a second). Its TTL (the database's) is derived: `budget_block_ttl_seconds`.
    budget_block_active_seconds: float = Field(default=30.0, gt=0, le=3600)
    budget_idle_seconds: float = Field(default=5.0, gt=0, le=3600)
    budget_flush_percent: int = Field(default=1, ge=1, le=50)
    # Past a block's TTL, how long others wait before reconciling it (clock rates, not offsets:
    # every expiry is measured on the database's clock).
    budget_reconcile_grace_seconds: float = Field(default=5.0, ge=0, le=600)
    # A call short of room that this process's own calls in flight hold (a phase's parallel
    # sub-tasks near the limit) waits this long for one of them to end before it answers that
    # the budget is held (which fails the phase for the workflow to retry).
    budget_wait_seconds: float = Field(default=30.0, ge=0, le=600)
    # Within this long of midnight, a business's next day (and month) is made ahead.
    budget_warm_seconds: float = Field(default=3600.0, ge=0, le=86_400)
    # Overrides the platform-wide daily cap of common/budget/tiers.yaml (all businesses together).
    platform_daily_cap_usd: Decimal | None = Field(
        default=None, ge=Decimal("0.01"), le=Decimal("1000000"), decimal_places=9
    )

    # Secrets: Secret Manager in production; the environment, then the `dotenv_path` file, in
    # development. `secret_manager_endpoint` is host:port of a local server speaking the Secret
    # Manager API over plain gRPC; unset means the real Google service. `secret_versions` pins a
    # version per secret name (JSON, e.g. {"OPENAI_API_KEY": "3"}); unlisted names use "latest".
    dotenv_path: Path = Path(".env")
    secret_project_id: str | None = None
    secret_versions: dict[str, Annotated[str, Field(pattern=r"^(latest|[1-9][0-9]*)$")]] = Field(
        default_factory=dict
    )
    secret_cache_ttl_seconds: float = Field(default=3600.0, ge=0)
    secret_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    secret_manager_endpoint: str | None = None

    # Vector search: "firestore" (Firestore vector search in the `vector_collection`, the same
    # locally on the emulator and in production) or "vertex" (Vertex AI Vector Search, metadata in
    # Firestore). Embeddings: "local" (the offline all-MiniLM-L6-v2 model shipped with the code)
    # or "vertex" (Vertex AI text embeddings). `vertex_endpoint` is host:port of a local server
    # speaking the Vertex AI APIs over plain gRPC; unset means the real Google services.
    vector_backend: Literal["firestore", "vertex"] = "firestore"
    vector_collection: str = Field(default="evidence", pattern=r"^[A-Za-z0-9_-]{1,100}$")
    vertex_index: str | None = None  # projects/P/locations/R/indexes/ID
    vertex_index_endpoint: str | None = None  # projects/P/locations/R/indexEndpoints/ID
    vertex_deployed_index_id: str | None = None
    vertex_match_endpoint: str | None = None  # the index endpoint's public domain name
    vector_metadata_collection: str = "vector_metadata"
    vertex_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    vertex_endpoint: str | None = None
    embedding_backend: Literal["local", "vertex"] = "local"
    vertex_embedding_model: str = "text-embedding-005"
    vertex_embedding_dimension: int | None = Field(default=None, ge=1, le=3072)

    # Backend API (functions/api): Firebase ID tokens are RS256 JWTs signed by the keys published
    # at `firebase_certs_url`. With FIREBASE_AUTH_EMULATOR_HOST set and not in production, the
    # Auth emulator's unsigned tokens are accepted instead. Starting runs is limited per user by
    # a token bucket: `api_run_burst` at once, one more every `api_run_refill_seconds`.
    firebase_certs_url: str = (
        "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
    )
    firebase_auth_emulator_host: str | None = None
    api_run_burst: int = Field(default=5, ge=1, le=1000)
    api_run_refill_seconds: float = Field(default=60.0, gt=0, le=86_400)
    # Origins allowed to call the API from a browser (CORS); "*" when tokens are the only auth.
    api_allowed_origins: list[str] = Field(default_factory=lambda: ["*"])
    # Where clients reach the API (the OpenAPI document's `servers`); unset, the document names
    # no server and clients resolve its paths against its own URL. Never taken from a request.
    api_public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

    # --- Timeouts, one chain derived from the LLM call timeout ------------------------------
    # A phase makes at most this many physical model calls: the answer and its one repair, at
    # each of the two catalogue providers (common/llm/catalogue.yaml; a test keeps them in step).
    MAX_CALLS_PER_PHASE: ClassVar[int] = 4

    @property
    def llm_call_deadline_seconds(self) -> float:
        """The longest one model call takes: its timeout, connecting and settling."""
        return self.llm_timeout_seconds + self.deadline_margin_seconds

    @property
    def budget_block_ttl_seconds(self) -> float:
        """How long a budget block lasts by the database's clock: its active window, then
        long enough for the last call granted in it to settle."""
        return (
            self.budget_block_active_seconds
            + self.llm_call_deadline_seconds
            + self.deadline_margin_seconds
        )

    @property
    def phase_deadline_seconds(self) -> float:
        """The longest a phase function works: every call it may make, and its own steps."""
        return (
            self.MAX_CALLS_PER_PHASE * self.llm_call_deadline_seconds + self.deadline_margin_seconds
        )

    @property
    def function_timeout_seconds(self) -> int:
        """Each function's request timeout (Terraform's `function_timeout_seconds`)."""
        return math.ceil(self.phase_deadline_seconds + self.deadline_margin_seconds)

    @property
    def phase_lease_seconds(self) -> float:
        """How long one instance holds a phase: past the function's timeout, after which the
        platform has cut the request, so a retry may take the phase over."""
        return self.function_timeout_seconds + self.deadline_margin_seconds

    @property
    def workflow_call_timeout_seconds(self) -> int:
        """The workflow's HTTP timeout for a function call: past the function's own timeout,
        so the workflow sees the platform's 504 (and retries) rather than giving up first."""
        return math.ceil(self.function_timeout_seconds + self.deadline_margin_seconds)


class _ReadOnce:
    """The process's settings, read once on first use (never at import time); `cache_clear`
    makes the next call read them again.

    A read under way when the cache is cleared (a background thread's, begun before the
    environment changed) does not become the cached value: its caller gets what it read, the
    next call reads afresh. (`functools.cache` would keep it, and every caller after the clear
    would see the old environment.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._generation = 0

    def __call__(self) -> Settings:
        settings = self._settings
        if settings is not None:
            return settings
        with self._lock:
            generation = self._generation
        # Settings come from the environment, then from the dotenv file named by DOTENV_PATH
        # (default `.env`), which `common.secrets` reads too.
        read = Settings(_env_file=os.environ.get("DOTENV_PATH", ".env"))
        with self._lock:
            if generation != self._generation:
                return read  # cleared meanwhile: not kept
            if self._settings is None:
                self._settings = read
            return self._settings

    def cache_clear(self) -> None:
        with self._lock:
            self._settings = None
            self._generation += 1


get_settings = _ReadOnce()
