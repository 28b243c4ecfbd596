"""A fleet of Go and Python candidates on one Lease, and one timeline of what each did.

:class:`MixedFleet` starts ``le-example`` processes (:class:`_go.GoCandidate`) and our electors
(:class:`PyCandidate`) for the same Lease, and records three views of the election on the test's
loop clock:

* each Python candidate's work interval (entered/left the body of ``leading()``);
* each Go candidate's log events (``successfully acquired lease``, polls, ``leader lost``...);
* the Lease itself, every write, from a watch the test holds as admin (:class:`LeaseHistory`).

Every recorded event wakes :meth:`MixedFleet.until`, so a test waits for what it needs (a term
starting, a renewal, a Go poll line) rather than sleeping.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import pytest
from _go import GoCandidate, GoEvent, GoEventKind, GoTimings
from _kube import KubeTarget, leases_path
from anyio.abc import TaskGroup, TaskStatus

from leaderelect import (
    LeaderElector,
    Leadership,
    LeadershipLost,
    LeaseLock,
    LeaseRecord,
    Timings,
)
from leaderelect._record import parse_micro_time, record_from_spec

__all__ = [
    "LeaseHistory",
    "LeaseState",
    "MixedFleet",
    "PyCandidate",
    "Term",
    "open_mixed_fleet",
    "real_kube_variants",
]

T = TypeVar("T")

MICRO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
"""MicroTime as both client-go and we write it: UTC, six fractional digits, ``Z``."""

Side = Literal["go", "python"]


def real_kube_variants() -> list[Any]:
    """The ``kube`` fixture's variants that are real API servers (never the embedded one).

    Use as ``pytestmark = pytest.mark.parametrize("kube", real_kube_variants(), indirect=True)``.
    """
    variants = [pytest.param("real", id="real", marks=pytest.mark.real_server)]
    if os.environ.get("LEADERELECT_KUBECONFIG"):
        variants.append(pytest.param("external", id="external", marks=pytest.mark.real_server))
    return variants


@dataclass
class Term:
    """One candidate's leadership, [start, end) on the loop clock."""

    identity: str
    side: Side
    start: float
    end: float = math.inf
    ended_by: str = ""

    def __str__(self) -> str:
        end = "..." if math.isinf(self.end) else f"{self.end:.3f}"
        return f"{self.side:<6} {self.identity:<6} {self.start:.3f} -> {end} {self.ended_by}"


class _Wakeup:
    """Wakes every waiter of :meth:`MixedFleet.until` when anything is recorded."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


# --------------------------------------------------------------------------------------------
# The Lease, as the server stored it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseState:
    """One stored version of the Lease, as the test's watch delivered it."""

    at: float
    type: str
    resource_version: str
    uid: str
    spec: dict[str, Any]
    renewed_at: float = math.nan
    """The writer's ``renewTime`` on the loop clock (every writer runs on this host): when it
    built the write, so no later than the server stored it. ``nan`` when unreadable."""

    @property
    def holder(self) -> str:
        holder = self.spec.get("holderIdentity")
        return holder if isinstance(holder, str) else ""

    @property
    def transitions(self) -> int:
        value: int = self.spec.get("leaseTransitions", 0)
        return value

    @property
    def duration(self) -> int | None:
        value: int | None = self.spec.get("leaseDurationSeconds")
        return value

    @property
    def record(self) -> LeaseRecord:
        return record_from_spec(self.spec)

    def __str__(self) -> str:
        spec = self.spec
        return (
            f"{self.at:10.3f} lease {self.type:<8} (+{self.at - self.renewed_at:.3f}) "
            f"rv={self.resource_version} "
            f"holder={self.holder!r} dur={self.duration} tr={self.transitions} "
            f"acq={spec.get('acquireTime')} ren={spec.get('renewTime')}"
        )


