"""What a candidate knows of the Lease: the newest snapshot, and when the Lease last changed.

Expiry is judged from the local monotonic time at which a new resourceVersion was last seen,
plus the record's ``leaseDurationSeconds`` (client-go's rule), never from the holder's
``renewTime``. Any new version counts, not only a changed record: every write by the holder is
a sign of life. The view is fed by ``_follow.follow()`` and by our own writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator

import anyio

from ._lease_client import LeaseSnapshot

__all__ = ["LeaseView", "Listener"]

logger = logging.getLogger(__name__)

Listener = Callable[["LeaseSnapshot | None"], None]


def _is_older(candidate: str, current: str) -> bool:
    """True when ``candidate`` is known to precede ``current``.

    resourceVersions are opaque strings by the API's letter, but every etcd-backed server
    (ours included) issues one increasing integer; where both parse we use that order, so a
    lagging watch event can never roll our view back past a write we already saw.
    """
    if candidate.isdigit() and current.isdigit():
        return int(candidate) < int(current)
    return False


class LeaseView:
    """The latest known state of one Lease, and when it last changed."""

    def __init__(self) -> None:
        self.known = False
        """True once the Lease has been read at least once."""
        self.snapshot: LeaseSnapshot | None = None
        """The newest snapshot seen; ``None`` while the Lease does not exist."""
        self.changed_at = -math.inf
        """Monotonic time at which a new version of the Lease was last seen here."""
        self.version = 0
        """Counts accepted observations; lets a waiter ask for anything newer."""
        self._writers = 0
        self._version_seen: str | None = None
        self._deleted_claim: tuple[int | None, float, LeaseSnapshot, bool] | None = None
        self._changed = anyio.Event()
        self._listeners: list[Listener] = []

    @property
    def holder(self) -> str | None:
        """The observed holder, or ``None`` when the Lease is free, absent or unread."""
        if self.snapshot is None or self.snapshot.record.is_free:
            return None
        return self.snapshot.record.holder_identity

    @property
    def fed_by_our_writes(self) -> bool:
        """True while one of our terms holds the Lease: its own renewals keep the view
        current, so a polling follower may stop reading (a watch costs nothing)."""
        return self._writers > 0

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Mark the view as fed by our own writes for the duration of the block."""
        self._writers += 1
        try:
            yield
        finally:
            self._writers -= 1

    def expires_at(self, fallback_duration: float) -> float:
        """When the observed holder's claim runs out on our clock.

        A record without a valid ``leaseDurationSeconds`` is not trusted to say how long it
        lasts; it gets ``fallback_duration`` (our own lease duration) from its last change.
        """
        duration: float = fallback_duration
        if self.snapshot is not None and self.snapshot.record.lease_duration_seconds:
            duration = self.snapshot.record.lease_duration_seconds
        return self.changed_at + duration

    @property
    def deleted_holder(self) -> LeaseSnapshot | None:
        """The last held record, while the Lease is absent because it was deleted while held."""
        claim = self._deleted_claim
        return claim[2] if claim is not None and self.snapshot is None else None

    @property
    def deleted_exactly(self) -> bool:
        """True when :attr:`deleted_holder` is the Lease's very last state (a ``DELETED``
        event's object); False when it is only the last state we saw before a 404, with
        possibly other holders' writes, unseen, in between."""
        claim = self._deleted_claim
        return claim is not None and self.snapshot is None and claim[3]

    def deleted_claim_ends(self, fallback_duration: float) -> float:
        """When the claim of a holder whose Lease was deleted runs out on our clock.

        Deleting a Lease does not stop its holder: cut off from the server, it works until its
        renew deadline. We may have missed its last renewals (a silent watch, failing reads),
        so its claim is counted from when we saw the deletion, plus that record's duration.
        ``-inf`` when there is none.
        """
        claim = self._deleted_claim
        if claim is None or self.snapshot is not None:
            return -math.inf
        duration, changed_at, _, _ = claim
        return changed_at + (duration or fallback_duration)

    def update(
        self,
        snapshot: LeaseSnapshot | None,
        at: float,
        *,
        version: str | None = None,
        authoritative: bool = False,
        last: LeaseSnapshot | None = None,
    ) -> bool:
        """Record an observation made at monotonic time ``at``; False if it was stale.

        Args:
            snapshot: the Lease, or ``None`` when it does not exist (a 404, a DELETED event).
            at: when it was observed (or, for our own write, sent).
            version: the resourceVersion of the observation when ``snapshot`` carries none
                (a DELETED event's); compared like a snapshot's.
            authoritative: a read or a write answered by the server: always taken, even if
                its resourceVersion compares lower (after an etcd restore the server's
                versions start again below ours). Watch events are not: a late event must
                never roll the view back past what a read or a write already showed.
            last: with ``snapshot=None`` from a ``DELETED`` event, the Lease's last state.
        """
        current = self.snapshot
        incoming = snapshot.resource_version if snapshot is not None else version
        if (
            not authoritative
            and incoming is not None
            and self._version_seen is not None
            and _is_older(incoming, self._version_seen)
        ):
            return False
        before = current.resource_version if current is not None else None
        after = snapshot.resource_version if snapshot is not None else None
        gone = last if last is not None else current
        if snapshot is None and current is not None and gone is not None:
            # Deleted while held: the holder may keep working until its claim runs out.
            if gone.record.is_free:
                self._deleted_claim = None
            else:
                duration = gone.record.lease_duration_seconds
                self._deleted_claim = duration, at, gone, last is not None
        elif snapshot is not None:
            self._deleted_claim = None
        if not self.known or before != after:
            self.changed_at = at
            if snapshot is not None and snapshot.record.problems:
                logger.warning(
                    "lease %s is malformed, not trusting it: %s",
                    _describe(snapshot),
                    "; ".join(snapshot.record.problems),
                )
        self.known = True
        self.snapshot = snapshot
        if incoming is not None:
            self._version_seen = incoming
        self.version += 1
        self._changed.set()
        self._changed = anyio.Event()
        for listener in list(self._listeners):
            listener(snapshot)
        return True

    async def wait_for_change(self, since: int, deadline: float = math.inf) -> bool:
        """Wait until an observation newer than ``since`` arrives, or until ``deadline``
        (event-loop time). Returns True if there is a newer observation."""
        if self.version > since:
            return True
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            while self.version <= since:
                await self._changed.wait()
        return self.version > since

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` synchronously on each accepted observation; returns its remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)


def _describe(snapshot: LeaseSnapshot) -> str:
    metadata = snapshot.obj.get("metadata", {})
    return f"{metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
