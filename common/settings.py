"""All configuration in one place, read from the environment (and `.env` in development)."""

from __future__ import annotations

import functools
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """RaptorFlow settings. Secrets (API keys) are not here: `common.secrets` fetches them."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_mode: Literal["development", "production"] = "development"
    project_id: str = Field(
        default="raptorflow-local",
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "PROJECT_ID"),
        min_length=1,
    )
    region: str = Field(default="us-central1", validation_alias=AliasChoices("REGION"))
    firestore_database: str = "(default)"

    # Workflows: where runs are started. `executions_endpoint` is host:port of a local engine
    # serving the Executions API over plain gRPC; unset means the real Google service.
    workflow_id: str = "marketing_analysis"
    executions_endpoint: str | None = None

    # LLM calls: one attempt per provider, bounded in time (the workflow owns retries).
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
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

    # Phases: how long one instance holds a phase before another may take it over.
    phase_lease_seconds: int = Field(default=900, gt=0)
    # Budget: a reservation whose holder never settles is released after this long.
    reservation_ttl_seconds: int = Field(default=600, gt=0)
    # How long a process may reuse what it read of budget limits and the kill switch, and how
    # often it refreshes a business's published status and warnings while settling.
    budget_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    budget_refresh_seconds: float = Field(default=1.0, ge=0, le=60)
    # Overrides the platform-wide daily cap of common/tiers.yaml (all businesses together).
    platform_daily_cap_usd: Decimal | None = Field(default=None, gt=0)

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

    # Vector search: "local" (exact index on disk) or "vertex" (Vertex AI Vector Search, metadata
    # in Firestore); unset means vertex in production, local otherwise. The same for embeddings
    # (local: the offline all-MiniLM-L6-v2 model; vertex: Vertex AI text embeddings).
    # `vertex_endpoint` is host:port of a local server speaking the Vertex AI APIs over plain gRPC;
    # unset means the real Google services.
    vector_backend: Literal["local", "vertex"] | None = None
    vector_dir: Path = Path(".local/vectors")
    vertex_index: str | None = None  # projects/P/locations/R/indexes/ID
    vertex_index_endpoint: str | None = None  # projects/P/locations/R/indexEndpoints/ID
    vertex_deployed_index_id: str | None = None
    vertex_match_endpoint: str | None = None  # the index endpoint's public domain name
    vector_metadata_collection: str = "vector_metadata"
    vertex_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    vertex_endpoint: str | None = None
    embedding_backend: Literal["local", "vertex"] | None = None
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


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import time).

    Settings come from the environment, then from the dotenv file named by DOTENV_PATH
    (default `.env`), which `common.secrets` reads too.
    """
    return Settings(_env_file=os.environ.get("DOTENV_PATH", ".env"))