def _loop_time_of(micro_time: object, now: float) -> float:
    """A MicroTime written on this host, on the loop clock (``now`` is the loop time now)."""
    try:
        wall = parse_micro_time(str(micro_time)).timestamp()
    except ValueError:
        return math.nan
    return now - (time.time() - wall)


class LeaseHistory:
    """Every version of one Lease, from a watch opened before any candidate starts."""

    def __init__(self, kube: KubeTarget, name: str, wakeup: _Wakeup) -> None:
        self._kube = kube
        self._name = name
        self._wakeup = wakeup
        self.states: list[LeaseState] = []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raw = self._kube.raw("admin")
        collection = leases_path(self._kube.namespace)
        # resourceVersion=0: start from the watch cache as it is. Without one, kube-apiserver
        # first waits for its cache to be provably current, which it cannot prove with etcd 3.4
        # on a quiet resource: the stream then starts with a 504 "Too large resource version"
        # ERROR. The lease does not exist yet, so nothing is missed either way.
        query = {"fieldSelector": f"metadata.name={self._name}", "resourceVersion": "0"}
        async with raw.watch(collection, query) as stream:
            assert stream.status == 200, f"cannot watch the lease: HTTP {stream.status}"
            task_status.started()
            while (event := await stream.next(timeout=3600)) is not None:
                obj = event.object
                if event.type == "ERROR":
                    raise AssertionError(f"the lease watch failed: {obj}")
                metadata = obj.get("metadata", {})
                spec = dict(obj.get("spec") or {})
                at = anyio.current_time()
                self.states.append(
                    LeaseState(
                        at=at,
                        type=event.type,
                        resource_version=str(metadata.get("resourceVersion")),
                        uid=str(metadata.get("uid")),
                        spec=spec,
                        renewed_at=_loop_time_of(spec.get("renewTime"), at),
                    )
                )
                self._wakeup.notify()

    # -- queries ---------------------------------------------------------------------------

    def after(self, moment: float) -> list[LeaseState]:
        return [s for s in self.states if s.at > moment]

    def first(
        self, predicate: Callable[[LeaseState], bool], *, after: float = -math.inf
    ) -> LeaseState | None:
        return next((s for s in self.after(after) if predicate(s)), None)

    def first_by(self, holder: str) -> LeaseState | None:
        """The version with which ``holder`` took the lease."""
        return self.first(lambda s: s.holder == holder)

    def last(self, predicate: Callable[[LeaseState], bool]) -> LeaseState | None:
        return next((s for s in reversed(self.states) if predicate(s)), None)

    def holders(self) -> list[str]:
        """The non-empty holders in the order they took the lease (one entry per term)."""
        holders: list[str] = []
        previous = ""
        for state in self.states:
            if state.holder and state.holder != previous:
                holders.append(state.holder)
            previous = state.holder
        return holders

    def takeovers(self) -> list[tuple[LeaseState, LeaseState]]:
        """(the version before, the first version by the new holder), for each change of holder."""
        return [
            (before, after)
            for before, after in itertools.pairwise(self.states)
            if after.holder and after.holder != before.holder
        ]

    def assert_written_as_client_go_writes(self) -> None:
        """Check every version and every step between two versions against client-go's rules.

        Whoever wrote it: MicroTimes with six digits; a creation has transitions 0; a renewal
        keeps holder, acquireTime, transitions and duration and moves renewTime forward; a
        release writes holder "", 1 s, acquireTime = renewTime, transitions kept; a change of
        holder (from a holder or from a released lease) adds exactly 1 to transitions.
        """
        assert self.states, "the lease was never written"
        for state in self.states:
            spec = state.spec
            assert state.type in ("ADDED", "MODIFIED"), f"unexpected {state}"
            assert isinstance(spec.get("holderIdentity"), str), f"no holderIdentity: {state}"
            assert isinstance(spec.get("leaseTransitions"), int), f"no leaseTransitions: {state}"
            assert isinstance(state.duration, int) and state.duration >= 1, str(state)
            for key in ("acquireTime", "renewTime"):
                assert MICRO_TIME.fullmatch(str(spec.get(key))), f"{key} not a MicroTime: {state}"
            assert state.record.problems == (), f"{state.record.problems} in {state}"
        first = self.states[0]
        assert first.type == "ADDED" and first.transitions == 0, f"created as {first}"
        for before, after in itertools.pairwise(self.states):
            assert after.uid == before.uid, "the lease was replaced"
            step = f"\n  {before}\n  {after}"
            if not after.holder:
                assert before.holder, f"released twice:{step}"
                assert after.duration == 1, f"a release must write 1 s:{step}"
                assert after.transitions == before.transitions, f"release changed count:{step}"
                assert after.spec["acquireTime"] == after.spec["renewTime"], step
            elif after.holder == before.holder:
                assert after.spec["acquireTime"] == before.spec["acquireTime"], f"renewal:{step}"
                assert after.transitions == before.transitions, f"renewal changed count:{step}"
                assert after.duration == before.duration, f"renewal changed duration:{step}"
                renewed, previous = after.spec["renewTime"], before.spec["renewTime"]
                assert parse_micro_time(renewed) > parse_micro_time(previous), step
            else:
                assert after.transitions == before.transitions + 1, f"takeover count:{step}"
                assert after.spec["acquireTime"] != before.spec["acquireTime"], step


