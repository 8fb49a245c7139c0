"""All configuration in one place, read from the environment (and `.env` in development)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

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
    workflow_id: str = "marketing-analysis"
    executions_endpoint: str | None = None

    # LLM calls: one attempt per provider, bounded in time (the workflow owns retries).
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    openai_base_url: str | None = None
    model_catalogue_path: Path | None = None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import time)."""
    return Settings()
