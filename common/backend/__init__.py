"""The backend API that a product's clients call on behalf of their signed-in users.

`functions/api/main.py` is its HTTP entry point; `app.handle` answers one request. The pieces:
`app` (routes and handlers), `routes` (the route table and its dispatch, also the source of
`openapi`), `auth` (Firebase ID tokens), `access` (business membership), `ratelimit` (runs
per user, sharded), `idempotency` (`Idempotency-Key` on starts), `reports` (usage
aggregation). Bodies, limits and error answers come from `common.platform.http`.
"""
