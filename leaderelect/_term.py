"""One term of leadership: from the write that won the lease to its loss or release.

A :class:`Term` owns everything that lives exactly as long as the term: the snapshot its next
write is based on, the deadline, the cancel scope the leader's work runs in, the renewal task,
the loss and the release. :class:`Leadership` is its public face, handed to the work.

The work's deadline is ``renew_deadline`` after the *send* time of the last successful renewal,
and every renewal is bounded by the time left before it, so no hung request keeps a leader
working past it. A definite loss (a read, a watch event or a 409 showing another holder)
cancels the work at once. On exit the work has stopped (it ran in the caller's task); then the
renewals stop, whatever raised on the way; only then is the lease released, with a conditional
write that never clobbers a holder that took over meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import final

import anyio

from ._backoff import RetryPacer
from ._clock import Clock, loop_time
from ._config import Timings
from ._errors import LeaderElectionError, LeaseConflict, LeaseError, LeaseNotFound, LossReason
from ._lease_client import LeaseClient, LeaseSnapshot
from ._record import LeaseRecord, coordination_kept, lease_duration_seconds
from ._tasks import BackgroundTasks
from ._view import LeaseView
from .metrics import MetricsSink

__all__ = ["FencingToken", "Leadership", "LeadershipLost", "Term", "holder_record", "release"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FencingToken:
    """Identifies one term of leadership, for downstream systems to reject stale leaders.

    ``leaseTransitions`` grows by one at every change of holder, so within one Lease object a
    larger token is a later term: ``<``, ``<=``, ``>`` and ``>=`` compare ``transitions``. The
    Lease's uid changes if the object is deleted and created again, which resets the count;
    tokens of two Lease objects have no order, and comparing them raises ``ValueError``
    (check :meth:`same_lease` first). See "Fencing tokens" in the docs for how a downstream
    system uses them.
    """

    lease_uid: str
    """``metadata.uid`` of the Lease object the term was won on."""
    transitions: int
    """``spec.leaseTransitions`` written when the term was won."""

    def same_lease(self, other: FencingToken) -> bool:
        """True when both tokens were won on the same Lease object, so that they compare."""
        return self.lease_uid == other.lease_uid

    def _ordered(self, other: object) -> int | None:
        if not isinstance(other, FencingToken):
            return None
        if other.lease_uid != self.lease_uid:
            raise ValueError(
                f"fencing tokens {self} and {other} come from two Lease objects (the Lease was "
                "deleted and created again) and have no order; check same_lease() first"
            )
        return self.transitions - other.transitions

    def __lt__(self, other: object) -> bool:
        difference = self._ordered(other)
        return NotImplemented if difference is None else difference < 0

    def __le__(self, other: object) -> bool:
        difference = self._ordered(other)
        return NotImplemented if difference is None else difference <= 0

    def __gt__(self, other: object) -> bool:
        difference = self._ordered(other)
        return NotImplemented if difference is None else difference > 0

    def __ge__(self, other: object) -> bool:
        difference = self._ordered(other)
        return NotImplemented if difference is None else difference >= 0

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
        token: FencingToken,
        acquired_at: datetime,
        deadline: float,
        clock: Clock,
    ) -> None:
        self._identity = identity
        self._lease = lease
        self._token = token
        self._acquired_at = acquired_at
        self._deadline = deadline
        self._clock = clock
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


class LeadershipLost(LeaderElectionError):
    """Raised by ``leading()`` when the lease was lost and its body was cancelled.

    Attributes:
        reason: why leadership ended.
        leadership: the term that ended.
    """

    def __init__(self, reason: LossReason, leadership: Leadership) -> None:
        super().__init__(
            f"leadership of lease {leadership.lease} lost by {leadership.identity!r}: "
            f"{reason.value}"
        )
        self.reason = reason
        self.leadership = leadership


def holder_record(
    identity: str, timings: Timings, *, transitions: int, acquired: datetime, renewed: datetime
) -> LeaseRecord:
    """The record a holder writes: at a takeover, and at each renewal."""
    return LeaseRecord(
        holder_identity=identity,
        lease_duration_seconds=lease_duration_seconds(timings.lease_duration),
        acquire_time=acquired,
        renew_time=renewed,
        lease_transitions=transitions,
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


# Losses after which the lease may still be ours to release: our own deadline passed, or we
# step down for a preferred holder (the conditional release never clobbers anyone).
_RELEASABLE = (None, LossReason.RENEW_DEADLINE, LossReason.PREFERRED_HOLDER)


def _loss_for(snapshot: LeaseSnapshot | None) -> LossReason:
    if snapshot is None:
        return LossReason.LEASE_DELETED
    if snapshot.record.is_free:
        return LossReason.RELEASED_BY_OTHER
    return LossReason.OTHER_HOLDER


@final
class Term:
    """The mechanics of one term; ``async with term as leadership:`` runs the work in it.

    Entering starts the renewals and enters the work's cancel scope; leaving ends the term
    (see the module docstring for the order) and raises :class:`LeadershipLost` if it was lost.
    Single use.
    """

    def __init__(
        self,
        *,
        client: LeaseClient,
        view: LeaseView,
        identity: str,
        won: LeaseSnapshot,
        acquired_at: datetime,
        sent_at: float,
        timings: Timings,
        clock: Clock,
        rng: random.Random,
        metrics: MetricsSink,
        release_on_exit: bool,
        coordinated: bool = False,
        before_release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._coordinated = coordinated
        self._before_release = before_release
        self._client = client
        self._view = view
        self._timings = timings
        self._clock = clock
        self._rng = rng
        self._metrics = metrics
        self._release_on_exit = release_on_exit
        self._snapshot = won
        self.last_sent = sent_at
        """Monotonic send time of the last successful write of this term."""
        self.leadership = Leadership(
            identity=identity,
            lease=client.lease,
            token=FencingToken(won.uid, won.record.lease_transitions),
            acquired_at=acquired_at,
            deadline=sent_at + timings.renew_deadline,
            clock=clock,
        )
        self._scope = anyio.CancelScope(deadline=loop_time(clock, self.leadership.deadline))
        self._tasks = BackgroundTasks()
        self._exits = contextlib.ExitStack()

    @property
    def ended(self) -> bool:
        """True once the work has stopped."""
        return self.leadership._ended

    # -- the lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Leadership:
        task_group = await self._tasks.__aenter__()
        try:
            self._exits.callback(self._view.add_listener(self._observed))
            self._exits.enter_context(self._view.writing())
            task_group.start_soon(self._keep)
        except BaseException:
            self._exits.close()
            await self._tasks.close()
            raise
        self._scope.__enter__()
        return self.leadership

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        leadership = self.leadership
        caught = False
        pending: BaseException | None = None
        try:
            # 1. The work has stopped (it ran in this task): close its scope.
            caught = bool(self._scope.__exit__(exc_type, exc, tb))
            if caught and leadership._loss is None:
                self._lose(LossReason.RENEW_DEADLINE)  # the scope's own deadline fired
        finally:
            # 2. End the term and stop renewing, whatever raised above. When we are leaving
            # because of a cancellation from outside, the wait re-raises it: hold it until
            # the lease is released.
            leadership._ended = True
            self._exits.close()
            try:
                await self._tasks.close()
            except BaseException as failure:  # an outer cancellation, or a failed renewal task
                pending = failure
        loss = leadership._loss
        try:
            # 3. Only now release, shielded from outer cancellation but bounded in time. A
            # coordinated candidate first withdraws, so the controller elects someone else.
            with anyio.CancelScope(shield=True):
                if self._before_release is not None:
                    await self._before_release()
                released = None
                if self._release_on_exit and loss in _RELEASABLE:
                    released = await self._release()
            if released is not None:
                leadership._released = True
                self._view.update(released, self._clock.monotonic(), authoritative=True)
        finally:
            if loss is None:
                self._metrics.leading_changed(leadership.lease, False)
        if pending is not None:
            raise pending
        if loss is not None and (caught or exc_type is None):
            raise LeadershipLost(loss, leadership)

    def stale_for(self) -> float:
        """Seconds since the send time of the last successful write of this term."""
        return self._clock.monotonic() - self.last_sent

    # -- loss ---------------------------------------------------------------------------------

    def _owns(self, snapshot: LeaseSnapshot | None) -> bool:
        token = self.leadership.token
        return (
            snapshot is not None
            and snapshot.record.holder_identity == self.leadership.identity
            and snapshot.uid == token.lease_uid
            and snapshot.record.lease_transitions == token.transitions
        )

    def _observed(self, snapshot: LeaseSnapshot | None) -> None:
        if not self._owns(snapshot):
            self._lose(_loss_for(snapshot))
        elif self._coordinated and snapshot is not None:
            preferred = snapshot.record.preferred_holder
            if preferred is not None and preferred != self.leadership.identity:
                self._lose(LossReason.PREFERRED_HOLDER)  # end of term: step down

    def _lose(self, reason: LossReason) -> None:
        leadership = self.leadership
        if leadership._loss is not None or leadership._ended:
            return
        leadership._loss = reason
        logger.info(
            "leadership of lease %s lost by %s: %s",
            leadership.lease,
            leadership.identity,
            reason.value,
        )
        self._scope.cancel()
        leadership._lost.set()
        self._metrics.lost(leadership.lease, reason)
        self._metrics.leading_changed(leadership.lease, False)

    def _time_left(self) -> float:
        return self.leadership.deadline - self._clock.monotonic()

    # -- renewals -----------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Renew every retry_period until the term is lost; each success moves the deadline."""
        timings, clock, lease = self._timings, self._clock, self._client.lease
        pacer = RetryPacer("renewing", lease, timings.retry_period / 2, self._rng)
        while True:
            await anyio.sleep_until(loop_time(clock, self.last_sent + timings.retry_period))
            while True:
                left = self._time_left()
                if left <= 0:
                    self._lose(LossReason.RENEW_DEADLINE)
                    return
                sent_at = clock.monotonic()
                base = self._snapshot.record
                record = coordination_kept(
                    holder_record(
                        self.leadership.identity,
                        timings,
                        transitions=self.leadership.token.transitions,
                        acquired=self.leadership.acquired_at,
                        renewed=_later_than(clock.utcnow(), base.renew_time),
                    ),
                    base,
                    new_term=False,
                )
                try:
                    written = await self._client.update(
                        record, base=self._snapshot, timeout=min(left, timings.renew_deadline / 2)
                    )
                except LeaseConflict:
                    # Our last write is not the latest version: read, and go on only if the
                    # lease is still ours in this very term.
                    logger.debug("renewal of lease %s conflicted; re-reading", lease)
                    self._metrics.slow_path(lease)
                    if not await self._reread(pacer):
                        return
                    continue
                except LeaseNotFound:
                    self._lose(LossReason.LEASE_DELETED)
                    return
                except LeaseError as exc:
                    self._metrics.renew_failed(lease, type(exc).__name__)
                    await self._pause(pacer.failed(exc))
                    continue
                pacer.succeeded()
                self._metrics.renewed(lease, clock.monotonic() - sent_at)
                self._renewed(written, sent_at)
                logger.debug("lease %s renewed by %s", lease, self.leadership.identity)
                break

    def _renewed(self, written: LeaseSnapshot, sent_at: float) -> None:
        self._snapshot = written
        self.last_sent = sent_at
        self.leadership._deadline = sent_at + self._timings.renew_deadline
        if self.leadership._loss is None:
            self._scope.deadline = loop_time(self._clock, self.leadership._deadline)
        self._view.update(written, sent_at, authoritative=True)

    async def _reread(self, pacer: RetryPacer) -> bool:
        """After a conflict: read the Lease; False if the term is lost."""
        left = self._time_left()
        if left <= 0:
            self._lose(LossReason.RENEW_DEADLINE)
            return False
        try:
            fresh = await self._client.get(timeout=min(left, self._timings.renew_deadline / 2))
        except LeaseError as exc:
            await self._pause(pacer.failed(exc))
            return True
        self._view.update(fresh, self._clock.monotonic(), authoritative=True)
        if not self._owns(fresh):
            self._lose(_loss_for(fresh))
            return False
        assert fresh is not None
        self._snapshot = fresh
        return True

    async def _pause(self, delay: float) -> None:
        await anyio.sleep(max(0.0, min(delay, self._time_left())))

    # -- release ----------------------------------------------------------------------------

    async def _release(self) -> LeaseSnapshot | None:
        return await release(
            self._client,
            self._snapshot,
            owns=self._owns,
            identity=self.leadership.identity,
            timings=self._timings,
            clock=self._clock,
            rng=self._rng,
        )


