"""The local stack under production's boundaries, built from a Terraform plan (issue 12).

Each function runs as its plan deploys it: from its zip's files in a folder of its own (working
directory, HOME, TMPDIR: no shared disk), with exactly the plan's environment, as its plan's
service account, behind an ingress with the plan's timeout. The only additions are the wiring
that points Google's client libraries at loopback servers, in place of Google's endpoints:

- FIRESTORE_EMULATOR_HOST: a `FirestoreGate` of the function's own in front of the emulator;
- SECRET_MANAGER_ENDPOINT and VERTEX_ENDPOINT: a loopback server of the function's own, serving
  Secret Manager and Vertex AI with the client libraries' types;
- OPENAI_BASE_URL: an OpenAI-compatible server answering every call with schema-valid JSON.

Each of those ports knows whose it is, so each service answers PERMISSION_DENIED unless the
plan grants that function's service account the role it needs on that resource (tests/parity/
iam.py), and each ingress answers 403 unless the plan lets the workflow's account invoke that
service. The workflow runs from the plan's source with the plan's variables (plus the URLs Google
would compute). `run` starts a run as a backend would and explains a failure by naming each
function that lacked a grant, the role, and the resource.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud.workflows.executions_v1 import Execution

from common.analysis import launch
from common.models import BusinessInput
from common.runs import documents, executions
from common.tenants.businesses import Business, save_business
from local import emulator, memory, stack
from tests.parity.deployment import Deployment, FunctionDeployment
from tests.parity.iam import Check, Grant, Policy
from tests.protocol.gcp.loopback import FakeSecretManager, FakeVertex, FirestoreGate, LoopbackServer
from tests.protocol.llm.servers import SchemaAnsweringOpenAI

SAMPLE = Path(__file__).resolve().parents[2] / "local" / "samples" / "tidewater.json"

WIRING = frozenset(
    {"FIRESTORE_EMULATOR_HOST", "SECRET_MANAGER_ENDPOINT", "VERTEX_ENDPOINT", "OPENAI_BASE_URL"}
)
# A running instance keeps what it read of a secret for an hour (Settings.secret_cache_ttl_seconds),
# so a removed secret grant shows only in a fresh instance; every other check is per request.
CACHED_PERMISSIONS = frozenset({"secretmanager.versions.access"})
_ACTIVE = Execution.State.ACTIVE


class ParityFailure(AssertionError):
    """The run did not succeed under production's boundaries; the message says why."""


def sample_business() -> BusinessInput:
    """The repository's sample business under a new id."""
    return BusinessInput.model_validate(json.loads(SAMPLE.read_text())).model_copy(
        update={"business_id": f"parity-{uuid.uuid4().hex[:10]}"}
    )


def worst_case_business() -> BusinessInput:
    """The sample business at every bound `BusinessInput`'s schema sets: each text at its
    longest (the description at 5,000 characters), as many goals and competitors as allowed
    (ten each), the most ICPs (nine)."""
    sample = sample_business()
    bounds = BusinessInput.model_json_schema()["properties"]

    def filled(text: str, field: dict[str, int]) -> str:
        while len(text) < field["maxLength"]:
            text += " " + text
        return text[: field["maxLength"] - 1].rstrip() + "."

    goals, competitors = bounds["goals"], bounds["competitors"]
    (website,) = [form for form in bounds["website"]["anyOf"] if form["type"] == "string"]
    return BusinessInput.model_validate(
        {
            **sample.model_dump(),
            "name": filled(sample.name, bounds["name"]),
            "industry": filled(sample.industry, bounds["industry"]),
            "description": filled(sample.description, bounds["description"]),
            "target_market": filled(sample.target_market, bounds["target_market"]),
            "goals": [
                filled(f"{n + 1}. {sample.goals[n % len(sample.goals)]}", goals["items"])
                for n in range(goals["maxItems"])
            ],
            "competitors": [
                filled(f"Rival {n + 1} of {sample.name}", competitors["items"])
                for n in range(competitors["maxItems"])
            ],
            "icp_count": bounds["icp_count"]["maximum"],
            "website": "https://" + "w" * (website["maxLength"] - 16) + ".example",
        }
    )


@dataclass
class Outcome:
    business: BusinessInput
    run_id: str
    run: documents.Run
    execution: Execution
    checks: list[Check]


