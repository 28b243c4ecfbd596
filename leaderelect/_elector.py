"""The elector: campaign for a Lease, hold it, and scope the leader's work to the held lease.

Safety rests on two things. The API server's compare-and-swap on ``resourceVersion`` lets at
most one candidate win each change of holder. And timing keeps terms apart: a follower takes
over only ``leaseDurationSeconds`` after it last saw the Lease change, by its own monotonic
clock, while a leader's work runs inside a cancel scope whose deadline is ``renew_deadline``
after the *send* time of its last successful renewal. Every request is bounded by the time
left before that deadline, so no hung call keeps a leader working past it. The difference,
``lease_duration - renew_deadline``, is the margin that absorbs clock-rate drift and pauses.

A definite loss (a read, a watch event or a 409 showing another holder) cancels the work at
once instead of waiting for the deadline. On any exit the work is cancelled and awaited first,
and only then is the lease released, with a conditional write that can never clobber a holder
that took over meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import final

import anyio

from ._backoff import jittered
from ._clock import Clock, LoopClock
from ._config import Timings
from ._errors import (
    ConfigError,
    LeadershipLost,
    LeaseConflict,
    LeaseError,
    LeaseNotFound,
    LossReason,
)
from ._lock import LeaseClient, LeaseLock, LeaseSnapshot
from ._observer import LeaseView, follow
from ._record import LeaseRecord, lease_duration_seconds
from ._tasks import BackgroundTasks
from .metrics import MetricsSink, NoopMetrics

__all__ = ["FencingToken", "LeaderElector", "Leadership", "default_identity"]

logger = logging.getLogger(__name__)


def default_identity() -> str:
    """``$POD_NAME`` when set (the downward API), else ``<hostname>_<random uuid>``.

    Identities must be unique: two of our candidates sharing one would keep taking the lease
    from each other (and two client-go candidates would both believe they lead).
    """
    pod = os.environ.get("POD_NAME", "").strip()
    return pod or f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True, slots=True, order=True)
class FencingToken:
    """Identifies one term of leadership, for downstream systems to reject stale leaders.

    ``leaseTransitions`` grows by one at every change of holder, so within one Lease object a
    larger token is a later term. The Lease's uid changes if the object is deleted and
    recreated, which resets the count; compare tokens only when their ``lease_uid`` matches.
    """

    lease_uid: str
    """``metadata.uid`` of the Lease object the term was won on."""
    transitions: int
    """``spec.leaseTransitions`` written when the term was won."""

    def __str__(self) -> str:
        return f"{self.lease_uid}:{self.transitions}"


@final
class Leadership:
    """One term of leadership, handed to the body of ``leading()``.

    Its ``deadline`` moves forward with each successful renewal; when a renewal cannot be
    made in time, or another holder is seen, the term is lost and the body is cancelled.
    """

    def __init__(
        self,
        *,
        identity: str,
        lease: str,
        snapshot: LeaseSnapshot,
        acquired_at: datetime,
        sent_at: float,
        timings: Timings,
        clock: Clock,
        on_lost: Callable[[LossReason], None] | None = None,
    ) -> None:
        self._identity = identity
        self._lease = lease
        self._on_lost = on_lost
        self._snapshot = snapshot
        self._acquired_at = acquired_at
        self._timings = timings
        self._clock = clock
        self._token = FencingToken(snapshot.uid, snapshot.record.lease_transitions)
        self._deadline = sent_at + timings.renew_deadline
        self._last_sent = sent_at
        self._scope: anyio.CancelScope | None = None
        self._loss: LossReason | None = None
        self._lost = anyio.Event()
        self._ended = False
        self._released = False

    @property
    def identity(self) -> str:
        """Our identity, as written to ``holderIdentity``."""
        return self._identity

    @property
    def lease(self) -> str:
        """The Lease, as ``"namespace/name"``."""
        return self._lease

    @property
    def acquired_at(self) -> datetime:
        """When the term was won (UTC, as written to ``acquireTime``)."""
        return self._acquired_at

    @property
    def token(self) -> FencingToken:
        """The fencing token of this term."""
        return self._token

    @property
    def deadline(self) -> float:
        """Monotonic time (the elector's clock) until which leadership is guaranteed."""
        return self._deadline

    def time_left(self) -> float:
        """Seconds of guaranteed leadership left; 0 once the term has ended."""
        if self._loss is not None or self._ended:
            return 0.0
        return max(0.0, self._deadline - self._clock.monotonic())

    @property
    def is_valid(self) -> bool:
        """True while the term holds: not lost, not ended, and the deadline not passed."""
        return self.time_left() > 0

    @property
    def loss_reason(self) -> LossReason | None:
        """Why the term was lost, or ``None`` while it holds (or ended normally)."""
        return self._loss

    @property
    def released(self) -> bool:
        """True once ``leading()`` has written the lease free at the end of this term."""
        return self._released

    async def wait_lost(self) -> LossReason:
        """Wait until the term is lost; returns the reason."""
        await self._lost.wait()
        assert self._loss is not None
        return self._loss

    def __repr__(self) -> str:
        state = self._loss.name if self._loss else ("ended" if self._ended else "held")
        return (
            f"<Leadership {self._identity!r} of {self._lease} token={self._token} "
            f"{state} time_left={self.time_left():.3f}s>"
        )

    # -- used by the elector ------------------------------------------------------------

    def _lose(self, reason: LossReason) -> None:
        if self._loss is not None or self._ended:
            return
        self._loss = reason
        logger.info(
            "leadership of lease %s lost by %s: %s", self._lease, self._identity, reason.value
        )
        if self._scope is not None:
            self._scope.cancel()
        self._lost.set()
        if self._on_lost is not None:
            self._on_lost(reason)

    def _renewed(self, snapshot: LeaseSnapshot, sent_at: float) -> None:
        self._snapshot = snapshot
        self._last_sent = sent_at
        self._deadline = sent_at + self._timings.renew_deadline
        if self._scope is not None and self._loss is None:
            self._scope.deadline = self._clock_to_loop(self._deadline)

    def _clock_to_loop(self, moment: float) -> float:
        # Cancel scopes run on the event loop's clock; an injected clock is translated.
        return anyio.current_time() + (moment - self._clock.monotonic())

    def _owns(self, snapshot: LeaseSnapshot | None) -> bool:
        return (
            snapshot is not None
            and snapshot.record.holder_identity == self._identity
            and snapshot.uid == self._token.lease_uid
            and snapshot.record.lease_transitions == self._token.transitions
        )


def _later_than(now: datetime, previous: datetime | None) -> datetime:
    """``now``, or just after ``previous`` if the wall clock has not moved past it.

    The API server drops an update that changes nothing (no new resourceVersion, no watch
    event), so a renewal must change the record for followers to see it at all; a wall clock
    that stands still or steps back must not make renewals invisible.
    """
    if previous is not None and now <= previous:
        return previous + timedelta(microseconds=1)
    return now


def _loss_for(snapshot: LeaseSnapshot | None) -> LossReason:
    if snapshot is None:
        return LossReason.LEASE_DELETED
    if snapshot.record.is_free:
        return LossReason.RELEASED_BY_OTHER
    return LossReason.OTHER_HOLDER


class _ErrorLog:
    """Logs an error the first time it is seen, then quietly until something succeeds."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last: str | None = None

    def error(self, lease: str, exc: LeaseError) -> None:
        text = f"{type(exc).__name__}: {exc}"
        level = logging.DEBUG if text == self._last else logging.WARNING
        logger.log(level, "%s lease %s failed: %s", self._what, lease, text)
        self._last = text

    def ok(self) -> None:
        self._last = None


@final
class LeaderElector:
    """Campaigns for a Lease on behalf of one candidate, and runs work only while it leads.

    Args:
        lock: the Lease to campaign for (a ``LeaseLock``).
        identity: our ``holderIdentity``; defaults to ``default_identity()``.
        lease_duration: seconds a follower waits after last seeing the lease change before
            taking it over.
        renew_deadline: seconds after the send time of the last successful renewal at which
            a leader's work is cancelled.
        retry_period: seconds between renewals, and the base of retry back-offs.
        release_on_cancel: when a term ends, write the lease free (holder ``""``) so that a
            follower takes over at once instead of waiting for expiry.
        watch: follow the Lease with a watch (the default). ``False`` polls it with a GET
            every jittered ``retry_period``, as client-go does: for API proxies that cannot
            stream, and for comparison.
        metrics: where to report events (see ``leaderelect.metrics``); nothing by default.
        clock: the time source (tests inject one).
        rng: the random source for jitter (tests may seed one).

    Raises:
        ConfigError: when a timing or the identity is invalid; the message names it.

    Example:
        ```python
        elector = LeaderElector(lock, identity="pod-a")
        async with elector.leading() as leadership:
            await reconcile_forever(fencing_token=leadership.token)
        ```
    """

    def __init__(
        self,
        lock: LeaseLock,
        *,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = True,
        watch: bool = True,
        metrics: MetricsSink | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._timings = Timings(lease_duration, renew_deadline, retry_period)
        if identity is None:
            identity = default_identity()
        if not isinstance(identity, str) or not identity.strip():
            raise ConfigError(f"identity must be a non-empty string, got {identity!r}")
        self._identity = identity
        self._lock: LeaseClient = lock
        self._release_on_cancel = bool(release_on_cancel)
        self._watch = bool(watch)
        self._metrics: MetricsSink = metrics if metrics is not None else NoopMetrics()
        self._metrics.leading_changed(lock.lease, False)  # a follower reports 0 from the start
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._rng = rng if rng is not None else random.Random()
        self._busy = False
        self._term: Leadership | None = None
        self._view: LeaseView | None = None
        self._shared_view: LeaseView | None = None
        self._following: BackgroundTasks | None = None
        self._leader_listeners: list[Callable[[str | None], None]] = []
        self._last_leader: str | None = None

    # -- state ----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """This candidate's identity."""
        return self._identity

    @property
    def lease(self) -> str:
        """The Lease, as ``"namespace/name"``."""
        return self._lock.lease

    @property
    def timings(self) -> Timings:
        """The validated timings."""
        return self._timings

    @property
    def is_leader(self) -> bool:
        """True only while a term holds and its deadline has not passed (time-aware)."""
        return self._term is not None and self._term.is_valid

    @property
    def leader(self) -> str | None:
        """The holder as last observed (``None`` if the lease is free, absent or unread)."""
        return self._view.holder if self._view is not None else self._last_leader

    def __repr__(self) -> str:
        return f"<LeaderElector {self._identity!r} for {self.lease} leader={self.leader!r}>"

    def check(self, tolerance: float = 0.0) -> str | None:
        """A liveness check with client-go's ``HealthzAdaptor`` meaning.

        A leader's work is cancelled at its renew deadline, so a term that still exists
        ``lease_duration + tolerance`` seconds after its last successful renewal means the
        process is wedged (a blocked event loop, work that ignores cancellation): others may
        already lead. Restarting it is the remedy; wire this into a liveness probe.

        Args:
            tolerance: extra seconds allowed beyond ``lease_duration``.

        Returns:
            ``None`` when healthy (including while following), else what is wrong.
        """
        term = self._term
        if term is None or term._ended:
            return None
        stale = self._clock.monotonic() - term._last_sent
        if stale > self._timings.lease_duration + tolerance:
            return (
                f"leader {self._identity!r} of lease {self.lease} has not renewed for "
                f"{stale:.1f}s (lease_duration {self._timings.lease_duration:g}s + "
                f"tolerance {tolerance:g}s)"
            )
        return None

    # -- following the Lease -----------------------------------------------------------------

    async def __aenter__(self) -> LeaderElector:
        """Follow the Lease for the life of the block, for every term and observer in it.

        Optional: ``leading()``, ``run()`` and ``observe()`` work on their own, each following
        the Lease for as long as it runs. Inside ``async with elector:`` they share one watch
        instead, and ``elector.leader`` stays current between terms.
        """
        if self._following is not None:
            raise RuntimeError(f"elector {self._identity!r} is already entered")
        following = BackgroundTasks()
        view = await self._start_following(following)
        self._following = following
        self._shared_view = view
        self._view = view
        self._last_leader = view.holder
        view.add_listener(self._notify_leader)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        following = self._following
        assert following is not None, "LeaderElector.__aexit__ without __aenter__"
        self._following = None
        self._shared_view = None
        self._view = None
        await following.close()

    async def _start_following(self, tasks: BackgroundTasks) -> LeaseView:
        """Enter ``tasks`` and start keeping a new view current; returns after the first read."""
        view = LeaseView()
        task_group = await tasks.__aenter__()
        try:
            await task_group.start(
                partial(
                    follow,
                    self._lock,
                    view,
                    timings=self._timings,
                    clock=self._clock,
                    rng=self._rng,
                    watch=self._watch,
                )
            )
        except BaseException:
            await tasks.close()
            raise
        return view

    # -- the public entry points -------------------------------------------------------------

    def leading(self) -> AbstractAsyncContextManager[Leadership, None]:
        """Campaign until this candidate holds the lease, then run the block while it holds.

        The block runs inside a cancel scope owned by the elector. If the lease is lost, the
        block is cancelled at once and ``LeadershipLost`` is raised from the ``async with``.
        On any exit (normal, exception, cancellation from outside) the block has already
        finished; the renewals are stopped, then the lease is released (when
        ``release_on_cancel``), and only then does ``leading()`` return or re-raise.

        Raises:
            LeadershipLost: the lease was lost while the block ran.
            RuntimeError: this elector is already campaigning or leading.
        """
        return _Leading(self)

    async def run(
        self,
        on_started_leading: Callable[[Leadership], Awaitable[None]],
        *,
        on_stopped_leading: Callable[[], Awaitable[None]] | None = None,
        on_new_leader: Callable[[str | None], Awaitable[None]] | None = None,
        once: bool = False,
    ) -> None:
        """client-go's ``RunOrDie`` loop: campaign, lead, and campaign again after a loss.

        ``on_started_leading(leadership)`` is the work; it is cancelled when the term is lost.
        ``on_stopped_leading()`` runs after each term this candidate actually led, once its
        work has stopped and the lease is released. ``on_new_leader(identity)`` is awaited,
        in order, for each change of observed holder (``None`` when the lease becomes free),
        ourselves included; it is fed by the same watch, not by extra requests.

        Returns when ``on_started_leading`` returns, or after one lost term if ``once``.
        Exceptions from the callbacks propagate after the lease is released.
        """
        send, receive = anyio.create_memory_object_stream[str | None](math.inf)
        drained = anyio.Event()

        async def announce() -> None:
            async with receive:
                async for leader in receive:
                    assert on_new_leader is not None
                    await on_new_leader(leader)
            drained.set()

        async with contextlib.AsyncExitStack() as stack:
            if self._following is None:
                await stack.enter_async_context(self)  # one watch for every term
            tasks = await stack.enter_async_context(BackgroundTasks())

            def enqueue(leader: str | None) -> None:
                # Changes seen after the announcer stopped (during a release on the way out of
                # a cancelled run) are dropped, never raised into the elector.
                with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    send.send_nowait(leader)

            if on_new_leader is not None:
                if self.leader is not None:
                    enqueue(self.leader)  # the holder already seen
                tasks.start_soon(announce)
                self._leader_listeners.append(enqueue)
            else:
                drained.set()
            try:
                await self._run_terms(on_started_leading, on_stopped_leading, once)
            finally:
                if on_new_leader is not None:
                    self._leader_listeners.remove(enqueue)
                send.close()
            await drained.wait()  # deliver the last changes before returning

    @contextlib.asynccontextmanager
    async def observe(self) -> AsyncIterator[AsyncIterator[str | None]]:
        """Watch who leads, without campaigning.

        Yields an async iterator of holders: the current one first, then each change
        (``None`` while the lease is free or absent). Inside ``async with elector:`` it uses
        the elector's watch; otherwise it opens its own (a read and a watch, plus a reconnect
        every few minutes).

        Example:
            ```python
            async with elector.observe() as leaders:
                async for leader in leaders:
                    print("leader is now", leader)
            ```
        """
        send, receive = anyio.create_memory_object_stream[str | None](math.inf)
        async with contextlib.AsyncExitStack() as stack:
            view = self._shared_view
            if view is None:
                following = BackgroundTasks()
                view = await self._start_following(following)
                stack.push_async_callback(following.close)
            last: list[str | None] = [view.holder]

            def changed(_: LeaseSnapshot | None) -> None:
                assert view is not None
                if last[0] != view.holder:
                    last[0] = view.holder
                    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                        send.send_nowait(view.holder)

            send.send_nowait(view.holder)
            stack.callback(view.add_listener(changed))
            async with send, receive:
                yield receive

    async def _run_terms(
        self,
        on_started_leading: Callable[[Leadership], Awaitable[None]],
        on_stopped_leading: Callable[[], Awaitable[None]] | None,
        once: bool,
    ) -> None:
        while True:
            context = _Leading(self)
            try:
                async with context as leadership:
                    await on_started_leading(leadership)
                return
            except LeadershipLost as lost:
                if once:
                    raise
                logger.info("campaigning again for lease %s after: %s", self.lease, lost)
            finally:
                if context.led and on_stopped_leading is not None:
                    with anyio.CancelScope(shield=True):
                        await on_stopped_leading()

    # -- campaign ---------------------------------------------------------------------------

    def _record(self, *, transitions: int, acquired: datetime, renewed: datetime) -> LeaseRecord:
        return LeaseRecord(
            holder_identity=self._identity,
            lease_duration_seconds=lease_duration_seconds(self._timings.lease_duration),
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )

    def _notify_leader(self, snapshot: LeaseSnapshot | None) -> None:
        holder = (
            None
            if snapshot is None or snapshot.record.is_free
            else (snapshot.record.holder_identity)
        )
        if holder != self._last_leader:
            self._last_leader = holder
            if holder is not None:
                logger.info("lease %s: leader is now %s", self.lease, holder)
            for listener in list(self._leader_listeners):
                listener(holder)

    async def _campaign(self, view: LeaseView) -> Leadership:
        """Wait for the lease to be free or expired, and take it; returns the new term."""
        timings = self._timings
        errors = _ErrorLog("acquiring")
        while True:
            since = view.version
            snapshot = view.snapshot
            held_by_other = (
                snapshot is not None
                and not snapshot.record.is_free
                and snapshot.record.holder_identity != self._identity
            )
            if held_by_other:
                expires = view.expires_at(timings.lease_duration)
                if self._clock.monotonic() < expires:
                    await view.wait_for_change(since, self._loop_time(expires))
                    continue
            sent_at = self._clock.monotonic()
            now = self._clock.utcnow()
            try:
                if snapshot is None:
                    written = await self._lock.create(
                        self._record(transitions=0, acquired=now, renewed=now),
                        timeout=timings.renew_deadline / 2,
                    )
                else:
                    # A takeover; also when the record names us (a restart with a stable
                    # identity): a new term gets a new fencing token either way.
                    written = await self._lock.update(
                        self._record(
                            transitions=snapshot.record.lease_transitions + 1,
                            acquired=now,
                            renewed=now,
                        ),
                        base=snapshot,
                        timeout=timings.renew_deadline / 2,
                    )
            except LeaseConflict:
                # Someone else won the race, or our view was stale. The watch will tell us
                # who; read only if it has not within a retry period.
                logger.debug("lost the race for lease %s; learning the new holder", self.lease)
                if not await view.wait_for_change(
                    since, anyio.current_time() + timings.retry_period
                ):
                    await self._refresh(view)
                continue
            except LeaseNotFound as exc:
                if snapshot is not None:  # deleted under us: create it next time
                    view.update(None, self._clock.monotonic())
                    continue
                errors.error(self.lease, exc)
                await anyio.sleep(jittered(timings.retry_period, self._rng))
                continue
            except LeaseError as exc:
                errors.error(self.lease, exc)
                pause = jittered(timings.retry_period, self._rng)
                await anyio.sleep(max(pause, getattr(exc, "retry_after", None) or 0.0))
                continue
            view.update(written, sent_at)
            logger.info(
                "lease %s acquired by %s (transitions=%d)",
                self.lease,
                self._identity,
                written.record.lease_transitions,
            )
            return Leadership(
                identity=self._identity,
                lease=self.lease,
                snapshot=written,
                acquired_at=now,
                sent_at=sent_at,
                timings=timings,
                clock=self._clock,
                on_lost=self._report_loss,
            )

    def _report_loss(self, reason: LossReason) -> None:
        self._metrics.lost(self.lease, reason)
        self._metrics.leading_changed(self.lease, False)

    async def _refresh(self, view: LeaseView) -> None:
        try:
            snapshot = await self._lock.get(timeout=self._timings.renew_deadline / 2)
        except LeaseError as exc:
            logger.debug("reading lease %s failed: %s", self.lease, exc)
            return
        view.update(snapshot, self._clock.monotonic())

    def _loop_time(self, moment: float) -> float:
        return anyio.current_time() + (moment - self._clock.monotonic())

    # -- holding ----------------------------------------------------------------------------

    async def _keep(self, term: Leadership, view: LeaseView) -> None:
        """Renew every retry_period until the term is lost; each success moves the deadline."""
        timings = self._timings
        errors = _ErrorLog("renewing")
        while True:
            await anyio.sleep_until(self._loop_time(term._last_sent + timings.retry_period))
            while True:
                left = term.deadline - self._clock.monotonic()
                if left <= 0:
                    term._lose(LossReason.RENEW_DEADLINE)
                    return
                sent_at = self._clock.monotonic()
                record = self._record(
                    transitions=term.token.transitions,
                    acquired=term.acquired_at,
                    renewed=_later_than(self._clock.utcnow(), term._snapshot.record.renew_time),
                )
                try:
                    written = await self._lock.update(
                        record, base=term._snapshot, timeout=min(left, timings.renew_deadline / 2)
                    )
                except LeaseConflict:
                    # Our last write is not the latest version: read, and go on only if the
                    # lease is still ours in this very term.
                    logger.debug("renewal of lease %s conflicted; re-reading", self.lease)
                    self._metrics.slow_path(self.lease)
                    try:
                        left = term.deadline - self._clock.monotonic()
                        if left <= 0:
                            term._lose(LossReason.RENEW_DEADLINE)
                            return
                        fresh = await self._lock.get(timeout=min(left, timings.renew_deadline / 2))
                    except LeaseError as exc:
                        errors.error(self.lease, exc)
                        await self._pause_within(term, timings.retry_period / 2)
                        continue
                    view.update(fresh, self._clock.monotonic())
                    if not term._owns(fresh):
                        term._lose(_loss_for(fresh))
                        return
                    assert fresh is not None
                    term._snapshot = fresh
                    continue
                except LeaseNotFound:
                    term._lose(LossReason.LEASE_DELETED)
                    return
                except LeaseError as exc:
                    errors.error(self.lease, exc)
                    self._metrics.renew_failed(self.lease, type(exc).__name__)
                    await self._pause_within(term, timings.retry_period / 2)
                    continue
                errors.ok()
                self._metrics.renewed(self.lease, self._clock.monotonic() - sent_at)
                term._renewed(written, sent_at)
                view.update(written, sent_at)
                logger.debug("lease %s renewed by %s", self.lease, self._identity)
                break

    async def _pause_within(self, term: Leadership, period: float) -> None:
        left = term.deadline - self._clock.monotonic()
        await anyio.sleep(max(0.0, min(jittered(period, self._rng), left)))

    async def _release(self, term: Leadership) -> LeaseSnapshot | None:
        """Write the lease free if, and only if, it is still ours in this term.

        The first attempt is a PUT on our own last write's resourceVersion: it succeeds only if
        nobody wrote since. On 409 we read, and write only if the fresh read still names us.
        Bounded by ``renew_deadline``; never clobbers another holder.
        """
        timings = self._timings
        base: LeaseSnapshot | None = term._snapshot
        with anyio.move_on_after(timings.renew_deadline) as bound:
            while True:
                if base is None or not term._owns(base):
                    logger.debug("lease %s is no longer ours; nothing to release", self.lease)
                    return None
                now = self._clock.utcnow()
                released = LeaseRecord(
                    holder_identity="",
                    lease_duration_seconds=1,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=base.record.lease_transitions,
                )
                try:
                    written = await self._lock.update(
                        released, base=base, timeout=timings.renew_deadline / 2
                    )
                except LeaseConflict:
                    try:
                        base = await self._lock.get(timeout=timings.renew_deadline / 2)
                    except LeaseError as exc:
                        logger.warning("releasing lease %s: read failed: %s", self.lease, exc)
                        await anyio.sleep(jittered(timings.retry_period / 2, self._rng))
                    continue
                except LeaseNotFound:
                    return None
                except LeaseError as exc:
                    logger.warning("releasing lease %s failed: %s", self.lease, exc)
                    await anyio.sleep(jittered(timings.retry_period / 2, self._rng))
                    continue
                logger.info("lease %s released by %s", self.lease, self._identity)
                return written
        if bound.cancelled_caught:
            logger.warning(
                "could not release lease %s within %gs; followers will take it over when it "
                "expires",
                self.lease,
                timings.renew_deadline,
            )
        return None


@final
class _Leading:
    """The async context manager returned by ``LeaderElector.leading()``; single use."""

    def __init__(self, elector: LeaderElector) -> None:
        self._elector = elector
        self._entered = False
        self._background: BackgroundTasks | None = None
        self._term: Leadership | None = None
        self._view: LeaseView | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._remove_leader: Callable[[], None] | None = None
        self.led = False

    async def __aenter__(self) -> Leadership:
        elector = self._elector
        if self._entered:
            raise RuntimeError(
                "each leading() context can be entered only once; call leading() again"
            )
        if elector._busy:
            raise RuntimeError(
                f"elector {elector.identity!r} is already campaigning for or leading "
                f"{elector.lease}; an elector runs one term at a time"
            )
        self._entered = True
        elector._busy = True
        background = self._background = BackgroundTasks()
        remove_leader: Callable[[], None] | None = None
        try:
            if elector._shared_view is not None:
                view = elector._shared_view  # the elector's own watch, kept between terms
                task_group = await background.__aenter__()
            else:
                view = await elector._start_following(background)
                task_group = background.group
                elector._view = view
                remove_leader = view.add_listener(elector._notify_leader)
                elector._notify_leader(view.snapshot)
            campaign_started = elector._clock.monotonic()
            term = await elector._campaign(view)
            elector._metrics.acquired(
                elector.lease, elector._clock.monotonic() - campaign_started, term.token.transitions
            )
            elector._metrics.leading_changed(elector.lease, True)
            scope = anyio.CancelScope(deadline=term._clock_to_loop(term.deadline))
            term._scope = scope
            self._term = term
            elector._term = term
            self._remove_listener = view.add_listener(
                lambda snapshot: None if term._owns(snapshot) else term._lose(_loss_for(snapshot))
            )
            task_group.start_soon(elector._keep, term, view)
            view.leading = True
            self._view = view
            scope.__enter__()
        except BaseException:
            if remove_leader is not None:
                remove_leader()
            if background.entered:
                await background.close()
            if elector._shared_view is None:
                elector._view = None
            elector._busy = False
            raise
        self._remove_leader = remove_leader
        self.led = True
        return term

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elector = self._elector
        term = self._term
        assert term is not None and term._scope is not None
        # 1. The body has stopped (it ran in this task); close its scope.
        caught = bool(term._scope.__exit__(exc_type, exc, tb))
        if caught and term.loss_reason is None:
            term._lose(LossReason.RENEW_DEADLINE)  # the scope's own deadline fired
        loss = term.loss_reason
        term._ended = True
        elector._term = None
        if loss is None:
            elector._metrics.leading_changed(elector.lease, False)
        if self._view is not None:
            self._view.leading = False
        # 2. Stop renewing and watching, and wait for both. When we are leaving because of a
        # cancellation from outside, the wait ends by re-raising it: hold it until released.
        pending: BaseException | None = None
        if self._remove_listener is not None:
            self._remove_listener()
        assert self._background is not None
        try:
            await self._background.close()
        except BaseException as exc:  # an outer cancellation, or a failed background task
            pending = exc
        try:
            # 3. Only now release, shielded from outer cancellation but bounded in time.
            if elector._release_on_cancel and loss in (None, LossReason.RENEW_DEADLINE):
                with anyio.CancelScope(shield=True):
                    released = await elector._release(term)
                if released is not None:
                    term._released = True
                    if elector._view is not None:
                        elector._view.update(released, elector._clock.monotonic())
        finally:
            if self._remove_leader is not None:
                self._remove_leader()
            if elector._shared_view is None:
                elector._view = None
            elector._busy = False
        if pending is not None:
            raise pending
        if loss is not None and (caught or exc_type is None):
            raise LeadershipLost(loss, term)
