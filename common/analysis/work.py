"""A phase's sub-tasks as they run: each one a cascade of model calls judged by its checks,
paid through the phase's ledger, streamed onto the progress bar, and stored when it is done.

A finished sub-task is one commit (`Work.ask`): its answer (`runs/{id}/phases/{phase}/parts/
{key}`, created once), its event, its points and its cost on the run. A phase that starts again
after a crash, a timeout or a busy answer finds its parts and pays for none of them twice; a
cancellation seen in a commit's results stops the phase before its next sub-task, keeping every
part paid for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel

from common.analysis import checks, outcomes, prompts
from common.analysis.progress import PhaseProgress
from common.analysis.registry import SubTaskSpec
from common.budget.ledger import BudgetLedger
from common.llm import Completion, Router
from common.llm.base import Message, OutputSink
from common.llm.cascade import Start, start_tier
from common.llm.catalogue import TIERS
from common.models import BusinessInput, Strict
from common.money import usd
from common.platform.settings import Settings
from common.platform.store import db
from common.runs import documents, events
from common.spend.ledger import Ledger
from common.spend.records import AttemptRecord, ModelTier

PARTS = "parts"
# What an answer still fails, as far as a person reads it (the first few problems).
UNRESOLVED_KEPT = 3
T = TypeVar("T")


class Cancelled(Exception):
    """The run was asked to stop: the phase stops before its next sub-task."""


def part_ref(run_id: str, phase: str, key: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = (
        documents.run_ref(run_id)
        .collection(documents.PHASES)
        .document(phase)
        .collection(PARTS)
        .document(key)
    )
    return ref


class Tally:
    """The phase's ledger, counting what its settles charged (threads share it)."""

    def __init__(self, inner: Ledger) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.nanos = 0
        self.attempts: list[AttemptRecord] = []

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        self._inner.reserve(key=key, model=model, tier=tier, upper_bound_nanos=upper_bound_nanos)

    def settle(self, attempt: AttemptRecord) -> None:
        self._inner.settle(attempt)
        with self._lock:
            self.nanos += attempt.cost_nanos
            self.attempts.append(attempt)

    def close(self) -> None:
        """Close the ledger underneath, if it has an end (a `BudgetLedger` does)."""
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


@dataclass
class Done:
    """A finished sub-task (instance): its answer and how it came about."""

    key: str
    sub: SubTaskSpec
    answer: Any
    model: str
    provider: str
    tier: ModelTier
    escalations: list[dict[str, str]]
    unresolved: list[str]
    cost_nanos: int
    attempts: int
    input_tokens: int
    output_tokens: int
    reused: bool = False

    @classmethod
    def of(cls, key: str, sub: SubTaskSpec, completion: Completion[Any]) -> Done:
        return cls(
            key=key,
            sub=sub,
            answer=completion.parsed,
            model=completion.model_used,
            provider=completion.provider,
            tier=completion.decision.tier,
            escalations=[
                {
                    "from": e.from_model,
                    "to": e.to_model,
                    "from_tier": e.from_tier,
                    "to_tier": e.to_tier,
                    "reason": e.reason[:300],
                }
                for e in completion.escalations
            ],
            unresolved=completion.unresolved[:UNRESOLVED_KEPT],
            cost_nanos=completion.cost_nanos,
            attempts=len(completion.attempts),
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens + completion.usage.reasoning_tokens,
        )

    @classmethod
    def stored(cls, key: str, sub: SubTaskSpec, data: dict[str, Any], schema: type[Strict]) -> Done:
        summary = data["summary"]
        return cls(
            key=key,
            sub=sub,
            answer=schema.model_validate(data["answer"]),
            model=summary["model"],
            provider=summary["provider"],
            tier=summary["tier"],
            escalations=list(summary["escalations"]),
            unresolved=list(summary["unresolved"]),
            cost_nanos=int(summary["cost_nanos"]),
            attempts=int(summary["attempts"]),
            input_tokens=int(summary["input_tokens"]),
            output_tokens=int(summary["output_tokens"]),
            reused=True,
        )

    def summary(self) -> dict[str, Any]:
        """What the phase and the web app keep of it (no answer: that is the output)."""
        return {
            "key": self.key,
            "task_type": self.sub.task_type,
            "title": self.sub.title,
            "model": self.model,
            "provider": self.provider,
            "tier": self.tier,
            "escalations": self.escalations,
            "unresolved": self.unresolved,
            "cost_nanos": self.cost_nanos,
            "attempts": self.attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }

    def step(self, phase_title: str, label: str) -> str:
        """The sub-task's line in the activity list."""
        line = f"{phase_title}: {label} by {self.model}"
        if self.escalations:
            moves = ", ".join(f"{e['from']} → {e['to']}" for e in self.escalations)
            line += f" (escalated {moves}: {self.escalations[-1]['reason'][:120]})"
        if self.unresolved:
            line += f"; still failing: {self.unresolved[0][:120]}"
        return line


