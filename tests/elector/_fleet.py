"""Candidates for end-to-end election tests, and the record of when each one really led.

A ``Fleet`` makes electors for one Lease, each on its own API client (and, on the embedded
server, as its own user, so faults can target one candidate). A ``Candidate`` runs
``leading()`` in the test's task group and records its work interval on the loop clock; the
``WorkLog`` checks that no two intervals overlap.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from _kube import KubeTarget, leases_path
from anyio.abc import TaskGroup

from leaderelect import LeaderElector, Leadership, LeadershipLost, LeaseLock

FAST: dict[str, float] = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}
"""Short timings that keep the suite fast (and valid: 2 > 1.5 + 0.2, 1.5 > 1.2 * 0.2)."""


@dataclass
class Interval:
    """When one candidate's work ran: [start, end) on the event loop's clock."""

    identity: str
    token: str
    start: float
    end: float = math.inf


@dataclass
class WorkLog:
    """Every work interval of every candidate, and an event per change."""

    intervals: list[Interval] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def started(self, identity: str, leadership: Leadership) -> Interval:
        interval = Interval(identity, str(leadership.token), anyio.current_time())
        self.intervals.append(interval)
        self._notify()
        return interval

    def ended(self, interval: Interval) -> None:
        interval.end = anyio.current_time()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[WorkLog], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()

    async def wait_for_starts(self, count: int) -> Interval:
        """Wait until ``count`` terms have started; returns the latest."""
        await self.wait_for(lambda log: len(log.intervals) >= count)
        return self.intervals[count - 1]

    def assert_no_overlap(self) -> None:
        ordered = sorted(self.intervals, key=lambda i: i.start)
        for before, after in itertools.pairwise(ordered):
            assert before.end <= after.start, (
                f"two leaders at once: {before.identity} worked until {before.end:.3f}, "
                f"{after.identity} started at {after.start:.3f}"
            )


class Candidate:
    """One elector running ``leading()`` until stopped, cancelled or killed."""

    def __init__(self, elector: LeaderElector, log: WorkLog) -> None:
        self.elector = elector
        self.log = log
        self.identity = elector.identity
        self.leadership: Leadership | None = None
        self.lost: LeadershipLost | None = None
        self.error: BaseException | None = None
        self.led = anyio.Event()
        self.done = anyio.Event()
        self.interval: Interval | None = None
        self._stop = anyio.Event()
        self._scope = anyio.CancelScope()
        self.body: Callable[[Leadership], Awaitable[None]] | None = None

    async def run(self) -> None:
        with self._scope:
            try:
                async with self.elector.leading() as leadership:
                    self.leadership = leadership
                    self.interval = self.log.started(self.identity, leadership)
                    self.led.set()
                    try:
                        if self.body is not None:
                            await self.body(leadership)
                        await self._stop.wait()
                    finally:
                        self.log.ended(self.interval)
            except LeadershipLost as lost:
                self.lost = lost
            except Exception as exc:
                self.error = exc
            finally:
                self.done.set()

    def stop(self) -> None:
        """Let the body return: the term ends gracefully (and releases)."""
        self._stop.set()

    def cancel(self) -> None:
        """Cancel from outside, as a shutting-down application would."""
        self._scope.cancel()


class Fleet:
    """Makes candidates for one Lease and runs them in the test's task group."""

    def __init__(
        self,
        kube: KubeTarget,
        lease_name: str,
        task_group: TaskGroup,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        self.kube = kube
        self.lease_name = lease_name
        self.log = WorkLog()
        self._task_group = task_group
        self._stack = stack

    async def lock(self, identity: str) -> LeaseLock:
        """A lock on its own client; on the embedded server, as user ``identity``."""
        server = self.kube.server
        if server is not None:
            server.add_user(identity)
            path = server.kubeconfig(user=identity)
        elif self.kube.has_user("elector"):
            path = self.kube.kubeconfig("elector")  # least privilege on a real server
        else:
            path = self.kube.kubeconfig("admin")
        lock = await LeaseLock.from_kubeconfig(
            self.lease_name, self.kube.namespace, config_file=path
        )
        self._stack.push_async_callback(lock.aclose)
        return lock

    async def elector(self, identity: str, **options: Any) -> LeaderElector:
        """An elector with FAST timings; its server user is ``options["user"]``, by default
        ``identity``; the other options go to ``LeaderElector``."""
        user = options.pop("user", None) or identity
        settings: dict[str, Any] = {**FAST, **options}
        return LeaderElector(await self.lock(user), identity=identity, **settings)

    async def start(self, identity: str, **options: Any) -> Candidate:
        candidate = Candidate(await self.elector(identity, **options), self.log)
        self._task_group.start_soon(candidate.run, name=f"candidate {identity}")
        return candidate

    async def lease(self) -> dict[str, Any]:
        """The stored Lease, read as admin."""
        response = await self.kube.raw("admin").get(
            leases_path(self.kube.namespace, self.lease_name)
        )
        assert response.status == 200, response.body
        lease: dict[str, Any] = response.json()
        return lease

    async def wait_for_spec(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait, by watching the Lease, until its spec satisfies ``predicate``; returns it."""
        raw = self.kube.raw("admin")
        collection = leases_path(self.kube.namespace)
        selector = {"fieldSelector": f"metadata.name={self.lease_name}"}
        while True:
            async with raw.watch(collection, selector) as stream:  # starts with the current state
                while (event := await stream.next(timeout=30)) is not None:
                    spec: dict[str, Any] = event.object.get("spec", {})
                    if event.type in ("ADDED", "MODIFIED") and predicate(spec):
                        return spec

    async def write_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Overwrite the Lease's spec as admin (an intruder or a foreign writer)."""
        raw = self.kube.raw("admin")
        path = leases_path(self.kube.namespace, self.lease_name)
        current = await raw.get(path)
        if current.status == 404:
            response = await raw.create_lease(self.lease_name, spec, namespace=self.kube.namespace)
        else:
            body = current.json()
            body["spec"] = spec
            response = await raw.request("PUT", path, body)
        assert response.status in (200, 201), response.body
        written: dict[str, Any] = response.json()
        return written


@contextlib.asynccontextmanager
async def open_fleet(kube: KubeTarget, lease_name: str) -> AsyncIterator[Fleet]:
    """Candidates for ``lease_name``; all still running are cancelled when the block ends.

    A context manager rather than a fixture: a task group must be entered and exited by the
    test's own task.
    """
    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as tg:
        fleet = Fleet(kube, lease_name, tg, stack)
        try:
            yield fleet
        finally:
            tg.cancel_scope.cancel()
