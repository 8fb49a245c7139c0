"""The budget: every business's day and month limits and the platform's daily cap, enforced on
every paid call to the nano-dollar (the `Ledger` of `common.spend`), with no overspend and no
document written faster than Firestore sustains.

Money moves through escrow blocks (`blocks`, `escrow`, decision 006): a process takes headroom
from a business's day and month ahead, grants reservations from it in memory, records each call
once (`ledger`: its usage record), and gives back what it did not use. Also here: the budget
check (`check`), the published status and warnings (`status`), the operator's controls
(`controls`, `operator`) and analytics over the usage records (`usage`). Imports `common.llm`
(the router, for estimates), `common.tenants` and below; never `common.runs` or
`common.analysis`.
"""
