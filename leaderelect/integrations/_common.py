"""The framework-neutral part of the integrations: an election that runs beside an application.

``BackgroundElection`` campaigns for as long as an application runs, runs leader-only workers
during each term, and answers "who leads, and are we healthy?" for request handlers. The
FastAPI and aiohttp modules only adapt it to their lifespans, dependencies and handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, final

import anyio
from anyio.abc import TaskStatus

from .. import FencingToken, LeaderElector, Leadership
from .._tasks import BackgroundTasks

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

__all__ = [
    "DEFAULT_TOLERANCE",
    "BackgroundElection",
    "ElectionStatus",
    "Worker",
    "liveness_answer",
    "liveness_problem",
    "not_leader_body",
    "readiness_answer",
    "readiness_problem",
    "run_while_leading",
]

logger = logging.getLogger("leaderelect.integrations")

Worker = Callable[[Leadership], Awaitable[None]]
"""Leader-only work: an async callable that takes the term it runs in."""

DEFAULT_TOLERANCE = 20.0
"""Seconds past ``lease_duration`` the liveness check tolerates; kube-controller-manager and
kube-scheduler use 20 s with client-go's ``HealthzAdaptor``."""


async def run_while_leading(
    elector: LeaderElector,
    fn: Callable[[Leadership, Unpack[_Ts]], Awaitable[None]],
    *args: Unpack[_Ts],
) -> None:
    """Run ``fn(leadership, *args)`` whenever this candidate leads; campaign again after a loss.

    This is [`LeaderElector.run()`][leaderelect.LeaderElector.run] with trio's ``fn, *args``
    calling convention, for background work in any asyncio program: a periodic reconciler,
    a queue consumer. ``fn`` starts each time a term begins and is cancelled the moment the
    term is lost; the lease is released only after ``fn`` has finished, so no two candidates
    ever run it at the same time (as long as ``fn`` honours cancellation: work handed to a
    thread is not covered).

    Returns when ``fn`` returns, after releasing the lease. An exception from ``fn`` propagates,
    also after the release. Cancel the caller to stop: the lease is released on the way out.

    Args:
        elector: the elector to campaign with (it must not be in use elsewhere).
        fn: the work; it receives the [`Leadership`][leaderelect.Leadership] of the term.
        *args: more positional arguments for ``fn``.

    Example:
        ```python
        async def reconcile_forever(leadership: Leadership, every: float) -> None:
            while True:
                await reconcile(fencing_token=leadership.token)
                await anyio.sleep(every)

        await run_while_leading(elector, reconcile_forever, 30.0)
        ```
    """

    async def term(leadership: Leadership) -> None:
        await fn(leadership, *args)

    await elector.run(term)


@dataclass(frozen=True, slots=True)
class ElectionStatus:
    """What a ``BackgroundElection`` knows at one moment; cheap to take, safe to share."""

    lease: str
    """The Lease, as ``"namespace/name"``."""
    identity: str
    """This candidate's identity."""
    leader: str | None
    """The holder as last observed (``None`` while the lease is free, absent or unread)."""
    is_leader: bool
    """True while this candidate holds a term whose deadline has not passed."""
    token: FencingToken | None
    """The fencing token of the current term, while this candidate leads."""
    running: bool
    """True while the election campaigns or leads; False before start, after stop or failure."""
    error: str | None
    """Why the election stopped, when leader-only work failed; ``None`` otherwise."""
    problem: str | None = None
    """Why the election cannot proceed (a missing RBAC permission, a missing namespace), while
    it retries: [`LeaderElector.problem`][leaderelect.LeaderElector.problem]; ``None`` otherwise."""

    def to_dict(self) -> dict[str, str | bool | None]:
        """The status as a JSON-ready mapping (the token rendered as ``"uid:transitions"``)."""
        return {
            "lease": self.lease,
            "identity": self.identity,
            "leader": self.leader,
            "is_leader": self.is_leader,
            "token": None if self.token is None else str(self.token),
            "running": self.running,
            "error": self.error,
            "problem": self.problem,
        }