@dataclass(eq=False)
class _Ending:
    """A finished sub-task waiting for the commit of its end."""

    done: Done
    label: str
    taken: bool = False  # a committing thread took it
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass
class Work:
    """The sub-tasks of one phase of one run (see the module docstring).

    Attributes:
        parts: the parts stored before (a restarted phase), by key.
        deadline: `time.monotonic()` by which every model call must be able to finish.
    """

    run_id: str
    business: BusinessInput
    router: Router
    ledger: Tally
    progress: PhaseProgress
    settings: Settings
    allowed: frozenset[ModelTier]
    deadline: float
    evidence: list[str]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The phase's budget ledger, whose settles the sub-tasks' commits write (None: written by
    # the ledger itself as they happen).
    budget: BudgetLedger | None = None
    final: list[tuple[Done, str]] = field(default_factory=list)
    done: list[Done] = field(default_factory=list)
    counted_nanos: int = 0  # what this instance's boundaries added to the run's cost
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Sub-tasks' ends waiting for their commit, and whether one is being committed.
    _ends: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Ending] = field(default_factory=list)
    _committing: bool = False

    def __post_init__(self) -> None:
        self.inputs = checks.Inputs.of(self.business)
        self.phase = self.progress.phase
        self.spec = self.progress.spec

    # --- prompts ---------------------------------------------------------------------------

    def messages(
        self, sub: SubTaskSpec, earlier: Mapping[str, BaseModel | str], **task: Any
    ) -> list[Message]:
        """`sub`'s prompt: its instruction (formatted with `task`) on what it builds on."""
        instruction = sub.instruction.format(icp_count=self.business.icp_count, **task)
        found = self.evidence if sub.evidence else None
        return prompts.subtask_messages(instruction, self.business, earlier, found)

    # --- sub-tasks -------------------------------------------------------------------------

    def ask(
        self,
        sub: SubTaskSpec,
        key: str,
        messages: Sequence[Message],
        *,
        schema: type[Strict] | None = None,
        check: Callable[[Any], Sequence[str]] | None = None,
        points: int | None = None,
        label: str | None = None,
        final: bool = False,
    ) -> Done:
        """Run sub-task `sub` (instance `key`) to an answer, or reuse the one stored before.

        The answer is judged by the universal checks and `check`; one failing is asked again
        naming its problems, then moves up a tier (see `common.llm.router`). Its points go on
        the bar as it streams and when it is done; unless `final` (the phase's end commit
        records it), its end is one commit.

        Raises:
            Cancelled: the run was asked to stop before this sub-task began.
        """
        schema = schema or sub.answer
        points = sub.points if points is None else points
        label = label or sub.title
        if key in self.parts:
            done = Done.stored(key, sub, self.parts[key], schema)
            self.progress.add(points, key)
            self._keep(done)
            return done
        self.stop_if_cancelled()
        on_output = self.progress.sink(key, points, sub.expected_tokens)
        completion = self._cascade(sub, key, messages, schema, check, on_output)
        done = Done.of(key, sub, completion)
        self._keep(done)
        if final:
            self.progress.add(points, key)
            self.final.append((done, label))
        else:
            self._boundary(done, points, label)
        return done

    def review(
        self,
        sub: SubTaskSpec,
        key: str,
        messages: Sequence[Message],
        *,
        check: Callable[[Any], Sequence[str]] | None = None,
    ) -> Any:
        """A review within another sub-task's check (a critic): its own cascade, paid through
        the phase's ledger, no step of its own; returns its verdict."""
        return self._cascade(sub, key, messages, sub.answer, check, None).parsed

    def _cascade(
        self,
        sub: SubTaskSpec,
        key: str,
        messages: Sequence[Message],
        schema: type[Strict],
        check: Callable[[Any], Sequence[str]] | None,
        on_output: OutputSink | None,
    ) -> Completion[Any]:
        """One call of `sub` through the cascade: it starts where outcomes say, answers are
        judged by the universal checks and `check`, asked again, then moved up a tier."""
        call_key = f"{self.run_id}:{self.phase}:{key}"
        start = self.start(sub, call_key)
        inputs = self.inputs

        def judged(answer: Any) -> list[str]:
            found = checks.universal(answer, inputs)
            return found + list(check(answer)) if check is not None and not found else found

        return self.router.execute(
            sub.task_type,
            messages,
            schema=schema,
            allowed_tiers=self.allowed,
            ledger=self.ledger,
            call_key=call_key,
            check=judged,
            asks=self.settings.cascade_asks,
            escalate=True,
            tier=start.tier,
            why=start.reason,
            profile=sub.profile,
            on_output=on_output,
            deadline=self.deadline,
        )

    def parallel(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run `jobs` at once and return their results in order; when some fail, every job
        still runs to its end (what was paid for is kept) and the first failure is raised."""
        if len(jobs) == 1:
            return [jobs[0]()]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(job) for job in jobs]
        errors = [error for f in futures if (error := f.exception()) is not None]
        if errors:
            # A real failure matters more than a cancellation another job saw.
            raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        return [f.result() for f in futures]

    def stop_if_cancelled(self) -> None:
        if self.progress.cancelled:
            raise Cancelled(f"run {self.run_id} was cancelled")

    def start(self, sub: SubTaskSpec, call_key: str) -> Start:
        """Where a call of `sub` starts (see `common.llm.cascade.start_tier`)."""
        top = max(self.allowed, key=TIERS.index)
        if self.settings.analysis_routing == "strongest":
            return Start(top, f"every call on the strongest allowed tier ({top})")
        if sub.start == "strongest":
            return Start(top, f"{sub.title} takes the strongest allowed tier ({top})")
        settings = self.settings
        return start_tier(
            sub.task_type,
            default=sub.start,
            allowed=self.allowed,
            rates=outcomes.pass_rates() if sub.learns else {},
            target=settings.router_pass_target,
            min_samples=settings.router_min_samples,
            explore_rate=settings.router_explore_rate if sub.learns else 0.0,
            key=call_key,
        )

    # --- commits ---------------------------------------------------------------------------

    def _keep(self, done: Done) -> None:
        with self._lock:
            self.done.append(done)

    def _boundary(self, done: Done, points: int, label: str) -> None:
        """The sub-task's end: its part, its event, its points, its cost and the usage records
        of the calls settled since the last commit, in one commit, shared with the ends of
        parallel sub-tasks that finished while another end was being committed (group
        commit: one round trip for all of them, none waiting longer than one commit)."""
        self.progress.add(points, done.key)
        mine = _Ending(done, label)
        with self._ends:
            self._queue.append(mine)
            while not mine.taken and self._committing:
                self._ends.wait()
            group: list[_Ending] = []
            if not mine.taken:
                group, self._queue = self._queue, []
                for ending in group:
                    ending.taken = True
                self._committing = True
        if group:
            try:
                self._commit_ends(group)
            finally:
                with self._ends:
                    self._committing = False
                    self._ends.notify_all()
        mine.finished.wait()
        if mine.error is not None:
            raise mine.error

    def _commit_ends(self, group: list[_Ending]) -> None:
        """Commit `group`'s ends together; if one was stored before (a restarted phase), each
        on its own, so that the others still are."""
        try:
            if len(group) == 1 or not self._committed(group):
                for ending in group:
                    self._committed([ending])  # one stored before is counted already
        finally:
            for ending in group:
                ending.finished.set()

    def _committed(self, group: list[_Ending]) -> bool:
        """Commit `group` in one commit; False if one of its parts was stored before (by an
        earlier instance: nothing was written), else True (a failure is each ending's error)."""
        try:
            self._commit_end(group)
        except exceptions.AlreadyExists:
            return False
        except BaseException as error:
            for ending in group:
                ending.error = error
        return True

    def _commit_end(self, group: list[_Ending]) -> None:
        """One commit: the parts and events of `group`, the run's progress and their cost, and
        the settles not written yet.

        Raises: what the commit raises (a replay's AlreadyExists)."""
        last = group[-1]
        fields, percent = self.progress.fields(step=last.done.step(self.spec.title, last.label))
        cost = sum(ending.done.cost_nanos for ending in group)
        fields["cost_nanos"] = firestore.Increment(cost)

        def batch() -> firestore.WriteBatch:
            batch = db().batch()
            for ending in group:
                done = ending.done
                batch.create(
                    part_ref(self.run_id, self.phase, done.key),
                    {
                        "answer": done.answer.model_dump(mode="json"),
                        "summary": done.summary(),
                        "completed_at": firestore.SERVER_TIMESTAMP,
                    },
                )
                events.add_event(
                    batch,
                    self.run_id,
                    self.event_id(done.sub, done.key),
                    "subtask_completed",
                    phase=self.phase,
                    step=done.step(self.spec.title, ending.label),
                    percent=percent,
                    data=self.event_data(done),
                )
            batch.update(documents.run_ref(self.run_id), fields)
            return batch

        self.commit_with_settles(batch)
        with self._lock:
            self.counted_nanos += cost

    def commit_with_settles(
        self, build: Callable[[], firestore.WriteBatch], *, closing: bool = False
    ) -> list[Any]:
        """Commit the batch `build` makes with the usage records of the calls settled since the
        last commit and (with `closing`: the request's end) the closes of the budget blocks
        this process holds for the business, which those settles leave idle. When a period
        changed since the closes were prepared, they are prepared again and the whole batch
        committed once more; when it fails otherwise (or again), those writes go on their own
        (at once if one of them was what failed it, then the batch again without them; else
        also at once, before the failure is raised).

        Raises: what the commit raises (a replay's AlreadyExists)."""
        budget = self.budget
        unwritten = budget.unwritten() if budget is not None else []
        ends = None
        if closing and budget is not None:
            budget.written(unwritten)  # counted now: their blocks close in this commit
            ends = budget.closing()

        def with_budget() -> firestore.WriteBatch:
            batch = build()
            for settle in unwritten:
                settle.add_to(batch)
            if ends is not None:
                ends.add_to(batch)
            return batch

        def alone() -> None:
            if budget is not None:
                budget.write_unwritten(unwritten, counted=ends is not None)
            if ends is not None:
                ends.failed()

        for again in (True, False):
            try:
                results = self.progress.commit(with_budget())
                break
            except exceptions.FailedPrecondition:
                if not unwritten and (ends is None or not ends.prepared):
                    raise
                if again and ends is not None and ends.prepared:
                    # Two phases of a business ending together: the other's close or take
                    # moved a period since this one's closes read it. Read again, once.
                    try:
                        ends = ends.again()
                    except BaseException:
                        alone()
                        raise
                    continue
                # A hold changed meanwhile (a block reconciled), or the periods again: the
                # settles and closes on their own, then the batch again without them.
                alone()
                return self.progress.commit(build())
            except BaseException:
                alone()
                raise
        if ends is not None:
            ends.committed()
        elif budget is not None:
            budget.written(unwritten)
        return results

    def event_id(self, sub: SubTaskSpec, key: str) -> str:
        return f"{self.phase}.{self.spec.sub_tasks.index(sub) + 1:02d}.{key}"

    @staticmethod
    def event_data(done: Done) -> dict[str, Any]:
        return {
            "sub_task": done.key,
            "task_type": done.sub.task_type,
            "model": done.model,
            "provider": done.provider,
            "tier": done.tier,
            "escalations": done.escalations,
            "unresolved": done.unresolved,
            "attempts": done.attempts,
            "cost_usd": usd(done.cost_nanos),
        }


def deadline(started: float, settings: Settings) -> float:
    """When a phase that started at `started` must have its last model call finished by."""
    return started + settings.phase_deadline_seconds - settings.deadline_margin_seconds