async def release(
    client: LeaseClient,
    base: LeaseSnapshot | None,
    *,
    owns: Callable[[LeaseSnapshot | None], bool],
    identity: str,
    timings: Timings,
    clock: Clock,
    rng: random.Random,
) -> LeaseSnapshot | None:
    """Write the lease free if, and only if, ``owns`` says it is still ours.

    The first attempt is a PUT on ``base``'s resourceVersion (our own last write): it succeeds
    only if nobody wrote since. On 409 we read, and write only if the fresh read is still ours.
    Bounded by ``renew_deadline``; never clobbers another holder. Returns the released Lease,
    or ``None`` when there was nothing (left) to release or it could not be done in time.
    """
    lease = client.lease
    pacer = RetryPacer("releasing", lease, timings.retry_period / 2, rng)
    with anyio.move_on_after(timings.renew_deadline) as bound:
        while True:
            if not owns(base):
                logger.debug("lease %s is no longer ours; nothing to release", lease)
                return None
            assert base is not None
            now = clock.utcnow()
            released = coordination_kept(
                LeaseRecord(
                    holder_identity="",
                    lease_duration_seconds=1,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=base.record.lease_transitions,
                ),
                base.record,
                new_term=False,
            )
            try:
                written = await client.update(
                    released, base=base, timeout=timings.renew_deadline / 2
                )
            except LeaseConflict:
                try:
                    base = await client.get(timeout=timings.renew_deadline / 2)
                except LeaseError as exc:
                    await anyio.sleep(pacer.failed(exc))
                continue
            except LeaseNotFound:
                return None
            except LeaseError as exc:
                await anyio.sleep(pacer.failed(exc))
                continue
            logger.info("lease %s released by %s", lease, identity)
            return written
    if bound.cancelled_caught:
        logger.warning(
            "could not release lease %s within %gs; followers will take it over when it expires",
            lease,
            timings.renew_deadline,
        )
    return None
