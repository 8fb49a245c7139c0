"""Secrets (API keys). Development: the environment or `.env`. (Secret Manager: see issue 7.)"""

from __future__ import annotations

import os


class SecretNotFound(LookupError):
    """A required secret is missing; the message names the secret and where we looked."""


def find_secret(name: str) -> str | None:
    """The secret's value, or None when it is not configured anywhere."""
    value = os.environ.get(name, "").strip()
    return value or None


def get_secret(name: str) -> str:
    """The secret's value; raises `SecretNotFound` rather than returning an empty string."""
    value = find_secret(name)
    if value is None:
        raise SecretNotFound(f"secret {name} is not set (looked in: environment)")
    return value
