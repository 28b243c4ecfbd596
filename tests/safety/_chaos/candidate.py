"""A candidate that campaigns again after every loss, and can be stopped, killed or stalled.

:class:`ChaosCandidate` runs on the caller's event loop, or in a thread with a loop of its own
when it must be stalled or skewed on its own (``time.sleep()`` in a loop shared with other
candidates stalls them all alike, which is a different fault: a pause of the whole system). It
records its work in a :class:`~leaderelect.testing.LeadershipLog`.

It can also be what a deployment makes of a candidate: one of two worker processes sharing an
identity (``identity=``), an elector whose metrics sink raises (``hook_failures=``,
:class:`RaisingMetrics`), an API client the application crowds with its own long requests
(:meth:`ChaosCandidate.crowd`), a caller that cancels ``leading()`` at any moment
(:meth:`ChaosCandidate.interrupt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.client.rest
from anyio.abc import TaskGroup

from leaderelect import (
    Clock,
    LeaderElector,
    Leadership,
    LeadershipLost,
    LeaseLock,
    LossReason,
    Timings,
)
from leaderelect.testing import FaultHandle, Hang, LeadershipLog, LeaseApiServer

from .clocks import SkewedClock, skewed_event_loop, suspend_loop

__all__ = [
    "CHAOS_TIMINGS",
    "ChaosCandidate",
    "InjectedHookError",
    "RaisingMetrics",
    "share_ssl_contexts",
]

logger = logging.getLogger(__name__)

CHAOS_TIMINGS = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
"""Short timings for schedules: a 0.4 s margin, a takeover in about 1.1 s."""


class _SharedSSLContexts:
    """``kubernetes_asyncio.client.rest``'s view of :mod:`ssl`, with one context per CA file.

    kubernetes_asyncio builds a new SSL context for every ``ApiClient``, loading the system's
    CA store: about 35 ms of CPU that blocks the event loop, even for the plain-HTTP servers
    of these tests. Candidates make several clients each (one of their own, and the election's
    reserved connections), and in-process candidates share one loop with the server and with
    the other schedules: this cost alone made the loop run late by up to two seconds in a
    soak, excusing liveness for most of it and leaving some schedules without any term. The
    contexts differ only in what each configuration changes afterwards, which these tests
    never do; each client still has a pool of connections of its own.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    @functools.cache
    def create_default_context(cafile: str | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=cafile)


def share_ssl_contexts() -> None:
    """Let every kubernetes_asyncio ``ApiClient`` of this process share one SSL context per
    CA file (see :class:`_SharedSSLContexts`). Idempotent."""
    rest: Any = kubernetes_asyncio.client.rest
    if not isinstance(rest.ssl, _SharedSSLContexts):
        rest.ssl = _SharedSSLContexts()


class _LoopThread:
    """An event loop of its own in a worker thread; callbacks are posted to it thread-safely."""

    def __init__(self, name: str, rate: float) -> None:
        self._name = name
        self._rate = rate
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_scope: anyio.CancelScope | None = None
        self._pending: list[Callable[[], object]] = []

    async def run(self, main: Callable[[], Awaitable[None]]) -> None:
        """Run ``main`` on the thread's loop; returns when it has.

        Cancelled, it cancels ``main`` on the thread's loop and still waits for it to end: a
        thread is never left running behind its caller.
        """

        async def cancel_main_when_cancelled() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                self.call(self._cancel_main)

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_main_when_cancelled)
            await anyio.to_thread.run_sync(self._thread, main, limiter=anyio.CapacityLimiter(1))
            tg.cancel_scope.cancel()

    def _cancel_main(self) -> None:
        if self._main_scope is not None:
            self._main_scope.cancel()

    def _thread(self, main: Callable[[], Awaitable[None]]) -> None:
        threading.current_thread().name = f"candidate {self._name}"
        factory = skewed_event_loop(self._rate)
        anyio.run(self._enter, main, backend="asyncio", backend_options={"loop_factory": factory})

    async def _enter(self, main: Callable[[], Awaitable[None]]) -> None:
        with anyio.CancelScope() as scope:
            with self._lock:
                self._loop = asyncio.get_running_loop()
                self._main_scope = scope
                pending, self._pending = self._pending, []
            for callback in pending:
                callback()
            try:
                await main()
            finally:
                with self._lock:
                    self._loop = None
                    self._main_scope = None

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


class InjectedHookError(RuntimeError):
    """What a :class:`RaisingMetrics` hook raises."""


