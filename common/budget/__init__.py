"""Money: tiers and limits, escrow counters, the ledger every model call reserves and settles
on, budget checks, status and warnings, usage records. Imports `common.llm` (the router, for
estimates) and below; never `common.runs` or `common.analysis` (a caller that wants its own
writes in a settle's batch passes a hook)."""
