"""Process-wide state, kept two ways only.

- `functools.cache` for what never changes in a process: files read once (tiers, catalogue,
  tokenizer vocabulary) and clients keyed by plain values (the Firestore client per project).
- `per_settings` for what is built from the settings (the router, the secret store, the vector
  index, the embedder): made once for the current `Settings`, made again when the settings are
  replaced (tests do that with `get_settings.cache_clear()`), so nothing needs clearing by hand.

Fresh-enough reads (what the budget last saw of a scope) are a `TtlCache`, and work done at
most so often (republishing a budget status) a `Throttle`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from common.platform.settings import Settings, get_settings

T = TypeVar("T")
V = TypeVar("V")


class per_settings(Generic[T]):
    """Decorate `factory(settings) -> T`; calling it returns the value for the current settings
    (or those given), built once per `Settings` object."""

    def __init__(self, factory: Callable[[Settings], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._made: tuple[Settings, T] | None = None
        self.__doc__ = factory.__doc__
        self.__name__ = factory.__name__

    def __call__(self, settings: Settings | None = None) -> T:
        settings = settings or get_settings()
        with self._lock:
            if self._made is None or self._made[0] is not settings:
                self._made = (settings, self._factory(settings))
            return self._made[1]


class TtlCache(Generic[V]):
    """What this process last saw of each key, reused for `max_age` seconds (monotonic)."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable, max_age: float) -> V | None:
        seen = self._seen.get(key)
        return seen[1] if seen is not None and time.monotonic() - seen[0] <= max_age else None

    def put(self, key: Hashable, value: V) -> None:
        self._seen[key] = (time.monotonic(), value)

    def forget(self, key: Hashable) -> None:
        self._seen.pop(key, None)


class Throttle:
    """Says yes at most once per `every` seconds per key (monotonic)."""

    def __init__(self) -> None:
        self._last: dict[Hashable, float] = {}

    def due(self, key: Hashable, every: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) < every:
            return False
        self._last[key] = now
        return True