# --------------------------------------------------------------------------------------------
# A Python candidate
# --------------------------------------------------------------------------------------------


class PyCandidate:
    """One of our electors, running ``leading()`` until stopped, cancelled or it loses."""

    def __init__(self, elector: LeaderElector, wakeup: _Wakeup) -> None:
        self.elector = elector
        self.identity = elector.identity
        self.term: Term | None = None
        self.leadership: Leadership | None = None
        self.lost: LeadershipLost | None = None
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self._wakeup = wakeup
        self._stop = anyio.Event()
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        with self._scope:
            try:
                async with self.elector.leading() as leadership:
                    self.leadership = leadership
                    self.term = Term(self.identity, "python", anyio.current_time())
                    self._wakeup.notify()
                    try:
                        await self._stop.wait()
                        self.term.ended_by = "stopped"
                    finally:
                        self.term.end = anyio.current_time()
                        self.term.ended_by = self.term.ended_by or "cancelled"
                        self._wakeup.notify()
            except LeadershipLost as lost:
                self.lost = lost
                if self.term is not None:
                    self.term.ended_by = f"lost: {lost.reason.value}"
            except Exception as exc:
                self.error = exc
            finally:
                self.done.set()
                self._wakeup.notify()

    def stop(self) -> None:
        """End the term normally: the body returns, then the lease is released."""
        self._stop.set()

    def cancel(self) -> None:
        """Cancel from outside (a shutdown); releases only with ``release_on_cancel``."""
        self._scope.cancel()

    async def stopped(self) -> None:
        """Stop, and wait until ``leading()`` has returned (after its release)."""
        self.stop()
        await self.done.wait()
        assert self.error is None, f"{self.identity} failed: {self.error!r}"

    async def cancelled(self) -> None:
        self.cancel()
        await self.done.wait()
        assert self.error is None, f"{self.identity} failed: {self.error!r}"


# --------------------------------------------------------------------------------------------
# The fleet
# --------------------------------------------------------------------------------------------


