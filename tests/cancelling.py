"""A person pressing Cancel during a run, for tests: the offline provider that asks the run to
stop once its `after`-th answer is back (an answer already paid for)."""

from __future__ import annotations

import threading

from common.llm.base import ProviderRequest, ProviderResponse
from common.llm.providers.offline import OfflineProvider
from common.runs import lifecycle


class Cancelling:
    """The offline provider, and a person pressing Cancel once its `after`-th answer is back."""

    def __init__(self, run_id: str, after: int = 1) -> None:
        self.name = "offline"
        self._inner = OfflineProvider()
        self._run_id = run_id
        self._after = after
        self._lock = threading.Lock()
        self.answers = 0

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        response = self._inner.complete(request)
        with self._lock:
            self.answers += 1
            if self.answers == self._after:
                lifecycle.request_cancel(self._run_id)
        return response
