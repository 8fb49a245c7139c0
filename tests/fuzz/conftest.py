"""The API's fixtures, for the fuzz test of its Authorization header (tests/api/conftest.py):
its key server, token signer, in-process app and deployed instances, and
`signed_tokens_only` (the API trusts the test key alone), which that test asks for."""

from tests.api.conftest import (  # noqa: F401  (fixtures used by tests here)
    api,
    api_app,
    api_instances,
    certs_url,
    google_key,
    signed_tokens_only,
    token,
)