class RaisingMetrics:
    """A metrics sink (``leaderelect.metrics.MetricsSink``) whose every method raises
    :class:`InjectedHookError` with probability ``chance``, once :meth:`arm` was called.

    A sink that breaks the rule "must not block or raise", as user code does. It is armed after
    the elector is built: what is tested is every exit of ``leading()``.
    """

    def __init__(self, chance: float, rng: random.Random) -> None:
        self.chance = chance
        self.raised = 0
        self.calls = 0
        self._rng = rng
        self._armed = False

    def arm(self) -> None:
        self._armed = True

    def _maybe_raise(self, hook: str) -> None:
        self.calls += 1
        if self._armed and self._rng.random() < self.chance:
            self.raised += 1
            raise InjectedHookError(f"injected failure of the metrics hook {hook}()")

    def leading_changed(self, lease: str, leading: bool) -> None:
        self._maybe_raise("leading_changed")

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        self._maybe_raise("acquired")

    def renewed(self, lease: str, latency: float) -> None:
        self._maybe_raise("renewed")

    def renew_failed(self, lease: str, error: str) -> None:
        self._maybe_raise("renew_failed")

    def slow_path(self, lease: str) -> None:
        self._maybe_raise("slow_path")

    def lost(self, lease: str, reason: LossReason) -> None:
        self._maybe_raise("lost")