@dataclass
class MixedFleet:
    kube: KubeTarget
    lease_name: str
    le_example: Path
    task_group: TaskGroup
    stack: contextlib.AsyncExitStack
    wakeup: _Wakeup = field(default_factory=_Wakeup)
    go: dict[str, GoCandidate] = field(default_factory=dict)
    py: dict[str, PyCandidate] = field(default_factory=dict)
    history: LeaseHistory = field(init=False)

    def __post_init__(self) -> None:
        self.history = LeaseHistory(self.kube, self.lease_name, self.wakeup)

    @property
    def user(self) -> str:
        """Least privilege on our real server; admin on an external cluster."""
        return "elector" if self.kube.has_user("elector") else "admin"

    @property
    def namespace(self) -> str:
        return self.kube.namespace

    # -- starting candidates ---------------------------------------------------------------

    async def start_go(
        self, identity: str, timings: GoTimings, *, verbosity: int = 4
    ) -> GoCandidate:
        """Start ``le-example``; ``verbosity`` 4 logs each poll, 6 each request, 8 each body."""
        assert identity not in self.go and identity not in self.py, identity
        candidate = GoCandidate(
            binary=self.le_example,
            kubeconfig=self.kube.kubeconfig(self.user),
            lease=self.lease_name,
            namespace=self.namespace,
            identity=identity,
            timings=timings,
            on_event=lambda _: self.wakeup.notify(),
            verbosity=verbosity,
        )
        self.go[identity] = candidate
        self.stack.push_async_callback(candidate.aclose)
        await candidate.start(self.task_group)
        return candidate

    async def start_py(
        self, identity: str, timings: Timings, *, release_on_cancel: bool = True
    ) -> PyCandidate:
        assert identity not in self.go and identity not in self.py, identity
        lock = await LeaseLock.from_kubeconfig(
            self.lease_name, self.namespace, config_file=self.kube.kubeconfig(self.user)
        )
        self.stack.push_async_callback(lock.aclose)
        elector = LeaderElector(
            lock,
            identity=identity,
            lease_duration=timings.lease_duration,
            renew_deadline=timings.renew_deadline,
            retry_period=timings.retry_period,
            release_on_cancel=release_on_cancel,
        )
        candidate = PyCandidate(elector, self.wakeup)
        self.py[identity] = candidate
        self.task_group.start_soon(candidate.run, name=f"python candidate {identity}")
        return candidate

    # -- waiting ---------------------------------------------------------------------------

    async def until(self, probe: Callable[[], T | None], *, within: float, what: str) -> T:
        """Wait until ``probe()`` returns something other than ``None``/``False``; return it.

        Re-evaluated whenever any candidate or the lease records something.
        """
        with anyio.move_on_after(within):
            while True:
                value = probe()
                if value is not None and value is not False:
                    return value
                await self.wakeup.wait()
        raise AssertionError(f"waited {within:g}s for {what}\n{self.describe()}")

    async def wait_for_terms(self, count: int, *, within: float = 20.0) -> Term:
        """Wait until ``count`` terms have started (both sides); returns the latest."""
        terms = await self.until(
            lambda: self.terms() if len(self.terms()) >= count else None,
            within=within,
            what=f"term {count} to start",
        )
        assert len(terms) == count, f"more than {count} terms\n{self.describe()}"
        latest = terms[-1]
        # The candidate may learn of its success before the test's watch does: wait for it.
        await self.until(
            lambda: self.history.first_by(latest.identity),
            within=5,
            what=f"the lease watch to show {latest.identity}",
        )
        return latest

    async def wait_for_state(
        self, predicate: Callable[[LeaseState], bool], *, within: float = 5.0, what: str
    ) -> LeaseState:
        """The first version of the lease (already seen or still to come) matching ``predicate``."""
        return await self.until(lambda: self.history.first(predicate), within=within, what=what)

    async def next_renewal(self, holder: str, *, within: float = 15.0) -> LeaseState:
        """The next version of the lease written by ``holder`` from now on."""
        now = anyio.current_time()
        return await self.until(
            lambda: self.history.first(lambda s: s.holder == holder, after=now),
            within=within,
            what=f"a renewal by {holder}",
        )

    async def hold(self, holder: str, seconds: float) -> LeaseState:
        """Wait for the first renewal by ``holder`` at least ``seconds`` from now.

        Fails if anyone else takes the lease meanwhile (checked at the end).
        """
        since = anyio.current_time()
        state = await self.until(
            lambda: self.history.first(lambda s: s.holder == holder, after=since + seconds),
            within=seconds + 10,
            what=f"{holder} to renew for {seconds:g}s",
        )
        others = {s.holder for s in self.history.after(since) if s.at <= state.at}
        assert others == {holder}, f"{others} held the lease\n{self.describe()}"
        return state

    async def next_poll(self, candidate: GoCandidate, *, within: float = 10.0) -> GoEvent:
        """The next poll line of a Go follower (a GET that found the lease held)."""
        now = anyio.current_time()
        return await self.until(
            lambda: candidate.first(GoEventKind.POLL, after=now),
            within=within,
            what=f"a poll by {candidate.identity}",
        )

    # -- the record ------------------------------------------------------------------------

    def terms(self) -> list[Term]:
        """Every term either side has led, ordered by start."""
        terms: list[Term] = [c.term for c in self.py.values() if c.term is not None]
        for candidate in self.go.values():
            term = candidate.term()
            if term is not None:
                terms.append(Term(term.identity, "go", term.start, term.end, term.ended_by))
        return sorted(terms, key=lambda t: t.start)

    def term_of(self, identity: str) -> Term:
        return next(t for t in self.terms() if t.identity == identity)

    def assert_one_leader_at_a_time(self) -> None:
        """No two terms overlap, and their order is the order of holders in the Lease."""
        terms = self.terms()
        for before, after in itertools.pairwise(terms):
            assert before.end <= after.start, (
                f"two leaders at once: {before.identity} led until {before.end:.3f}, "
                f"{after.identity} from {after.start:.3f}\n{self.describe()}"
            )
        assert [t.identity for t in terms] == self.history.holders(), self.describe()

    def go_events(self) -> Iterable[GoEvent]:
        return sorted(
            (e for c in self.go.values() for e in c.events),
            key=lambda e: e.at,
        )

    def describe(self) -> str:
        """The whole timeline, for failure messages."""
        rows: list[tuple[float, str]] = [(s.at, str(s)) for s in self.history.states]
        rows += [(e.at, str(e)) for e in self.go_events()]
        for candidate in self.py.values():
            if candidate.term is not None:
                term = candidate.term
                rows.append((term.start, f"{term.start:10.3f} py  {term.identity:<8} leads"))
                if not math.isinf(term.end):
                    rows.append(
                        (term.end, f"{term.end:10.3f} py  {term.identity:<8} {term.ended_by}")
                    )
        text = "\n".join(f"  {row}" for _, row in sorted(rows, key=lambda r: r[0]))
        logs = "\n".join(
            f"  {c.identity} stderr:\n{c.log_text(15)}" for c in self.go.values() if c.lines
        )
        return f"timeline:\n{text}\n{logs}"


@contextlib.asynccontextmanager
async def open_mixed_fleet(
    kube: KubeTarget, lease_name: str, le_example: Path
) -> AsyncIterator[MixedFleet]:
    """A fleet whose lease watch runs before anything starts; all candidates stop at the end.

    Python candidates still running are cancelled (they release, where configured to), Go
    processes still running are killed (SIGKILL, then reaped); the lease itself is deleted by
    the ``kube`` fixture.
    """
    async with anyio.create_task_group() as tg:
        stack = contextlib.AsyncExitStack()
        fleet = MixedFleet(kube, lease_name, le_example, tg, stack)
        try:
            await tg.start(fleet.history.run, name="lease history")
            yield fleet
        finally:
            with anyio.CancelScope(shield=True):
                for candidate in fleet.py.values():
                    candidate.cancel()
                for candidate in fleet.py.values():
                    with anyio.move_on_after(10):
                        await candidate.done.wait()
                await stack.aclose()
            tg.cancel_scope.cancel()
