"""firestore.rules on the Firestore emulator, exercised through the REST API as clients would.

alice belongs to business acme, bob to globex, carol to none. Servers bypass the rules (IAM),
as the seeding admin does here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local import emulator
from tests.terraform.planfile import RULES_FILE
from tests.terraform.rules_emulator import ADMIN, Client, RulesCompileError, start_with_rules

pytestmark = pytest.mark.emulator

ACME_READABLE = [
    "runs/r1",
    "runs/r1/events/e1",
    "runs/r1/phases/research",
    "budget_status/acme",
]

ClientFor = Callable[[str | None], Client]


@pytest.fixture
def client_for(rules_emulator: emulator.FirestoreEmulator) -> ClientFor:
    """Seed a fresh project and return a factory of clients on it, by uid (None: anonymous)."""
    project = f"rules-{uuid.uuid4().hex[:12]}"
    admin = Client(rules_emulator.host, project, ADMIN)
    seed: dict[str, dict[str, Any]] = {
        "businesses/acme": {"members": ["alice"], "tier": "pro"},
        "businesses/globex": {"members": ["bob"], "tier": "basic"},
        "runs/r1": {"business_id": "acme", "status": "running", "cancel_requested": False},
        "runs/r1/events/e1": {"type": "run_started", "percent": 0},
        "runs/r1/phases/research": {"summary": "acme research"},
        "runs/r2": {"business_id": "globex", "status": "running", "cancel_requested": False},
        "runs/r2/events/e1": {"type": "run_started", "percent": 0},
        "budget_status/acme": {"today_spent": 1, "daily_limit": 50},
        "budget_status/globex": {"today_spent": 2, "daily_limit": 10},
    }
    for path, data in seed.items():
        assert admin.set(path, data) == 200, path
    return lambda uid: Client(rules_emulator.host, project, uid)


def test_a_member_reads_the_run_its_events_results_and_budget(client_for: ClientFor) -> None:
    alice = client_for("alice")
    for path in ACME_READABLE:
        assert alice.get(path)[0] == 200, path
    assert alice.get("runs/r1")[1]["business_id"] == "acme"
    assert alice.list("runs/r1/events") == 200
    assert alice.list("runs/r1/phases") == 200
    assert alice.query_equal("runs", "business_id", "acme") == 200


@pytest.mark.parametrize(
    "uid", ["bob", "carol", None], ids=["other-business", "no-business", "anonymous"]
)
def test_others_cannot_read_a_business_runs(client_for: ClientFor, uid: str | None) -> None:
    client = client_for(uid)
    for path in ACME_READABLE:
        assert client.get(path)[0] == 403, path
    assert client.list("runs/r1/events") == 403
    assert client.query_equal("runs", "business_id", "acme") == 403


def test_a_member_reads_nothing_else(client_for: ClientFor) -> None:
    alice = client_for("alice")
    assert alice.get("runs/r2")[0] == 403  # another business's run
    assert alice.get("runs/r2/events/e1")[0] == 403
    assert alice.get("budget_status/globex")[0] == 403
    assert alice.get("businesses/acme")[0] == 403  # membership lists stay server-side
    assert alice.get("router_outcomes/recent")[0] == 403  # every business's outcomes
    assert alice.list("runs") == 403  # an unfiltered query could reveal other businesses
    assert alice.query_equal("runs", "business_id", "globex") == 403


def test_client_writes_are_denied(client_for: ClientFor) -> None:
    alice = client_for("alice")
    assert alice.create("runs", "r9", {"business_id": "acme", "status": "queued"}) == 403
    assert alice.create("runs/r1/events", "e9", {"type": "run_completed"}) == 403
    assert alice.set("runs/r1/phases/research", {"summary": "forged"}) == 403
    assert alice.set("budget_status/acme", {"today_spent": 0, "daily_limit": 1000}) == 403
    assert alice.update("businesses/globex", {"members": ["bob", "alice"]}) == 403
    assert alice.update("businesses/acme", {"tier": "enterprise"}) == 403
    # Forged pass rates would steer every business's calls to other tiers.
    assert alice.set("router_outcomes/recent", {"rates": [], "limit": 2000}) == 403
    assert alice.delete("runs/r1") == 403
    assert client_for(None).update("runs/r1", {"cancel_requested": True}) == 403
    # Nothing changed.
    admin = client_for(ADMIN)
    assert admin.get("runs/r1/phases/research")[1] == {"summary": "acme research"}
    assert admin.get("budget_status/acme")[1]["daily_limit"] == 50
    assert admin.get("runs/r9")[0] == 404


def test_a_member_may_request_cancellation_of_their_run(client_for: ClientFor) -> None:
    assert client_for("alice").update("runs/r1", {"cancel_requested": True}) == 200
    status, run = client_for(ADMIN).get("runs/r1")
    assert status == 200
    assert run == {"business_id": "acme", "status": "running", "cancel_requested": True}


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "budget_exceeded"])
def test_a_member_may_not_cancel_a_run_that_ended(client_for: ClientFor, status: str) -> None:
    # The backend refuses it with 409 run_final; a client writing directly is refused too.
    admin = client_for(ADMIN)
    ended = {"business_id": "acme", "status": status, "cancel_requested": False}
    assert admin.set("runs/r3", ended) == 200
    assert client_for("alice").update("runs/r3", {"cancel_requested": True}) == 403
    assert admin.get("runs/r3")[1] == ended


def test_a_member_may_cancel_a_queued_run(client_for: ClientFor) -> None:
    admin = client_for(ADMIN)
    assert admin.set("runs/r4", {"business_id": "acme", "status": "queued"}) == 200
    assert client_for("alice").update("runs/r4", {"cancel_requested": True}) == 200
    assert admin.get("runs/r4")[1]["cancel_requested"] is True


@pytest.mark.parametrize(
    "change",
    [
        {"cancel_requested": False},
        {"cancel_requested": "yes"},
        {"status": "cancelled"},
        {"cancel_requested": True, "status": "cancelled"},
        {"cancel_requested": True, "business_id": "globex"},
    ],
    ids=["to-false", "not-a-bool", "other-field", "plus-status", "plus-business"],
)
def test_the_cancel_request_changes_only_that_field_and_only_to_true(
    client_for: ClientFor, change: dict[str, object]
) -> None:
    assert client_for("alice").update("runs/r1", change) == 403
    assert client_for(ADMIN).get("runs/r1")[1]["cancel_requested"] is False


def test_a_whole_document_write_that_drops_fields_is_denied(client_for: ClientFor) -> None:
    assert client_for("alice").set("runs/r1", {"cancel_requested": True}) == 403


@pytest.mark.parametrize("uid", ["bob", "carol"])
def test_only_members_may_cancel(client_for: ClientFor, uid: str) -> None:
    assert client_for(uid).update("runs/r1", {"cancel_requested": True}) == 403
    assert client_for(ADMIN).get("runs/r1")[1]["cancel_requested"] is False


def test_a_rules_file_that_does_not_compile_is_reported_with_line_and_column(
    tmp_path: Path,
) -> None:
    lines = RULES_FILE.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if "allow update:" in line)
    lines[target] = lines[target].replace("allow update: if", "allow update: if &&")
    broken = tmp_path / "broken.rules"
    broken.write_text("\n".join(lines) + "\n")
    column = lines[target].index("&&") + 1

    with pytest.raises(RulesCompileError) as failure:
        start_with_rules(broken)
    assert f"{broken}:{target + 1}:{column}: " in str(failure.value)
