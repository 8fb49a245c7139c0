"""The IAM grants of a Terraform plan, as the loopback Google services check them.

A `Grant` gives a member a role on a resource; it covers that resource and everything under it
(a project-level grant covers the project's secrets, services and databases), as IAM policy
inheritance does (https://cloud.google.com/iam/docs/resource-hierarchy-access-control). A role
holds permissions; only the permissions our code's calls need are listed, each with the roles
that hold it, from Google's role reference (https://cloud.google.com/iam/docs/roles-permissions).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Permission -> the predefined roles holding it (the least one first: it is the one to grant).
ROLES_WITH: dict[str, tuple[str, ...]] = {
    # https://cloud.google.com/secret-manager/docs/access-control
    "secretmanager.versions.access": (
        "roles/secretmanager.secretAccessor",
        "roles/secretmanager.admin",
        "roles/owner",
    ),
    # https://cloud.google.com/firestore/docs/security/iam
    "datastore.entities.get": (
        "roles/datastore.user",
        "roles/datastore.viewer",
        "roles/datastore.owner",
        "roles/owner",
    ),
    "datastore.entities.update": ("roles/datastore.user", "roles/datastore.owner", "roles/owner"),
    # https://cloud.google.com/vertex-ai/docs/general/access-control
    "aiplatform.endpoints.predict": ("roles/aiplatform.user", "roles/aiplatform.admin"),
    "aiplatform.indexes.update": ("roles/aiplatform.user", "roles/aiplatform.admin"),
    "aiplatform.indexEndpoints.queryVectors": ("roles/aiplatform.user", "roles/aiplatform.admin"),
    # https://cloud.google.com/run/docs/securing/managing-access
    "run.routes.invoke": ("roles/run.invoker", "roles/run.admin", "roles/owner"),
}


@dataclass(frozen=True)
class Grant:
    """`role` for `member` ("serviceAccount:EMAIL") on `resource` ("projects/P/...");
    `address` is the plan resource that makes it."""

    member: str
    role: str
    resource: str
    address: str

    def covers(self, resource: str) -> bool:
        return resource == self.resource or resource.startswith(self.resource + "/")


@dataclass(frozen=True)
class Check:
    """One permission check a loopback service made, and the grants that allowed it."""

    caller: str | None
    permission: str
    resource: str
    allowed_by: tuple[Grant, ...]

    @property
    def allowed(self) -> bool:
        return bool(self.allowed_by)

    @property
    def role_needed(self) -> str:
        return ROLES_WITH[self.permission][0]


@dataclass
class Policy:
    """The plan's grants minus `removed`; records every check it answers."""

    grants: list[Grant]
    removed: set[Grant] = field(default_factory=set)
    checks: list[Check] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allows(self, caller: str | None, permission: str, resource: str) -> bool:
        """Whether the service account `caller` (an email) holds `permission` on `resource`."""
        roles = ROLES_WITH.get(permission, ())
        member = f"serviceAccount:{caller}"
        with self._lock:
            allowed_by = tuple(
                grant
                for grant in self.grants
                if grant not in self.removed
                and grant.member in {member, "allUsers"}
                and grant.role in roles
                and grant.covers(resource)
            )
            self.checks.append(Check(caller, permission, resource, allowed_by))
        return bool(allowed_by)

    def take_checks(self) -> list[Check]:
        """The checks answered since the last call, and forget them."""
        with self._lock:
            taken, self.checks = self.checks, []
        return taken
