"""What a candidate knows of the Lease, kept current by one watch instead of polling.

``LeaseView`` holds the latest snapshot and the local monotonic time at which the Lease last
*changed*, i.e. a new resourceVersion was seen: expiry is judged from that time plus the
record's ``leaseDurationSeconds`` (client-go's rule), never from the holder's ``renewTime``.
Any new version counts, not only a changed record: every write by the holder is a sign of life.

``follow()`` feeds it: one GET, then a watch on this single Lease resumed from the last
resourceVersion. It falls back to polling (GET every jittered ``retry_period``) while the watch
is failing, and for good when RBAC forbids watching.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from ._backoff import Backoff, jittered
from ._clock import Clock
from ._config import Timings
from ._errors import ApiUnavailable, LeaseError, LeaseForbidden, WatchExpired
from ._lock import LeaseClient, LeaseSnapshot, WatchEventType

__all__ = ["LeaseView", "follow"]

logger = logging.getLogger(__name__)

# A watch asks the server to end it after this long, jittered so that many followers do not
# reconnect together; reconnecting resumes from the last resourceVersion and costs one request.
_WATCH_SECONDS = (240, 300)
# A watch that ends sooner than this, with nothing wrong said, counts as a failure.
_SHORTEST_WATCH = 1.0
# Consecutive watch failures after which we say, once, that we are polling until it recovers.
_WATCH_FAILURES_BEFORE_WARNING = 3

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
        self.leading = False
        """Set while this candidate leads: its own writes keep the view current, so a
        polling follower stops reading (a watch costs nothing and stays open)."""
        self._changed = anyio.Event()
        self._listeners: list[Listener] = []

    @property
    def holder(self) -> str | None:
        """The observed holder, or ``None`` when the Lease is free, absent or unread."""
        if self.snapshot is None or self.snapshot.record.is_free:
            return None
        return self.snapshot.record.holder_identity

    def expires_at(self, fallback_duration: float) -> float:
        """When the observed holder's claim runs out on our clock.

        A record without a valid ``leaseDurationSeconds`` is not trusted to say how long it
        lasts; it gets ``fallback_duration`` (our own lease duration) from its last change.
        """
        duration: float = fallback_duration
        if self.snapshot is not None and self.snapshot.record.lease_duration_seconds:
            duration = self.snapshot.record.lease_duration_seconds
        return self.changed_at + duration

    def update(self, snapshot: LeaseSnapshot | None, at: float) -> bool:
        """Record an observation made at monotonic time ``at``; False if it was stale."""
        current = self.snapshot
        if (
            snapshot is not None
            and current is not None
            and _is_older(snapshot.resource_version, current.resource_version)
        ):
            return False
        before = current.resource_version if current is not None else None
        after = snapshot.resource_version if snapshot is not None else None
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
        self.version += 1
        self._changed.set()
        self._changed = anyio.Event()
        for listener in list(self._listeners):
            listener(snapshot)
        return True

    async def wait_for_change(self, since: int, deadline: float = math.inf) -> bool:
        """Wait until an observation newer than ``since`` arrives, or until ``deadline``.

        Returns True if there is a newer observation.
        """
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


async def follow(
    lock: LeaseClient,
    view: LeaseView,
    *,
    timings: Timings,
    clock: Clock,
    rng: random.Random,
    watch: bool = True,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``view`` current until cancelled; reports started after the first successful read.

    With ``watch=False`` it polls like client-go: a GET every jittered ``retry_period``.
    """
    request_timeout = timings.renew_deadline / 2
    backoff = Backoff(timings.retry_period / 4, 4 * timings.retry_period, rng)
    started = False
    polling_announced = False

    async def read() -> bool:
        nonlocal started
        try:
            snapshot = await lock.get(timeout=request_timeout)
        except LeaseError as exc:
            logger.warning("reading lease %s failed: %s", lock.lease, exc)
            return False
        view.update(snapshot, clock.monotonic())
        if not started:
            started = True
            task_status.started()
        return True

    async def poll_for(seconds: float) -> None:
        """GET now and then every jittered retry_period, for ``seconds``."""
        until = clock.monotonic() + seconds
        while True:
            if not view.leading:
                await read()
            pause = jittered(timings.retry_period, rng)
            if clock.monotonic() + pause >= until:
                await anyio.sleep(max(0.0, until - clock.monotonic()))
                return
            await anyio.sleep(pause)

    while True:
        if await read():
            break
        await anyio.sleep(backoff.next())
    backoff.reset()
    if not watch:
        await poll_for(math.inf)
    resource_version = view.snapshot.resource_version if view.snapshot is not None else None

    while True:
        opened_at = clock.monotonic()
        try:
            async with lock.watch(
                resource_version=resource_version,
                timeout_seconds=rng.randint(*_WATCH_SECONDS),
            ) as events:
                async for event in events:
                    resource_version = event.resource_version
                    if event.type is WatchEventType.BOOKMARK:
                        continue
                    if backoff.failures:
                        logger.info("watch on lease %s recovered", lock.lease)
                        backoff.reset()
                        polling_announced = False
                    snapshot = None if event.type is WatchEventType.DELETED else event.snapshot
                    view.update(snapshot, clock.monotonic())
            if clock.monotonic() - opened_at < _SHORTEST_WATCH:
                # A server that ends watches at once would have us spin; treat it as failing.
                raise ApiUnavailable(
                    f"watch on lease {lock.lease} ended after {clock.monotonic() - opened_at:.3f}s",
                    lease=lock.lease,
                    verb="watch",
                )
        except WatchExpired:
            # Our resourceVersion left the server's window: a watch without one starts with
            # the Lease's current state (a synthetic ADDED), and needs no list permission.
            logger.debug("watch on lease %s expired; restarting from current state", lock.lease)
            resource_version = None
        except LeaseForbidden as exc:
            logger.warning(
                "cannot watch lease %s (%s); polling it every %gs instead",
                lock.lease,
                exc,
                timings.retry_period,
            )
            await poll_for(math.inf)
        except LeaseError as exc:
            delay = backoff.next(getattr(exc, "retry_after", None))
            if backoff.failures >= _WATCH_FAILURES_BEFORE_WARNING and not polling_announced:
                polling_announced = True
                logger.warning(
                    "watch on lease %s keeps failing (%s); polling until it recovers",
                    lock.lease,
                    exc,
                )
            else:
                logger.debug(
                    "watch on lease %s failed: %s; retrying in %.2fs", lock.lease, exc, delay
                )
            # Re-read at once (the watch may have missed a release), then poll while we wait.
            await poll_for(delay)
            resource_version = view.snapshot.resource_version if view.snapshot is not None else None
