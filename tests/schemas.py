"""Where the tests find SchemaStore's Workflows schema (Apache-2.0): the shared copy beside the
repository when there is one, else the copy vendored in tests/data."""

from __future__ import annotations

from pathlib import Path

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "workflows.schema.json"
WORKFLOWS_SCHEMA = _SHARED if _SHARED.exists() else Path(__file__).parent / "data" / _SHARED.name