@final
class BackgroundElection:
    """Campaigns for a lease in the background for as long as an application runs.

    An async context manager. On entry it starts a task that campaigns with
    [`LeaderElector.run()`][leaderelect.LeaderElector.run], and returns at once: the
    application starts serving while the election goes on. Each time this candidate wins a
    term, the ``workers`` start, each with the term's
    [`Leadership`][leaderelect.Leadership]; the term is held until the application stops or
    the lease is lost, even if every worker has returned, so that leader-only request
    handlers keep working. A lost term cancels the workers, and the election campaigns again.

    On exit the workers are cancelled and awaited, and the lease is released (bounded by
    ``renew_deadline``) before the context returns.

    A worker that raises ends the term (the lease is released) and stops the election: the
    error is logged, shows in [`status`][leaderelect.integrations.BackgroundElection.status]
    (so a liveness probe built on it fails and the pod is restarted) and is raised again when
    the context exits. The task is owned by the context, and a failure does not cancel the code
    inside it, which is usually a web server's lifespan.

    The election follows the Lease with one watch, entering ``async with elector:`` itself:
    pass an elector that is not in use elsewhere.

    Args:
        elector: the elector to campaign with.
        *workers: leader-only work, started at the beginning of each term.

    Example:
        ```python
        async with BackgroundElection(elector, reconcile_forever) as election:
            await serve_requests(election)   # election.status.is_leader, ...
        ```
    """

    def __init__(self, elector: LeaderElector, *workers: Worker) -> None:
        self._elector = elector
        self._workers = workers
        self._leadership: Leadership | None = None
        self._leader: str | None = None
        self._running = False
        self._error: BaseException | None = None
        self._entered = False
        self._tasks: BackgroundTasks | None = None
        self._changed = anyio.Event()

    @property
    def elector(self) -> LeaderElector:
        """The elector this election campaigns with."""
        return self._elector

    @property
    def leadership(self) -> Leadership | None:
        """The current term while it is valid (see ``Leadership.is_valid``), else ``None``.

        Read it on the event loop's thread (in FastAPI, from ``async def`` endpoints and
        dependencies): the term's validity is judged by the loop's clock.
        """
        term = self._leadership
        return term if term is not None and term.is_valid else None

    @property
    def status(self) -> ElectionStatus:
        """A snapshot of the election's state; read it on the event loop's thread."""
        term = self.leadership
        error = self._error
        problem = self._elector.problem
        return ElectionStatus(
            lease=self._elector.lease,
            identity=self._elector.identity,
            leader=self._elector.identity if term is not None else self._leader,
            is_leader=term is not None,
            token=None if term is None else term.token,
            running=self._running,
            error=None if error is None else f"{type(error).__name__}: {error}",
            problem=None if problem is None else str(problem),
        )

    async def wait_until(self, predicate: Callable[[ElectionStatus], bool]) -> ElectionStatus:
        """Wait until ``predicate(status)`` holds; returns that status.

        The predicate is checked now, then each time the observed leader changes, a term
        begins or ends, or the election stops. Bound the wait yourself (``anyio.fail_after``).

        Example:
            ```python
            await election.wait_until(lambda status: status.is_leader)
            ```
        """
        while True:
            changed = self._changed
            status = self.status
            if predicate(status):
                return status
            await changed.wait()

    def __repr__(self) -> str:
        status = self.status
        state = "leading" if status.is_leader else ("running" if status.running else "stopped")
        return f"<BackgroundElection {status.identity!r} for {status.lease} {state}>"

    async def __aenter__(self) -> BackgroundElection:
        if self._entered:
            raise RuntimeError("a BackgroundElection can be entered only once; make a new one")
        self._entered = True
        tasks = BackgroundTasks()
        group = await tasks.__aenter__()
        try:
            await group.start(self._campaign)
        except BaseException:
            await tasks.close()
            raise
        self._tasks = tasks
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None, "__aexit__ before __aenter__"
        await self._tasks.close()  # cancels the campaign; the term's release is shielded
        if self._error is not None and exc is None:
            raise self._error

    # -- the background task -----------------------------------------------------------------

    async def _campaign(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._running = True
        self._notify()
        task_status.started()
        try:
            # One read and one watch of the Lease, shared by every term and by the observer.
            # Entered here, in the background: the application starts even while the API
            # server cannot be reached.
            async with self._elector, BackgroundTasks() as tasks:
                tasks.start_soon(self._follow_leaders)
                await self._elector.run(self._lead)
        except Exception as exc:  # a worker failed (cancellation passes through)
            self._error = exc
            logger.exception("leader election for lease %s stopped", self._elector.lease)
        finally:
            self._running = False
            self._notify()

    async def _follow_leaders(self) -> None:
        async with self._elector.observe() as leaders:
            async for leader in leaders:
                self._leader = leader
                self._notify()

    async def _lead(self, leadership: Leadership) -> None:
        failures: list[Exception] = []

        async def guarded(worker: Worker) -> None:
            try:
                await worker(leadership)
            except Exception as exc:
                failures.append(exc)
                group.cancel_scope.cancel()

        self._leadership = leadership
        self._notify()
        try:
            async with anyio.create_task_group() as group:
                for worker in self._workers:
                    group.start_soon(guarded, worker)
                await anyio.sleep_forever()  # hold the term until shutdown or loss
        finally:
            self._leadership = None
            self._notify()
        if failures:
            raise failures[0]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


# -- shared by the health and guard handlers of each framework ---------------------------------


def liveness_problem(election: BackgroundElection, tolerance: float) -> str | None:
    """Why the process should be restarted, or ``None`` when it is healthy.

    Fails when the election stopped because leader-only work failed, or when
    [`LeaderElector.check()`][leaderelect.LeaderElector.check] fails: a term that outlived
    ``lease_duration + tolerance`` since its last renewal means the process is wedged.
    """
    status = election.status
    if status.error is not None:
        return f"leader election for lease {status.lease} stopped: {status.error}"
    return election.elector.check(tolerance)


def readiness_problem(election: BackgroundElection, *, leader_only: bool) -> str | None:
    """Why the replica should not get traffic, or ``None`` when it is ready.

    Not ready while the election is not running, while it cannot proceed because of a
    misconfiguration ([`LeaderElector.problem`][leaderelect.LeaderElector.problem]: the
    message names the missing RBAC verb and resource, or the missing namespace), and, with
    ``leader_only``, while this replica does not lead.
    """
    status = election.status
    if not status.running:
        return f"leader election for lease {status.lease} is not running"
    if status.problem is not None:
        return f"leader election for lease {status.lease} cannot proceed: {status.problem}"
    if leader_only and not status.is_leader:
        return _not_leader_message(status)
    return None


def liveness_answer(election: BackgroundElection, tolerance: float) -> tuple[int, dict[str, str]]:
    """``/healthz``'s status code and JSON body, from :func:`liveness_problem`."""
    problem = liveness_problem(election, tolerance)
    if problem is not None:
        return 503, {"status": "failing", "reason": problem}
    return 200, {"status": "ok"}


def readiness_answer(
    election: BackgroundElection, *, leader_only: bool
) -> tuple[int, dict[str, str]]:
    """``/readyz``'s status code and JSON body, from :func:`readiness_problem`."""
    problem = readiness_problem(election, leader_only=leader_only)
    if problem is not None:
        return 503, {"status": "not ready", "reason": problem}
    return 200, {"status": "ready"}


def not_leader_body(election: BackgroundElection) -> Mapping[str, str | bool | None]:
    """The JSON body of a 503 from a leader-only endpoint on a follower."""
    status = election.status
    return {
        "error": "not_leader",
        "message": _not_leader_message(status),
        "lease": status.lease,
        "identity": status.identity,
        "leader": status.leader,
    }


def _not_leader_message(status: ElectionStatus) -> str:
    if status.leader is None or status.leader == status.identity:
        leader = "no leader is known right now"
    else:
        leader = f"the leader is {status.leader!r}"
    return f"{status.identity!r} is not the leader of lease {status.lease}; {leader}"