def _injected(exc: BaseException) -> bool:
    """True for an :class:`InjectedHookError`, or a group of nothing else."""
    if isinstance(exc, InjectedHookError):
        return True
    inner = getattr(exc, "exceptions", None)  # an exception group (3.10: the backport's)
    return isinstance(inner, tuple) and bool(inner) and all(_injected(e) for e in inner)


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
        identity: the identity it writes (default: ``name``); candidates sharing one are two
            worker processes of one pod. ``name`` stays its server user and its name in the
            log.
        hook_failures: the chance that each call of its metrics sink raises (a
            :class:`RaisingMetrics`); an :class:`InjectedHookError` that comes out of
            ``leading()`` is counted in ``hook_errors`` and the candidate campaigns again.
        stop_on_hook_error: stop instead, as an application would that lets the error end
            it (its caller is gone).
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
        identity: str | None = None,
        hook_failures: float = 0.0,
        stop_on_hook_error: bool = False,
    ) -> None:
        self.server = server
        self.name = name
        self.identity = identity if identity is not None else name
        self.log = log
        self.lease = lease
        self.namespace = namespace
        self.timings = timings
        self.clock_rate = clock_rate
        self.watch = watch
        self.terms = 0
        self.losses: list[LeadershipLost] = []
        self.loss_times: list[float] = []
        """When each of ``losses`` came out of ``leading()`` (the log's clock)."""
        self.error: BaseException | None = None
        self.killed = False
        self.finished = False
        """True once :meth:`run` has returned."""
        self.ended_at: float | None = None
        """When it was stopped or killed (the log's clock)."""
        self.term_tokens: list[tuple[str, int]] = []
        """``(lease uid, transitions)`` of each term it worked in, in order."""
        self.interrupts: list[float] = []
        """When an :meth:`interrupt` cancelled ``leading()`` (the log's clock)."""
        self.hook_errors: list[tuple[float, bool]] = []
        """Injected hook failures that came out of ``leading()``: when, and whether the body
        of ``leading()`` had run."""
        self.metrics = (
            RaisingMetrics(hook_failures, random.Random(f"hooks/{seed}/{name}"))
            if hook_failures
            else None
        )
        self.api_client: kubernetes_asyncio.client.ApiClient | None = None
        self._stop_on_hook_error = stop_on_hook_error
        self._seed = seed
        self._work = work
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self.leaderships: list[Leadership] = []
        self._thread = _LoopThread(name, loop_rate) if (own_loop or loop_rate != 1.0) else None
        self._stop: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._attempt: anyio.CancelScope | None = None
        self._app: TaskGroup | None = None
        self._crowd: anyio.CancelScope | None = None
        self._stopping = False
        self._cut_off: FaultHandle | None = None
        if name not in server.users:
            server.add_user(name)
        share_ssl_contexts()

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
        try:
            if self._thread is not None:
                await self._thread.run(self._main)
            else:
                await self._main()
        finally:
            self.finished = True

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
        self.api_client = api_client
        try:
            async with anyio.create_task_group() as app:
                self._app = app
                try:
                    await self._elect(api_client)
                finally:
                    self._app = self._crowd = None
                    app.cancel_scope.cancel()
        except Exception as exc:  # reported by the runner, never swallowed
            self.error = exc
            logger.exception("candidate %s failed", self.name)
        finally:
            with anyio.CancelScope(shield=True):
                await api_client.close()
            self._notify()

    async def _elect(self, api_client: kubernetes_asyncio.client.ApiClient) -> None:
        assert self._scope is not None and self._stop is not None
        lock = LeaseLock(api_client, self.lease, self.namespace)
        clock = self._clock
        if clock is None and self.clock_rate != 1.0:
            clock = SkewedClock(self.clock_rate)
        elector = LeaderElector(
            lock,
            identity=self.identity,
            lease_duration=self.timings.lease_duration,
            renew_deadline=self.timings.renew_deadline,
            retry_period=self.timings.retry_period,
            watch=self.watch,
            clock=clock,
            rng=random.Random(self._seed),
            metrics=self.metrics,
        )
        if self.metrics is not None:
            self.metrics.arm()
        with self._scope:
            await self._campaign(elector, self._stop)

    async def _campaign(self, elector: LeaderElector, stop: anyio.Event) -> None:
        """Campaign and work until ``stop``: a term in progress then ends gracefully (and
        releases), a campaign in progress is cancelled. An :meth:`interrupt` cancels either,
        and the candidate campaigns again."""
        in_term = False
        async with anyio.create_task_group() as tg:

            async def stopper() -> None:
                await stop.wait()
                if not in_term:
                    tg.cancel_scope.cancel()

            tg.start_soon(stopper)
            while not stop.is_set():
                entered = False
                with anyio.CancelScope() as attempt:
                    self._attempt = attempt
                    try:
                        async with elector.leading() as leadership:
                            entered = True
                            self.terms += 1
                            self.leaderships.append(leadership)
                            token = leadership.token
                            self.term_tokens.append((token.lease_uid, token.transitions))
                            in_term = True
                            try:
                                with self.log.working(self.name, leadership.token):
                                    await self._work_until(leadership, stop)
                            finally:
                                in_term = False
                    except LeadershipLost as lost:
                        self.losses.append(lost)
                        self.loss_times.append(self.log.now())
                        self._notify()
                    except Exception as exc:
                        if not _injected(exc):
                            raise
                        self.hook_errors.append((self.log.now(), entered))
                        logger.debug("candidate %s: %r came out of leading()", self.name, exc)
                        if self._stop_on_hook_error:
                            self._stopping = True
                            self.ended_at = self.log.now()
                            stop.set()
                    finally:
                        self._attempt = None
                if attempt.cancelled_caught:
                    self.interrupts.append(self.log.now())
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

    def interrupt(self) -> None:
        """Cancel ``leading()`` now, as its caller would (a campaign, or a term: it then ends
        and releases); the candidate campaigns again at once. No-op between attempts."""

        def cancel() -> None:
            if self._attempt is not None:
                self._attempt.cancel()

        self._call(cancel)

    def crowd(self, requests: int = 120) -> None:
        """Let the application hold ``requests`` long requests on this candidate's API client
        (watches of the Leases of ``kube-system``), until :meth:`uncrowd`. Beyond the client's
        connection pool (100), the rest wait in its queue."""
        self._call(lambda: self._start_crowd(requests))

    def uncrowd(self) -> None:
        """End the application's requests started by :meth:`crowd`."""

        def end() -> None:
            if self._crowd is not None:
                self._crowd.cancel()
                self._crowd = None

        self._call(end)

    def _start_crowd(self, requests: int) -> None:
        if self._app is None or self._crowd is not None or self.api_client is None:
            return
        scope = self._crowd = anyio.CancelScope()
        api = kubernetes_asyncio.client.CoordinationV1Api(self.api_client)

        async def hold() -> None:
            with contextlib.suppress(Exception):
                response: Any = await api.list_namespaced_lease(
                    "kube-system", watch=True, timeout_seconds=3600, _preload_content=False
                )
                try:
                    while await response.content.readany():
                        pass
                finally:
                    response.close()

        async def hold_all() -> None:
            with scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(requests):
                        tg.start_soon(hold)

        self._app.start_soon(hold_all)

    def stop(self) -> None:
        """End gracefully: the current term ends (releasing the lease) and no new one starts."""
        if not self._stopping:
            self.ended_at = self.log.now()
        self._stopping = True
        self._call(lambda: self._stop.set() if self._stop is not None else None)

    def kill(self) -> None:
        """End as SIGKILL would: nothing more reaches the server, the work stops at once.

        The candidate is cut off first (every request of its user hangs, its watches are
        cut), then cancelled; its release, if it tries one, never arrives.
        """
        if not self._stopping:
            self.ended_at = self.log.now()
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
