"""The backend API that a product's clients call on behalf of their signed-in users.

`functions/api/main.py` is its HTTP entry point; `app.handle` answers one request. The pieces:
`auth` (Firebase ID tokens), `access` (business membership), `ratelimit` (runs per user),
`reports` (usage aggregation), `routes` (the route table, also the source of `openapi`).
"""
