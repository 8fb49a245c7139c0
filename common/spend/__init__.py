"""Spend: what a paid call records and the ledger it reserves on, as a protocol.

Model calls (`common.llm`) and paid embeddings (`common.search`) reserve an upper bound before
they call and settle the actual cost after, through a `Ledger`; `common.budget` implements it
against the business's limits. Nothing here knows of limits, periods or Firestore: a limit and its
error live with the budget, the record of what was spent travels on the call's answer.
"""
