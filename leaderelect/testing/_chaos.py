"""Fault schedules for elections: faults as data, candidates that can stall, skew or die, a runner.

The pieces, each usable on its own:

* :class:`ChaosApiServer`: a :class:`~leaderelect.testing.LeaseApiServer` that also serves
  :class:`~leaderelect.testing.RawResponse`, :class:`~leaderelect.testing.StallWatch` and
  :class:`~leaderelect.testing.ExpireWatch`, silences open watch streams
  (:meth:`~ChaosApiServer.stall_watches`), and ends requests held by a ``Hang`` when that fault
  is lifted (:meth:`~ChaosApiServer.release`), so that a partition can heal.
* :class:`SkewedClock` (a ``Clock`` running ``rate`` times as fast, for
  ``LeaderElector(clock=...)``) and :func:`skewed_event_loop` (an asyncio loop whose *every*
  timer runs at ``rate``, for a candidate in a thread of its own).
* :class:`ChaosCandidate`: one candidate campaigning again after every loss and recording its
  work in a :class:`~leaderelect.testing.LeadershipLog`. It runs on the caller's event loop,
  or in a thread with a loop of its own when it must be stalled or skewed on its own
  (``time.sleep()`` in a loop shared with other candidates stalls them all alike, which is a
  different fault: a pause of the whole system).
* :class:`Schedule`: what happens and when, as plain frozen data (:class:`CandidateSpec`,
  :class:`FaultWindow`, :class:`CutWatches`, :class:`StallWatches`, :class:`LoopStall`,
  :class:`Kill`, :class:`Stop`); :func:`random_schedule` draws one from a seed, the same one
  for the same seed.
* :func:`run_schedule` plays a schedule against a fresh server and checks the election with
  :func:`~leaderelect.testing.check_election`; :func:`run_schedules` plays many at once and
  sums them up in a :class:`SoakSummary`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import random
import selectors
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, final

import anyio
import kubernetes_asyncio.client
from aiohttp import web

from .._clock import Clock
from .._config import Timings
from .._elector import LeaderElector, Leadership
from .._errors import LeadershipLost
from .._lock import LeaseLock
from ._checker import (
    LIVENESS_EPSILON,
    ElectionReport,
    ElectionViolation,
    LeadershipLog,
    check_election,
    liveness_bound,
)
from ._faults import (
    DropConnection,
    ErrorResponse,
    ExpireWatch,
    Fault,
    FaultHandle,
    Hang,
    Latency,
    RawResponse,
    StallWatch,
    deny_writes,
)
from ._gojson import dumps
from ._requests import RequestInfo
from ._server import LeaseApiServer
from ._status import status_body
from ._store import Watcher

__all__ = [
    "CHAOS_TIMINGS",
    "LEADER",
    "CandidateSpec",
    "ChaosApiServer",
    "ChaosCandidate",
    "CutWatches",
    "FaultWindow",
    "Kill",
    "LagMonitor",
    "LoopStall",
    "Schedule",
    "ScheduleResult",
    "SkewedClock",
    "SoakSummary",
    "StallWatches",
    "Stop",
    "random_schedule",
    "run_schedule",
    "run_schedules",
    "play_faults",
    "skewed_event_loop",
    "suspend_loop",
]

logger = logging.getLogger(__name__)

LEADER = "@leader"
"""A target that means "whoever holds the lease when the event happens"."""

CHAOS_TIMINGS = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
"""Short timings for schedules: a 0.4 s margin, a takeover in about 1.1 s."""

# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------


class ChaosApiServer(LeaseApiServer):
    """A :class:`~leaderelect.testing.LeaseApiServer` serving every fault kind.

    On top of the base server it serves :class:`~leaderelect.testing.RawResponse`,
    :class:`~leaderelect.testing.StallWatch` and :class:`~leaderelect.testing.ExpireWatch`;
    it holds a ``Hang`` only until that fault is :meth:`released <release>` (then it drops
    the connection, as a healed network resets a stale one); and it can silence watch
    streams that are already open (:meth:`stall_watches`). Takes the same arguments.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Keyed by id(); the fault is kept so that its id cannot be reused. A released fault's
        # event stays set: a request it caught but had not begun holding is let go at once.
        self._held: dict[int, tuple[Fault, asyncio.Event]] = {}
        self._stalled: list[Watcher] = []

    async def stop(self) -> None:
        """Stop; requests held by faults end first."""
        self.release()
        await super().stop()

    def release(self, fault: Fault | None = None) -> None:
        """End the requests held by ``fault`` (a ``Hang`` or ``StallWatch``), or by every fault.

        Hung requests lose their connection; stalled watch streams end, and their clients
        resume from the last version they saw. Without ``fault``, streams silenced by
        :meth:`stall_watches` end too.
        """
        if fault is None:
            for _, event in self._held.values():
                event.set()
            self.resume_watches()
            return
        self._held.setdefault(id(fault), (fault, asyncio.Event()))[1].set()

    def stall_watches(
        self,
        *,
        user: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> int:
        """Silence the matching open watch streams: they stay open and receive nothing.

        Returns:
            how many streams were silenced. :meth:`resume_watches` ends them.
        """
        probe = Fault(user=user, namespace=namespace, name=name)
        silenced = 0
        for watcher in self._store.watchers():
            if not watcher.closed and probe.matches(watcher.info):
                self._store.remove_watcher(watcher)
                self._stalled.append(watcher)
                silenced += 1
        return silenced

    def resume_watches(self, *, user: str | None = None) -> int:
        """End the streams :meth:`stall_watches` silenced (of ``user``, or all); their clients
        resume from the last version they saw and get what they missed."""
        ended = 0
        for watcher in list(self._stalled):
            if user is None or watcher.info.user == user:
                self._stalled.remove(watcher)
                watcher.close()
                ended += 1
        return ended

    async def _inflict(
        self, fault: Fault, request: web.Request, info: RequestInfo
    ) -> web.StreamResponse:
        try:
            if isinstance(fault, RawResponse):
                return await self._raw(fault, request, info)
            if isinstance(fault, ExpireWatch):
                return await self._expire(request, info)
            if isinstance(fault, StallWatch):
                return await self._stall(fault, request, info)
            if isinstance(fault, Hang):
                await self._hold(fault)
        except ConnectionError:
            pass  # the client went away meanwhile (a cut or abandoned stream): nobody to answer
        else:
            if not isinstance(fault, Hang):
                return await super()._inflict(fault, request, info)
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    async def _hold(self, fault: Fault, seconds: float | None = None) -> None:
        _, event = self._held.setdefault(id(fault), (fault, asyncio.Event()))
        if self._closing.is_set():
            return
        with anyio.move_on_after(math.inf if seconds is None else seconds):
            await event.wait()

    async def _raw(
        self, fault: RawResponse, request: web.Request, info: RequestInfo
    ) -> web.StreamResponse:
        body = fault.body
        response = web.StreamResponse(status=fault.status)
        if fault.content_type:
            response.headers["Content-Type"] = fault.content_type
        for key, value in fault.headers:
            response.headers.add(key, value)
        response.content_length = len(body)
        await response.prepare(request)
        split = len(body) // 2 if (fault.pause or fault.truncate) else len(body)
        await response.write(body[:split])
        if fault.truncate:
            if request.transport is not None:
                request.transport.abort()
            return response
        if fault.pause:
            await anyio.sleep(fault.pause)
        await response.write(body[split:])
        await response.write_eof()
        self.requests.record_answer(info, fault.status)
        return response

    async def _stream_start(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.headers["Cache-Control"] = "no-cache, private"
        response.enable_chunked_encoding()
        await response.prepare(request)
        return response

    async def _expire(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        wanted = info.query.get("resourceVersion", "")
        status = status_body(
            410,
            f"too old resource version: {wanted} ({self.resource_version})",
            "Expired",
        )
        response = await self._stream_start(request)
        await response.write(dumps({"type": "ERROR", "object": status}).encode())
        await response.write_eof()
        self.requests.record_answer(info, 200)
        return response

    async def _stall(
        self, fault: StallWatch, request: web.Request, info: RequestInfo
    ) -> web.StreamResponse:
        response = await self._stream_start(request)
        self.requests.record_answer(info, 200)
        await self._hold(fault, fault.seconds)
        await response.write_eof()
        return response


# ------------------------------------------------------------------------------------------------
# Clocks
# ------------------------------------------------------------------------------------------------


@final
class SkewedClock:
    """A ``Clock`` whose monotonic time runs ``rate`` times as fast as the real one.

    ``utcnow()`` drifts the same way from the real wall clock, plus ``offset``. Inject it with
    ``LeaderElector(clock=...)``. The elector turns its deadlines into the event loop's time
    when it sets them, so with this clock alone a fast or slow candidate is skewed in what it
    *measures* (expiry, time left, back-offs); :func:`skewed_event_loop` skews a whole loop.

    Args:
        rate: how fast the clock runs (1.05: 5 % fast).
        offset: a constant wall-clock offset (it must never matter).
        base: the real monotonic clock.
    """

    def __init__(
        self,
        rate: float,
        *,
        offset: timedelta = timedelta(0),
        base: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        self.rate = rate
        self.offset = offset
        self._base = base
        self._origin = base()

    def monotonic(self) -> float:
        return self._origin + (self._base() - self._origin) * self.rate

    def utcnow(self) -> datetime:
        drift = (self._base() - self._origin) * (self.rate - 1)
        return datetime.now(timezone.utc) + self.offset + timedelta(seconds=drift)

    def __repr__(self) -> str:
        return f"SkewedClock(rate={self.rate!r})"


class _ScaledSelector(selectors.DefaultSelector):
    """Waits ``1/rate`` of each timeout asked for, so that loop timers fire on skewed time."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self._rate = rate

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            timeout = timeout / self._rate
        events: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        return events


class _SkewedLoop(asyncio.SelectorEventLoop):
    def __init__(self, rate: float) -> None:
        super().__init__(selector=_ScaledSelector(rate))
        self._rate = rate
        self._origin = time.monotonic()
        self._lost = 0.0

    def time(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self._rate - self._lost

    def suspend(self, seconds: float) -> None:
        """Block for ``seconds`` during which this loop's clock does not advance."""
        time.sleep(seconds)
        self._lost += seconds * self._rate


def suspend_loop(seconds: float) -> None:
    """Block the running event loop for ``seconds`` with its clock stopped meanwhile.

    As a host resumed from suspend, or a VM whose monotonic clock was frozen: on waking, the
    loop believes no time has passed. Only on a loop made by :func:`skewed_event_loop`.

    Raises:
        TypeError: the running loop's clock cannot be stopped.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, _SkewedLoop):
        raise TypeError("suspend_loop() needs a loop made by skewed_event_loop()")
    loop.suspend(seconds)


def skewed_event_loop(rate: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory: an asyncio loop whose clock, sleeps and deadlines run at ``rate``.

    A candidate on such a loop (in a thread of its own) behaves like a process whose
    monotonic clock runs ``rate`` times as fast as everyone else's. Use it with
    ``anyio.run(..., backend_options={"loop_factory": skewed_event_loop(1.05)})``.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number, got {rate!r}")
    return lambda: _SkewedLoop(rate)


# ------------------------------------------------------------------------------------------------
# Candidates
# ------------------------------------------------------------------------------------------------


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
                clock=self._clock
                or (SkewedClock(self.clock_rate) if self.clock_rate != 1.0 else None),
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


# ------------------------------------------------------------------------------------------------
# Schedules as data
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CandidateSpec:
    """A candidate of a schedule.

    Attributes:
        name: identity and server user.
        start: seconds after the schedule's start at which it begins campaigning.
        clock_rate: its :class:`SkewedClock` rate (1.0: none).
        loop_rate: its own loop's rate (1.0: the shared loop, unless ``own_loop``).
        own_loop: run in a thread with a loop of its own.
        watch: watch the Lease (False: poll).
    """

    name: str
    start: float = 0.0
    clock_rate: float = 1.0
    loop_rate: float = 1.0
    own_loop: bool = False
    watch: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class FaultWindow:
    """A server fault applied from ``start`` to ``end`` (seconds after the schedule's start).

    With ``cut=True`` the matching user's open watches are cut when the window opens (a
    partition also breaks established streams; an ``ExpireWatch`` needs a resume to act on).
    Requests still held by the fault when the window closes are released.
    """

    start: float
    end: float
    fault: Fault
    cut: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CutWatches:
    """At ``at``, end the open watch streams of ``user`` (None: everyone's)."""

    at: float
    user: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StallWatches:
    """From ``start`` to ``end``, the watch streams of ``user`` deliver nothing, silently.

    Open streams are silenced and new ones stall; at ``end`` they all end and their clients
    resume from the last version they saw.
    """

    start: float
    end: float
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class LoopStall:
    """At ``at``, block ``candidate``'s event loop for ``seconds`` (it needs a loop of its own)."""

    at: float
    candidate: str
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Kill:
    """At ``at``, kill ``candidate`` (see :meth:`ChaosCandidate.kill`)."""

    at: float
    candidate: str


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    """At ``at``, stop ``candidate`` gracefully (its term ends and it releases the lease)."""

    at: float
    candidate: str


Event = FaultWindow | CutWatches | StallWatches | LoopStall | Kill | Stop


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """One election under faults, as data: who campaigns, what goes wrong and when.

    Times are seconds after the schedule's start. ``duration`` is when the election is
    judged; everything still running is then stopped.
    """

    seed: int
    candidates: tuple[CandidateSpec, ...]
    events: tuple[Event, ...]
    duration: float
    timings: Timings = CHAOS_TIMINGS

    def excused(self) -> list[tuple[float, float]]:
        """The windows (relative times) in which a lapse of leadership is excused."""
        windows: list[tuple[float, float]] = []
        for event in self.events:
            if isinstance(event, (FaultWindow, StallWatches)):
                windows.append((event.start, event.end))
            elif isinstance(event, LoopStall):
                windows.append((event.at, event.at + event.seconds))
        return windows

    def fastest_clock(self) -> float:
        """The fastest clock rate of any candidate (for the history check's tolerance)."""
        return max([1.0, *(max(c.clock_rate, c.loop_rate) for c in self.candidates)])

    def kinds(self) -> collections.Counter[str]:
        """How many of each kind of fault the schedule injects."""
        counts: collections.Counter[str] = collections.Counter()
        for event in self.events:
            if isinstance(event, FaultWindow):
                kind = type(event.fault).__name__
                if isinstance(event.fault, ErrorResponse):
                    kind = f"ErrorResponse {event.fault.status}"
                elif isinstance(event.fault, DropConnection):
                    kind = f"DropConnection {event.fault.when}"
                elif isinstance(event.fault, Hang) and event.cut:
                    kind = "partition"
                counts[kind] += 1
            else:
                counts[type(event).__name__] += 1
        for spec in self.candidates:
            if spec.clock_rate != 1.0:
                counts["SkewedClock"] += 1
            if spec.loop_rate != 1.0:
                counts["skewed loop"] += 1
        return counts

    def describe(self) -> str:
        """The schedule, one line per candidate and event, for failure messages."""
        lines = [f"schedule seed={self.seed} duration={self.duration:.2f}s {self.timings}"]
        lines += [f"  {spec}" for spec in self.candidates]
        lines += [f"  {event}" for event in sorted(self.events, key=_event_time)]
        return "\n".join(lines)


def _event_time(event: Event) -> float:
    return event.start if isinstance(event, (FaultWindow, StallWatches)) else event.at


def random_schedule(
    seed: int,
    *,
    timings: Timings = CHAOS_TIMINGS,
    candidates: tuple[int, int] = (3, 4),
    faults: tuple[int, int] = (2, 5),
    fault_span: float = 1.4,
    own_loop_chance: float = 0.3,
    max_clock_skew: float = 0.06,
    max_loop_skew: float = 0.03,
) -> Schedule:
    """Draw a schedule from ``seed`` (the same seed always gives the same schedule).

    Candidate ``c0`` starts first. Half of the targeted events target :data:`LEADER`, whoever
    holds the lease when the event happens. Everything drawn stays within what the design
    promises: loop stalls and clock-rate skew together keep
    ``renew_deadline / slowest + stall`` at least 0.1 s below ``lease_duration / fastest``,
    and stalls never overlap (they would add up);
    at least two candidates are never stopped or killed; after the last fault the election
    runs for the liveness bound and a little more.

    Args:
        seed: the seed.
        timings: the candidates' timings.
        candidates: how many candidates, at least and at most.
        faults: how many events, at least and at most.
        fault_span: events happen between 0.2 s and this many seconds.
        own_loop_chance: the chance that one candidate runs on a loop of its own (and may be
            stalled, or skewed as a whole).
        max_clock_skew: the largest ``|rate - 1|`` of an injected :class:`SkewedClock`.
        max_loop_skew: the largest ``|rate - 1|`` of a candidate's own loop.
    """
    rng = random.Random(seed)
    count = rng.randint(*candidates)
    names = [f"c{i}" for i in range(count)]
    margin_budget = timings.lease_duration - timings.renew_deadline
    specs: list[CandidateSpec] = []
    threaded = names[0] if rng.random() < own_loop_chance / 2 else None
    if threaded is None and rng.random() < own_loop_chance:
        threaded = rng.choice(names)
    for index, name in enumerate(names):
        clock_rate = 1.0
        if rng.random() < 0.3:
            clock_rate = round(1 + rng.uniform(-max_clock_skew, max_clock_skew), 3)
        loop_rate = 1.0
        if name == threaded and rng.random() < 0.5:
            loop_rate = round(1 + rng.uniform(-max_loop_skew, max_loop_skew), 3)
        specs.append(
            CandidateSpec(
                name=name,
                start=0.0 if index == 0 else round(rng.uniform(0.05, 0.3), 3),
                clock_rate=clock_rate,
                loop_rate=loop_rate,
                own_loop=name == threaded,
                watch=rng.random() > 0.1,
            )
        )
    fastest = max(max(s.clock_rate, s.loop_rate) for s in specs)
    slowest = min(min(s.clock_rate, s.loop_rate) for s in specs)
    stall_budget = max(
        0.0, timings.lease_duration / fastest - timings.renew_deadline / slowest - 0.1
    )
    stall_budget = min(stall_budget, margin_budget - 0.1)

    def target() -> str:
        return LEADER if rng.random() < 0.5 else rng.choice(names)

    def window() -> tuple[float, float]:
        start = rng.uniform(0.2, fault_span - 0.1)
        end = min(fault_span, start + rng.uniform(0.1, 0.8))
        return round(start, 3), round(end, 3)

    events: list[Event] = []
    stalls: list[tuple[float, float]] = []
    retired = 0
    for _ in range(rng.randint(*faults)):
        kind = rng.choices(
            [
                "latency", "error", "429", "hang", "commit-drop", "refuse", "partition",
                "stall-watch", "expire-watch", "deny", "cut", "kill", "stop", "loop-stall",
            ],
            weights=[8, 8, 4, 5, 6, 4, 6, 5, 4, 5, 4, 4, 3, 6],
        )[0]  # fmt: skip
        user = target()
        start, end = window()
        verb = rng.choice([None, "update", "update", "get", "watch", ("create", "update")])
        fault: Fault
        if kind == "latency":
            seconds = round(rng.uniform(0.02, 0.4), 3)
            events.append(FaultWindow(start, end, Latency(user=user, verb=verb, seconds=seconds)))
        elif kind == "error":
            status = rng.choice([500, 503, 504])
            events.append(
                FaultWindow(start, end, ErrorResponse(user=user, verb=verb, status=status))
            )
        elif kind == "429":
            fault = ErrorResponse(user=rng.choice([user, None]), status=429, retry_after=1)
            events.append(FaultWindow(start, end, fault))
        elif kind == "hang":
            events.append(FaultWindow(start, end, Hang(user=user, verb=verb)))
        elif kind == "commit-drop":
            fault = DropConnection(user=user, verb="update", times=rng.randint(1, 2))
            events.append(FaultWindow(start, end, fault))
        elif kind == "refuse":
            fault = DropConnection(user=user, verb=verb, when="before")
            events.append(FaultWindow(start, end, fault))
        elif kind == "partition":
            events.append(FaultWindow(start, end, Hang(user=user), cut=True))
        elif kind == "stall-watch":
            events.append(StallWatches(start, end, user))
        elif kind == "expire-watch":
            events.append(FaultWindow(start, end, ExpireWatch(user=user), cut=True))
        elif kind == "deny":
            fault = deny_writes(user, status=rng.choice([403, 422]))
            events.append(FaultWindow(start, end, fault))
        elif kind == "cut":
            events.append(CutWatches(start, rng.choice([user, None])))
        elif kind in ("kill", "stop"):
            if retired >= count - 2:
                continue
            retired += 1
            events.append(Kill(start, user) if kind == "kill" else Stop(start, user))
        elif kind == "loop-stall":
            if threaded is None or stall_budget < 0.02:
                continue
            seconds = math.floor(rng.uniform(0.02, stall_budget) * 1000) / 1000
            # Stalls queued on one loop run back to back: overlapping ones would add up to a
            # longer stall than the budget. Keep them apart, with time for the loop to run.
            if any(start < end + 0.05 and low < start + seconds + 0.05 for low, end in stalls):
                continue
            stalls.append((start, start + seconds))
            events.append(LoopStall(start, threaded, seconds))
    if not any(_ends_a_term(e) for e in events):
        # Every schedule ends at least one term: a takeover is what the checks are about.
        start = round(rng.uniform(0.2, fault_span - 0.1), 3)
        end = round(start + timings.renew_deadline + rng.uniform(0.1, 0.4), 3)
        choice = rng.choice(["kill", "stop", "partition", "deny"])
        if choice in ("kill", "stop") and retired < count - 2:
            events.append(Kill(start, LEADER) if choice == "kill" else Stop(start, LEADER))
        elif choice == "deny":
            events.append(FaultWindow(start, end, deny_writes(LEADER)))
        else:
            events.append(FaultWindow(start, end, Hang(user=LEADER), cut=True))
    last = max([0.3, *(_event_end(e) for e in events)])
    duration = round(last + liveness_bound(timings) + 0.3, 3)
    return Schedule(seed, tuple(specs), tuple(events), duration, timings)


def _ends_a_term(event: Event) -> bool:
    """True for an event sure to end the leader's term, whoever leads when it happens."""
    if isinstance(event, (Kill, Stop)):
        return event.candidate == LEADER
    if isinstance(event, FaultWindow) and event.fault.user == LEADER:
        fault = event.fault
        long_enough = event.end - event.start > CHAOS_TIMINGS.renew_deadline
        writes_fail = isinstance(fault, Hang) or (
            isinstance(fault, ErrorResponse) and fault.verb in (None, "update")
        )
        return long_enough and writes_fail and fault.verb != "get"
    return False


def _event_end(event: Event) -> float:
    if isinstance(event, (FaultWindow, StallWatches)):
        return event.end
    if isinstance(event, LoopStall):
        return event.at + event.seconds
    return event.at


# ------------------------------------------------------------------------------------------------
# Running schedules
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleResult:
    """A schedule that ran and passed every check.

    Attributes:
        schedule: what ran.
        report: the checks' figures.
        fault_hits: requests each server fault kind acted on.
        wall_time: seconds it took.
    """

    schedule: Schedule
    report: ElectionReport
    fault_hits: collections.Counter[str]
    wall_time: float


class LagMonitor:
    """Measures how late the event loop runs: each lag is a pause of everything on it.

    A stalled shared loop delays every candidate and the server alike; the runner excuses
    liveness (never safety) while it lasts. Run :meth:`run` in a task group.

    Args:
        interval: how often to look, in seconds.
        threshold: lateness below this is not recorded.
    """

    def __init__(self, interval: float = 0.02, threshold: float = 0.03) -> None:
        self.interval = interval
        self.threshold = threshold
        self.episodes: list[tuple[float, float]] = []
        self.worst = 0.0

    async def run(self) -> None:
        """Watch the loop until cancelled."""
        while True:
            expected = time.monotonic() + self.interval
            await anyio.sleep(self.interval)
            late = time.monotonic() - expected
            self.worst = max(self.worst, late)
            if late > self.threshold:
                self.episodes.append((expected, expected + late))

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        """The lag episodes overlapping ``[start, end]``."""
        return [(low, high) for low, high in self.episodes if high > start and low < end]


async def _sleep_until(log: LeadershipLog, moment: float) -> None:
    await anyio.sleep(max(0.0, moment - log.now()))


async def run_schedule(
    schedule: Schedule,
    *,
    epsilon: float = LIVENESS_EPSILON,
    lag: LagMonitor | None = None,
    on_log: Callable[[LeadershipLog, ChaosApiServer], None] | None = None,
) -> ScheduleResult:
    """Play ``schedule`` against a fresh :class:`ChaosApiServer`, then check the election.

    Args:
        schedule: what to play.
        epsilon: the liveness slack (see :func:`~leaderelect.testing.liveness_bound`).
        lag: a running :class:`LagMonitor` of this loop (default: one for this run); its
            episodes excuse liveness.
        on_log: called with the log and the server once they exist (to watch a run).

    Raises:
        ElectionViolation: a check failed, or a candidate raised; the message starts with the
            seed and ends with the schedule.
    """
    started = time.monotonic()
    lease, namespace = "chaos", "default"
    log = LeadershipLog()
    hits: collections.Counter[str] = collections.Counter()
    server = ChaosApiServer()
    async with server:
        if on_log is not None:
            on_log(log, server)
        candidates = {
            spec.name: ChaosCandidate(
                server,
                spec.name,
                log,
                lease=lease,
                namespace=namespace,
                timings=schedule.timings,
                clock_rate=spec.clock_rate,
                own_loop=spec.own_loop,
                loop_rate=spec.loop_rate,
                watch=spec.watch,
                seed=schedule.seed * 100 + index,
            )
            for index, spec in enumerate(schedule.candidates)
        }
        windows: list[tuple[FaultWindow, FaultHandle]] = []
        t0 = log.now()
        async with anyio.create_task_group() as tg:
            own_monitor = lag is None
            monitor = lag if lag is not None else LagMonitor()
            if own_monitor:
                tg.start_soon(monitor.run)
            timeline: list[tuple[float, int, Callable[[], None]]] = []

            def at(moment: float, action: Callable[[], None]) -> None:
                timeline.append((moment, len(timeline), action))

            for spec in schedule.candidates:
                at(spec.start, _starter(tg, candidates[spec.name]))

            def leader() -> str | None:
                stored = server.lease(namespace, lease)
                holder = ((stored or {}).get("spec") or {}).get("holderIdentity")
                return holder if isinstance(holder, str) and holder else None

            for event in schedule.events:
                _plan(event, at, server, candidates, windows, leader)
            for moment, _, action in sorted(timeline):
                await _sleep_until(log, t0 + moment)
                action()
            await _sleep_until(log, t0 + schedule.duration)
            until = log.now()
            for window, handle in windows:
                hits[_kind(window)] += handle.hits
            server.faults.clear()
            server.release()
            for candidate in candidates.values():
                candidate.stop()
            if own_monitor:
                tg.cancel_scope.cancel()
        writes = server.writes
    context = f"seed {schedule.seed}"
    errors = [f"{c.name} raised {c.error!r}" for c in candidates.values() if c.error]
    try:
        report = check_election(
            log.intervals,
            writes,
            lease=f"{namespace}/{lease}",
            timings=schedule.timings,
            since=t0 + min(spec.start for spec in schedule.candidates),
            until=until,
            excused=[
                *((t0 + low, t0 + high) for low, high in schedule.excused()),
                *monitor.between(t0, until),
            ],
            epsilon=epsilon,
            rate_tolerance=schedule.fastest_clock(),
            context=context,
        )
    except ElectionViolation as exc:
        findings = [*exc.findings, *errors]
        raise ElectionViolation(
            [*findings, "\n" + _timeline(schedule, log, writes, t0)], context
        ) from None
    if errors:
        raise ElectionViolation([*errors, "\n" + _timeline(schedule, log, writes, t0)], context)
    return ScheduleResult(schedule, report, hits, time.monotonic() - started)


ServerEvent = FaultWindow | CutWatches | StallWatches


async def play_faults(
    server: ChaosApiServer,
    events: Iterable[ServerEvent],
    *,
    lease: str = "default/chaos",
) -> list[tuple[FaultWindow, FaultHandle]]:
    """Play timed server faults against ``server``; returns when the last has ended.

    Times are seconds from the call. Run it next to the code under test, in the same task
    group. A :data:`LEADER` target is resolved to the holder of ``lease`` when the event
    happens.

    Returns:
        every fault applied (with :data:`LEADER` resolved) and its handle, for hit counts.
    """
    namespace, _, name = lease.partition("/")
    applied: list[tuple[FaultWindow, FaultHandle]] = []
    timeline: list[tuple[float, int, Callable[[], None]]] = []

    def at(moment: float, action: Callable[[], None]) -> None:
        timeline.append((moment, len(timeline), action))

    def leader() -> str | None:
        stored = server.lease(namespace, name)
        holder = ((stored or {}).get("spec") or {}).get("holderIdentity")
        return holder if isinstance(holder, str) and holder else None

    for event in events:
        _plan(event, at, server, {}, applied, leader)
    started = time.monotonic()
    for moment, _, action in sorted(timeline):
        await anyio.sleep(max(0.0, started + moment - time.monotonic()))
        action()
    return applied


def _kind(window: FaultWindow) -> str:
    fault = window.fault
    if isinstance(fault, ErrorResponse):
        return f"ErrorResponse {fault.status}"
    if isinstance(fault, DropConnection):
        return f"DropConnection {fault.when}"
    if isinstance(fault, Hang) and window.cut:
        return "partition"
    return type(fault).__name__


def _starter(tg: Any, candidate: ChaosCandidate) -> Callable[[], None]:
    return lambda: tg.start_soon(candidate.run, name=f"candidate {candidate.name}")


def _plan(
    event: Event,
    at: Callable[[float, Callable[[], None]], None],
    server: ChaosApiServer,
    candidates: dict[str, ChaosCandidate],
    windows: list[tuple[FaultWindow, FaultHandle]],
    leader: Callable[[], str | None],
) -> None:
    """Put ``event`` on the timeline; :data:`LEADER` targets are resolved when it happens."""

    def resolve(name: str | None) -> str | None:
        if name != LEADER:
            return name
        holder = leader()
        if not candidates:
            return holder
        alive = holder in candidates and not candidates[holder].killed
        return holder if alive else None

    if isinstance(event, FaultWindow):
        window = event
        opened: list[Fault] = []

        def open_window() -> None:
            fault = window.fault
            if fault.user == LEADER:
                user = resolve(LEADER)
                if user is None:
                    return
                fault = dataclasses.replace(fault, user=user)
            opened.append(fault)
            windows.append((dataclasses.replace(window, fault=fault), server.faults.add(fault)))
            if window.cut:
                assert fault.user is None or isinstance(fault.user, str)
                server.faults.cut_watches(user=fault.user)

        def close_window() -> None:
            for fault in opened:
                for applied, handle in windows:
                    if applied.fault is fault:
                        handle.remove()
                server.release(fault)

        at(window.start, open_window)
        at(window.end, close_window)
    elif isinstance(event, StallWatches):
        stall = event
        stalled: list[tuple[str, Fault]] = []

        def open_stall() -> None:
            user = resolve(stall.user)
            if user is None:
                return
            fault = StallWatch(user=user)
            stalled.append((user, fault))
            applied = FaultWindow(stall.start, stall.end, fault)
            windows.append((applied, server.faults.add(fault)))
            server.stall_watches(user=user)

        def close_stall() -> None:
            for user, fault in stalled:
                for applied, handle in windows:
                    if applied.fault is fault:
                        handle.remove()
                server.release(fault)
                server.resume_watches(user=user)

        at(stall.start, open_stall)
        at(stall.end, close_stall)
    elif isinstance(event, CutWatches):
        cut = event

        def cut_now() -> None:
            user = resolve(cut.user)
            if user is not None or cut.user is None:
                server.faults.cut_watches(user=user)

        at(cut.at, cut_now)
    elif isinstance(event, LoopStall):
        loop_stall = event

        def stall_now() -> None:
            name = resolve(loop_stall.candidate)
            if name is not None and candidates[name].own_loop:
                candidates[name].stall(loop_stall.seconds)

        at(loop_stall.at, stall_now)
    else:
        ending = event

        def end_now() -> None:
            name = resolve(ending.candidate)
            if name is None or candidates[name].stopping:
                return
            if isinstance(ending, Kill):
                candidates[name].kill()
            else:
                candidates[name].stop()

        at(ending.at, end_now)


def _cut(server: ChaosApiServer, user: str | None) -> None:
    server.faults.cut_watches(user=user)


def _timeline(schedule: Schedule, log: LeadershipLog, writes: Sequence[Any], t0: float) -> str:
    """The schedule, then what happened (relative times), for a failure message."""
    lines = [schedule.describe(), "work intervals (relative):"]
    for interval in log.intervals:
        end = "…" if interval.end is None else f"{interval.end - t0:.3f}"
        lines.append(f"  {interval.candidate} [{interval.start - t0:.3f}, {end}) {interval.token}")
    lines.append("holder changes (relative):")
    for write in writes:
        if (write.holder_before or "") != (write.holder_after or ""):
            lines.append(
                f"  {write.time - t0:.3f} {write.user} {write.verb} rv "
                f"{write.resource_version_before}->{write.resource_version_after} "
                f"{write.holder_before!r}->{write.holder_after!r}"
            )
    return "\n".join(lines)


@dataclasses.dataclass
class SoakSummary:
    """Totals over many schedules.

    Attributes:
        schedules: schedules run.
        failures: the failed schedules' seeds and messages.
        faults: faults injected, by kind.
        fault_hits: requests the server faults acted on, by kind.
        leaderships: work intervals over all schedules.
        handovers: holder changes over all schedules.
        worst_takeover: the slowest takeover (longest unexcused lapse) in any schedule.
        narrowest_gap: the smallest gap between two leaders' work in any schedule.
        worst_loop_lag: the longest the shared event loop ran late.
        wall_time: seconds the whole run took.
    """

    schedules: int = 0
    failures: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    fault_hits: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    leaderships: int = 0
    handovers: int = 0
    worst_takeover: float = 0.0
    narrowest_gap: float = math.inf
    worst_loop_lag: float = 0.0
    wall_time: float = 0.0

    def merge(self, other: SoakSummary) -> None:
        """Add another summary's totals (from another process, say)."""
        self.schedules += other.schedules
        self.failures += other.failures
        self.faults.update(other.faults)
        self.fault_hits.update(other.fault_hits)
        self.leaderships += other.leaderships
        self.handovers += other.handovers
        self.worst_takeover = max(self.worst_takeover, other.worst_takeover)
        self.narrowest_gap = min(self.narrowest_gap, other.narrowest_gap)
        self.worst_loop_lag = max(self.worst_loop_lag, other.worst_loop_lag)

    def add(self, result: ScheduleResult) -> None:
        """Count one passed schedule."""
        self.schedules += 1
        self.faults.update(result.schedule.kinds())
        self.fault_hits.update(result.fault_hits)
        self.leaderships += result.report.leaderships
        self.handovers += result.report.handovers
        self.worst_takeover = max(self.worst_takeover, result.report.slowest_takeover)
        if not math.isnan(result.report.narrowest_gap):
            self.narrowest_gap = min(self.narrowest_gap, result.report.narrowest_gap)

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        hits = ", ".join(f"{kind} {n}" for kind, n in sorted(self.fault_hits.items()))
        return (
            f"schedules {self.schedules}, failed {len(self.failures)}, "
            f"overlaps {sum('safety:' in m for _, m in self.failures)}, "
            f"leaderships {self.leaderships}, handovers {self.handovers}, "
            f"worst takeover {self.worst_takeover:.3f}s, "
            f"narrowest handover gap {self.narrowest_gap:.3f}s, "
            f"worst event-loop lag {self.worst_loop_lag:.3f}s, "
            f"wall time {self.wall_time:.1f}s\n"
            f"faults injected: {kinds}\nrequests hit by server faults: {hits}"
        )


async def run_schedules(
    schedules: Iterable[Schedule],
    *,
    concurrency: int = 16,
    epsilon: float = LIVENESS_EPSILON,
    on_result: Callable[[ScheduleResult | ElectionViolation, Schedule], None] | None = None,
) -> SoakSummary:
    """Play many schedules, ``concurrency`` at a time, each on a server of its own.

    Failures are collected, not raised: see ``SoakSummary.failures``.
    """
    summary = SoakSummary()
    started = time.monotonic()
    pending = iter(schedules)
    lock = anyio.Lock()

    async def worker(index: int) -> None:
        # Staggered: candidates starting together would load the CPU all at once.
        await anyio.sleep(index * 0.1)
        while True:
            async with lock:
                schedule = next(pending, None)
            if schedule is None:
                return
            try:
                result = await run_schedule(schedule, epsilon=epsilon, lag=monitor)
            except ElectionViolation as exc:
                summary.schedules += 1
                summary.failures.append((schedule.seed, str(exc)))
                if on_result is not None:
                    on_result(exc, schedule)
                continue
            summary.add(result)
            if on_result is not None:
                on_result(result, schedule)

    monitor = LagMonitor()
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        async with anyio.create_task_group() as workers:
            for index in range(concurrency):
                workers.start_soon(worker, index)
        tg.cancel_scope.cancel()
    summary.wall_time = time.monotonic() - started
    summary.worst_loop_lag = max(summary.worst_loop_lag, monitor.worst)
    return summary
