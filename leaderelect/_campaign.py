"""The campaign: wait until the lease may be taken, and take it with a conditional write.

A lease may be taken when it is free, absent, or when the holder's claim has run out on our
own clock (``leaseDurationSeconds`` after we last saw it change); a Lease deleted while held
keeps its holder's claim until then too. A record that names our identity is ours only if this
very elector wrote that term. The API server's compare-and-swap on ``resourceVersion`` lets
one racer win; a loser learns the winner from the watch. The won write becomes a ``Term``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable

import anyio

from ._backoff import RetryPacer
from ._clock import Clock, loop_time
from ._config import Timings
from ._errors import LeaseConflict, LeaseError, LeaseNotFound
from ._lease_client import LeaseClient, LeaseSnapshot
from ._record import LeaseRecord, coordination_kept
from ._term import FencingToken, Term, holder_record, release
from ._view import LeaseView
from .metrics import MetricsSink

__all__ = ["Campaign"]

logger = logging.getLogger(__name__)


class Campaign:
    """How one elector takes its Lease, term after term; remembers the last term it won."""

    def __init__(
        self,
        client: LeaseClient,
        *,
        identity: str,
        timings: Timings,
        clock: Clock,
        rng: random.Random,
        metrics: MetricsSink,
        release_on_exit: bool,
        coordinated: bool = False,
    ) -> None:
        self._coordinated = coordinated
        self._client = client
        self._identity = identity
        self._timings = timings
        self._clock = clock
        self._rng = rng
        self._metrics = metrics
        self._release_on_cancel = release_on_exit
        self.last_won: FencingToken | None = None
        """The token of the last term this elector won: a record naming our identity is ours
        only if it is that term (another process may share our identity)."""

    def is_ours(self, snapshot: LeaseSnapshot) -> bool:
        """True when ``snapshot`` records the last term this very elector won.

        A record that merely names our identity may have been written by another process
        sharing it (two workers of one pod, a restart): that holder's claim expires like any
        other's.
        """
        won = self.last_won
        return (
            won is not None
            and snapshot.record.holder_identity == self._identity
            and snapshot.uid == won.lease_uid
            and snapshot.record.lease_transitions == won.transitions
        )

    def _claim_ends(self, view: LeaseView) -> float:
        """Until when (our monotonic clock) another holder's claim on the lease must be waited
        out; ``-inf`` when the lease may be taken now."""
        fallback = self._timings.lease_duration
        snapshot = view.snapshot
        if snapshot is None:
            # Deleted while held: the holder may still be working (cut off, it learns nothing
            # of the deletion), so its claim is waited out as if the Lease were there. Our own
            # term's record is no claim, if it was the very last state: after a 404 alone,
            # another holder may have taken over, unseen, before the deletion.
            deleted = view.deleted_holder
            if deleted is None or (view.deleted_exactly and self.is_ours(deleted)):
                return -math.inf
            return view.deleted_claim_ends(fallback)
        if snapshot.record.is_free or self.is_ours(snapshot):
            return -math.inf
        return view.expires_at(fallback)

    def _granted_after(self, view: LeaseView, others_end: float) -> float:
        """Coordinated: until when to wait before taking the lease; ``inf`` until the
        controller names us (we never create or take a lease it did not give us)."""
        snapshot = view.snapshot
        if snapshot is None or snapshot.record.holder_identity != self._identity:
            return math.inf
        preferred = snapshot.record.preferred_holder
        if preferred is not None and preferred != self._identity:
            return math.inf  # its term is ending, and not for us
        # The controller judges expiry by the holder's wall clock: we also wait out, on our own
        # clock, the claim of the holder we last saw before it named us.
        return others_end

    def _others_claim(self, view: LeaseView, others_end: float) -> float:
        """The latest claim of another holder seen so far (coordinated mode)."""
        snapshot, fallback = view.snapshot, self._timings.lease_duration
        if snapshot is None:  # deleted: a holder cut off may still be working
            return max(others_end, view.deleted_claim_ends(fallback))
        if snapshot.record.is_free:
            return -math.inf  # released: its holder's work has stopped
        if snapshot.record.holder_identity == self._identity:
            return others_end
        return max(others_end, view.expires_at(fallback))

    async def run(
        self, view: LeaseView, *, before_release: Callable[[], Awaitable[None]] | None = None
    ) -> Term:
        """Wait for the lease to be free or expired (coordinated: given to us by the
        controller), and take it; returns the new term. ``before_release`` is awaited when
        the term ends, before the lease is released (see ``Term``)."""
        timings, clock = self._timings, self._clock
        pacer = RetryPacer("acquiring", self._client.lease, timings.retry_period, self._rng)
        others_end = -math.inf
        while True:
            since = view.version
            snapshot = view.snapshot
            if self._coordinated:
                others_end = self._others_claim(view, others_end)
                claim_ends = self._granted_after(view, others_end)
            else:
                claim_ends = self._claim_ends(view)
            if clock.monotonic() < claim_ends:
                await view.wait_for_change(since, loop_time(clock, claim_ends))
                continue
            sent_at = clock.monotonic()
            now = clock.utcnow()
            transitions = 0 if snapshot is None else snapshot.record.lease_transitions + 1
            record = holder_record(
                self._identity, timings, transitions=transitions, acquired=now, renewed=now
            )
            if snapshot is not None:
                record = coordination_kept(record, snapshot.record, new_term=True)
            try:
                won = await self._claim(record, snapshot)
            except LeaseConflict:
                # Someone else won the race, or our view was stale. The watch will tell us
                # who; read only if it has not within a retry period.
                logger.debug(
                    "lost the race for lease %s; learning the new holder", self._client.lease
                )
                if not await view.wait_for_change(
                    since, anyio.current_time() + timings.retry_period
                ):
                    await self._refresh(view)
                continue
            except LeaseNotFound as exc:
                if snapshot is not None:  # deleted under us: create it next time
                    view.update(None, clock.monotonic())
                    continue
                await anyio.sleep(pacer.failed(exc))
                continue
            except LeaseError as exc:
                await anyio.sleep(pacer.failed(exc))
                continue
            view.update(won, sent_at, authoritative=True)
            self.last_won = FencingToken(won.uid, won.record.lease_transitions)
            logger.info(
                "lease %s acquired by %s (transitions=%d)",
                self._client.lease,
                self._identity,
                won.record.lease_transitions,
            )
            return Term(
                client=self._client,
                view=view,
                identity=self._identity,
                won=won,
                acquired_at=now,
                sent_at=sent_at,
                timings=timings,
                clock=clock,
                rng=self._rng,
                metrics=self._metrics,
                release_on_exit=self._release_on_cancel,
                coordinated=self._coordinated,
                before_release=before_release,
            )

    async def _claim(self, record: LeaseRecord, base: LeaseSnapshot | None) -> LeaseSnapshot:
        """Write our claim: create the Lease, or take it over from ``base``.

        Also when the record names us (a restart with a stable identity): a new term gets a
        new fencing token either way. If we are cancelled while the write is in flight, it
        may still have been applied, with nobody left to lead or renew: then we release it.
        """
        timeout = self._timings.renew_deadline / 2
        try:
            if base is None:
                return await self._client.create(record, timeout=timeout)
            return await self._client.update(record, base=base, timeout=timeout)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._release_if_written(record)
            raise

    async def _release_if_written(self, record: LeaseRecord) -> None:
        def is_our_claim(snapshot: LeaseSnapshot | None) -> bool:
            return snapshot is not None and (
                snapshot.record.holder_identity == record.holder_identity
                and snapshot.record.lease_transitions == record.lease_transitions
                and snapshot.record.acquire_time == record.acquire_time
            )

        with anyio.move_on_after(self._timings.renew_deadline):
            try:
                current = await self._client.get(timeout=self._timings.renew_deadline / 2)
            except LeaseError as exc:
                logger.warning(
                    "campaign for lease %s cancelled mid-write, and reading it failed: %s; if "
                    "the write was applied, followers take the lease over when it expires",
                    self._client.lease,
                    exc,
                )
                return
            if is_our_claim(current):
                logger.info(
                    "campaign for lease %s cancelled after its write won", self._client.lease
                )
                await release(
                    self._client,
                    current,
                    owns=is_our_claim,
                    identity=self._identity,
                    timings=self._timings,
                    clock=self._clock,
                    rng=self._rng,
                )

    async def _refresh(self, view: LeaseView) -> None:
        try:
            snapshot = await self._client.get(timeout=self._timings.renew_deadline / 2)
        except LeaseError as exc:
            logger.debug("reading lease %s failed: %s", self._client.lease, exc)
            return
        view.update(snapshot, self._clock.monotonic(), authoritative=True)