@dataclass
class ProductionStack:
    """Everything `run` needs, started by `start` and stopped by `stop`.

    Args:
        deployment: What the plan deploys.
        firestore: The emulator (its own project: the plan's).
        work_dir: Where the functions' folders, the workflow file and the logs go.
        secrets: Secret id -> value, added to the loopback Secret Manager as version 1.
    """

    deployment: Deployment
    firestore: emulator.FirestoreEmulator
    work_dir: Path
    secrets: dict[str, str]
    policy: Policy = field(init=False)
    secret_manager: FakeSecretManager = field(init=False)
    vertex: FakeVertex = field(init=False)
    openai: SchemaAnsweringOpenAI = field(init=False)
    local: stack.LocalStack | None = None
    memory: memory.PeakSampler | None = None
    #: Every check of every run so far, and the functions restarted so far (in order).
    checks: list[Check] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    # Per function: what it may have cached since its process started (see CACHED_PERMISSIONS).
    _cached: dict[str, set[str]] = field(default_factory=dict)
    _servers: list[LoopbackServer] = field(default_factory=list)
    _gates: list[FirestoreGate] = field(default_factory=list)

    def start(self) -> None:
        self.policy = Policy(self.deployment.grants)
        self.secret_manager = FakeSecretManager(authorize=self.policy.allows)
        for secret, value in self.secrets.items():
            self.secret_manager.add_version(self.deployment.project, secret, value.encode())
        self.vertex = FakeVertex(authorize=self.policy.allows)
        self.openai = SchemaAnsweringOpenAI().start()
        try:
            configs = {
                name: self._function_config(function)
                for name, function in self.deployment.functions.items()
            }
            workflow = self.deployment.workflow
            workflows_dir = self.work_dir / "workflows"
            workflows_dir.mkdir()
            (workflows_dir / f"{workflow.name}.workflows.yaml").write_text(workflow.source)
            self.local = stack.start(
                self.deployment.project,
                log_dir=self.work_dir / "logs",
                firestore=self.firestore,
                functions=configs,
                workflows_dir=workflows_dir,
                workflow_vars=workflow.env,
            )
            urls = {stack.url_variable(name) for name in configs}
            missing = workflow.computed_env - urls
            assert not missing, f"the workflow's variables {missing} are unknown until apply"
            functions = self.local.functions
            self.memory = memory.PeakSampler(
                {name: self._pid_of(functions[name]) for name in functions}
            ).start()
        except BaseException:
            self.stop()
            raise

    def _function_config(self, function: FunctionDeployment) -> stack.FunctionConfig:
        source = self.work_dir / "functions" / function.name
        for name, content in function.files.items():
            path = source / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        identity = function.service_account
        server = LoopbackServer(caller=identity)
        self.secret_manager.register(server)
        self.vertex.register(server)
        server.start()
        self._servers.append(server)
        gate = FirestoreGate(self.firestore.host, identity, self.policy.allows)
        self._gates.append(gate)
        wiring = {
            "FIRESTORE_EMULATOR_HOST": gate.endpoint,
            "SECRET_MANAGER_ENDPOINT": server.endpoint,
            "VERTEX_ENDPOINT": server.endpoint,
            "OPENAI_BASE_URL": self.openai.base_url,
        }
        clash = set(function.env) & WIRING
        assert not clash, f"{function.name}: the plan sets {clash}, which the parity run wires"
        env = {**function.env, **self._secret_env(function), **wiring}
        service = (
            f"projects/{self.deployment.project}/locations/{self.deployment.region}"
            f"/services/{function.service}"
        )
        invoker = self.deployment.workflow.service_account
        return stack.FunctionConfig(
            env=env,
            source_dir=source,
            timeout_seconds=function.timeout_seconds,
            authorize=lambda: self.policy.allows(invoker, "run.routes.invoke", service),
            service=function.service,
        )

    def _secret_env(self, function: FunctionDeployment) -> dict[str, str]:
        """Secrets mounted as environment variables, read as the function's identity when the
        instance starts (an instance whose identity may not read one does not start)."""
        env = {}
        for mount in function.secret_env:
            project = mount.get("project_id") or self.deployment.project
            version = mount.get("version") or "latest"
            name = f"projects/{project}/secrets/{mount['secret']}/versions/{version}"
            if not self.policy.allows(
                function.service_account, "secretmanager.versions.access", name
            ):
                raise ParityFailure(self._explain_denials(self.policy.take_checks()))
            payloads = self.secret_manager.versions[(project, mount["secret"])]
            env[mount["key"]] = payloads[-1 if version == "latest" else int(version) - 1].decode()
        return env

    @staticmethod
    def _pid_of(function: stack.FunctionProcess) -> Callable[[], int | None]:
        # The process a restart replaces is followed; a stopped one has no tree to read.
        return lambda: function.process.pid if function.process.poll() is None else None

    def peak_memory(self) -> dict[str, int]:
        """Each function's peak memory so far (its process tree, each page once), in bytes."""
        assert self.memory is not None
        return self.memory.peaks()

    def stop(self) -> None:
        if self.memory is not None:
            self.memory.stop()
        if self.local is not None:
            self.local.stop()
        for gate in self._gates:
            gate.stop()
        for server in self._servers:
            server.stop()
        self.openai.stop()

    def backend_env(self) -> dict[str, str]:
        """What this test process, acting as the backend, must set to start runs."""
        assert self.local is not None
        return self.local.client_env

    def grant(self, member: str, role: str, resource: str) -> Grant:
        """The plan's grant of `role` to `member` ("workflow" or a function) on `resource`."""
        if member == "workflow":
            email = self.deployment.workflow.service_account
        else:
            email = self.deployment.functions[member].service_account
        found = [
            grant
            for grant in self.policy.grants
            if (grant.member, grant.role, grant.resource)
            == (f"serviceAccount:{email}", role, resource)
        ]
        assert len(found) == 1, f"{len(found)} grants of {role} to {member} on {resource}"
        return found[0]

    @contextlib.contextmanager
    def without(self, grant: Grant) -> Iterator[None]:
        """The deployment with `grant` removed from its plan, for the `with` block. A function
        that may hold something the grant let it read gets a fresh instance first."""
        assert self.local is not None
        self.policy.removed.add(grant)
        try:
            name = self.deployment.function_of(grant.member.removeprefix("serviceAccount:"))
            if any(grant.covers(resource) for resource in self._cached.get(name, ())):
                self.local.restart(name)
                self.restarts.append(name)
                self._cached.pop(name)
            yield
        finally:
            self.policy.removed.discard(grant)

    def run(self, business: BusinessInput | None = None, timeout: float = 90) -> Outcome:
        """One complete run of `business` (default: the sample under a new id), started as the
        backend starts it; raises `ParityFailure` unless it succeeds with no permission refused
        anywhere."""
        business = business or sample_business()
        save_business(Business(business_id=business.business_id, tier="enterprise"))
        self.policy.take_checks()
        run_id = launch.start_run(business)
        name = documents.get_run(run_id).execution
        assert name is not None
        client = executions.executions_client()
        deadline = time.monotonic() + timeout
        execution = client.get_execution(name=name)
        while execution.state == _ACTIVE and time.monotonic() < deadline:
            time.sleep(0.1)
            execution = client.get_execution(name=name)
        run = documents.get_run(run_id)
        checks = self.policy.take_checks()
        self.checks += checks
        for check in checks:
            if check.allowed and check.permission in CACHED_PERMISSIONS:
                caller = self.deployment.function_of(check.caller)
                self._cached.setdefault(caller, set()).add(check.resource)
        denied = [check for check in checks if not check.allowed]
        if denied or execution.state != Execution.State.SUCCEEDED or run.status != "succeeded":
            raise ParityFailure(
                f"{self._explain_denials(checks)}run {run_id} ended {run.status}"
                f" (execution {execution.state.name}): {run.error or execution.error.payload}"
            )
        return Outcome(business, run_id, run, execution, checks)

    def _explain_denials(self, checks: list[Check]) -> str:
        lines = []
        for check in checks:
            if check.allowed:
                continue
            line = (
                f"{self.deployment.function_of(check.caller)} ({check.caller}) lacks "
                f"{check.role_needed} on {check.resource} (denied {check.permission})\n"
            )
            if line not in lines:
                lines.append(line)
        return "".join(lines)
