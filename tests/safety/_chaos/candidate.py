"""A candidate that campaigns again after every loss, and can be stopped, killed or stalled.

:class:`ChaosCandidate` runs on the caller's event loop, or in a thread with a loop of its own
when it must be stalled or skewed on its own (``time.sleep()`` in a loop shared with other
candidates stalls them all alike, which is a different fault: a pause of the whole system). It
records its work in a :class:`~leaderelect.testing.LeadershipLog`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable

import anyio
import kubernetes_asyncio.client

from leaderelect import Clock, LeaderElector, Leadership, LeadershipLost, LeaseLock, Timings
from leaderelect.testing import FaultHandle, Hang, LeadershipLog, LeaseApiServer

from .clocks import SkewedClock, skewed_event_loop, suspend_loop

__all__ = ["CHAOS_TIMINGS", "ChaosCandidate"]

logger = logging.getLogger(__name__)

CHAOS_TIMINGS = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
"""Short timings for schedules: a 0.4 s margin, a takeover in about 1.1 s."""


class _LoopThread:
    """An event loop of its own in a worker thread; callbacks are posted to it thread-safely."""

    def __init__(self, name: str, rate: float) -> None:
        self._name = name
        self._rate = rate
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Callable[[], object]] = []

    async def run(self, main: Callable[[], Awaitable[None]]) -> None:
        """Run ``main`` on the thread's loop; returns when it has."""
        await anyio.to_thread.run_sync(self._thread, main, limiter=anyio.CapacityLimiter(1))

    def _thread(self, main: Callable[[], Awaitable[None]]) -> None:
        threading.current_thread().name = f"candidate {self._name}"
        factory = skewed_event_loop(self._rate)
        anyio.run(self._enter, main, backend="asyncio", backend_options={"loop_factory": factory})

    async def _enter(self, main: Callable[[], Awaitable[None]]) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            pending, self._pending = self._pending, []
        for callback in pending:
            callback()
        try:
            await main()
        finally:
            with self._lock:
                self._loop = None

    def suspend(self, seconds: float) -> None:
        """Block the loop for ``seconds`` with its clock stopped (a suspended host)."""

        self.call(lambda: suspend_loop(seconds))

    def call(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the thread's loop (soon; or when it starts)."""
        with self._lock:
            if self._loop is None:
                self._pending.append(callback)
                return
            self._loop.call_soon_threadsafe(callback)


class ChaosCandidate:
    """One candidate: campaigns, works until told otherwise, campaigns again after each loss.

    Its work is recorded in ``log`` around the body of ``leading()``. Run it with :meth:`run`
    in a task group; end it with :meth:`stop` (graceful: the term ends and the lease is
    released), :meth:`kill` (as SIGKILL: cut off from the server first, then cancelled, so
    nothing more reaches the server), or by cancelling the task.

    Args:
        server: the server (each candidate is a user of its own there).
        name: the identity, and the server user.
        log: where work intervals are recorded.
        lease: the Lease name (in ``namespace``).
        timings: the election's timings.
        clock_rate: inject a :class:`SkewedClock` running this fast (1.0: the loop's clock).
        own_loop: run in a thread with an event loop of its own (needed for :meth:`stall`).
        loop_rate: that loop's speed (see :func:`skewed_event_loop`); implies ``own_loop``.
        watch: follow the Lease with a watch (False: poll, as client-go).
        seed: seeds the elector's jitter.
        work: the leader's work, called with the ``Leadership`` of each term, recorded in
            ``log`` until it returns or is cancelled (default: work until stopped).
        clock: the elector's ``Clock`` (overrides ``clock_rate``).
    """

    def __init__(
        self,
        server: LeaseApiServer,
        name: str,
        log: LeadershipLog,
        *,
        lease: str = "chaos",
        namespace: str = "default",
        timings: Timings = CHAOS_TIMINGS,
        clock_rate: float = 1.0,
        own_loop: bool = False,
        loop_rate: float = 1.0,
        watch: bool = True,
        seed: int | None = None,
        work: Callable[[Leadership], Awaitable[None]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.server = server
        self.name = name
        self.log = log
        self.lease = lease
        self.namespace = namespace
        self.timings = timings
        self.clock_rate = clock_rate
        self.watch = watch
        self.terms = 0
        self.losses: list[LeadershipLost] = []
        self.error: BaseException | None = None
        self.killed = False
        self._seed = seed
        self._work = work
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self.leaderships: list[Leadership] = []
        self._thread = _LoopThread(name, loop_rate) if (own_loop or loop_rate != 1.0) else None
        self._stop: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopping = False
        self._cut_off: FaultHandle | None = None
        if name not in server.users:
            server.add_user(name)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` or :meth:`kill` was called."""
        return self._stopping

    @property
    def own_loop(self) -> bool:
        """True when the candidate runs in a thread with an event loop of its own."""
        return self._thread is not None

    async def run(self) -> None:
        """Campaign until stopped, killed or cancelled."""
        if self._thread is not None:
            await self._thread.run(self._main)
        else:
            await self._main()

    async def _main(self) -> None:
        self._stop = anyio.Event()
        self._scope = anyio.CancelScope()
        if self.killed:
            self._scope.cancel()
        elif self._stopping:
            self._stop.set()
        configuration = kubernetes_asyncio.client.Configuration(
            host=f"{self.server.url}/_token/{self.server.token(self.name)}"
        )
        api_client = kubernetes_asyncio.client.ApiClient(configuration)
        try:
            lock = LeaseLock(api_client, self.lease, self.namespace)
            clock = self._clock
            if clock is None and self.clock_rate != 1.0:
                clock = SkewedClock(self.clock_rate)
            elector = LeaderElector(
                lock,
                identity=self.name,
                lease_duration=self.timings.lease_duration,
                renew_deadline=self.timings.renew_deadline,
                retry_period=self.timings.retry_period,
                watch=self.watch,
                clock=clock,
                rng=random.Random(self._seed),
            )
            with self._scope:
                await self._campaign(elector, self._stop)
        except Exception as exc:  # reported by the runner, never swallowed
            self.error = exc
            logger.exception("candidate %s failed", self.name)
        finally:
            with anyio.CancelScope(shield=True):
                await api_client.close()
            self._notify()

    async def _campaign(self, elector: LeaderElector, stop: anyio.Event) -> None:
        """Campaign and work until ``stop``: a term in progress then ends gracefully (and
        releases), a campaign in progress is cancelled."""
        in_term = False
        async with anyio.create_task_group() as tg:

            async def stopper() -> None:
                await stop.wait()
                if not in_term:
                    tg.cancel_scope.cancel()

            tg.start_soon(stopper)
            while not stop.is_set():
                try:
                    async with elector.leading() as leadership:
                        self.terms += 1
                        self.leaderships.append(leadership)
                        in_term = True
                        try:
                            with self.log.working(self.name, leadership.token):
                                await self._work_until(leadership, stop)
                        finally:
                            in_term = False
                except LeadershipLost as lost:
                    self.losses.append(lost)
                    self._notify()
            tg.cancel_scope.cancel()

    async def _work_until(self, leadership: Leadership, stop: anyio.Event) -> None:
        if self._work is None:
            await stop.wait()
            return
        work = self._work

        async def run_work() -> None:
            await work(leadership)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_work)
            await stop.wait()
            tg.cancel_scope.cancel()

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (from the candidate's thread) after each lost term and when the
        candidate ends; returns a remover. Starts and ends of work notify the log's listeners."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _call(self, callback: Callable[[], object]) -> None:
        if self._thread is not None:
            self._thread.call(callback)
        else:
            callback()

    def stop(self) -> None:
        """End gracefully: the current term ends (releasing the lease) and no new one starts."""
        self._stopping = True
        self._call(lambda: self._stop.set() if self._stop is not None else None)

    def kill(self) -> None:
        """End as SIGKILL would: nothing more reaches the server, the work stops at once.

        The candidate is cut off first (every request of its user hangs, its watches are
        cut), then cancelled; its release, if it tries one, never arrives.
        """
        self._stopping = True
        self.killed = True
        self._cut_off = self.server.faults.add(Hang(user=self.name))
        self.server.faults.cut_watches(user=self.name)
        self._call(lambda: self._scope.cancel() if self._scope is not None else None)

    def stall(self, seconds: float, *, clock_stops: bool = False) -> None:
        """Block the candidate's event loop for ``seconds`` (``time.sleep``: nothing runs).

        On a candidate with a loop of its own only that candidate stops; otherwise the
        caller's whole loop (every in-loop candidate and an in-process server) stops too.
        With ``clock_stops`` (own loop only) its clock does not advance meanwhile, as on a
        host resumed from suspend: on waking it believes no time has passed.
        """
        if clock_stops:
            if self._thread is None:
                raise ValueError("clock_stops needs a candidate with a loop of its own")
            self._thread.suspend(seconds)
        elif self._thread is not None:
            self._thread.call(lambda: time.sleep(seconds))
        else:
            time.sleep(seconds)
