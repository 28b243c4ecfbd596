"""Keeping a ``LeaseView`` current: one GET, then a watch on this single Lease.

The watch is resumed from the last resourceVersion, so followers make no steady-state
requests at all. While the watch is failing, or RBAC forbids watching, the view is polled (a
GET every jittered ``retry_period``) and the watch tried again; a watch that stays open but
says nothing for longer than the Lease gives it is replaced. ``watch=False`` polls like
client-go.
"""

from __future__ import annotations

import logging
import math
import random

import anyio
from anyio.abc import TaskStatus

from ._backoff import Backoff, jittered
from ._clock import Clock
from ._config import Timings
from ._errors import ApiUnavailable, LeaseError, LeaseForbidden, WatchExpired
from ._lease_client import LeaseClient, WatchEventType
from ._view import LeaseView

__all__ = ["follow"]

logger = logging.getLogger(__name__)

# A watch asks the server to end it after this long, jittered so that many followers do not
# reconnect together; reconnecting resumes from the last resourceVersion and costs one request.
_WATCH_SECONDS = (240, 300)
# A watch that ends sooner than this, with nothing wrong said, counts as a failure.
_SHORTEST_WATCH = 1.0
# Consecutive watch failures after which we say, once, that we are polling until it recovers.
_WATCH_FAILURES_BEFORE_WARNING = 3


def _silence_bound(view: LeaseView, timings: Timings, quiet: int) -> float:
    """How long a watch may say nothing before it is replaced.

    A holder writes every retry_period, so a held Lease that is silent for a whole lease
    duration has either lost its holder (a campaign then writes, and learns the truth) or a
    dead watch. A free or absent Lease may rightly stay silent: it gets four lease durations.
    Each replacement that a re-read shows was right to be quiet doubles the bound, up to the
    watch's own timeout, so a quiet Lease costs a follower almost nothing.
    """
    if view.holder is None:
        base = 4 * timings.lease_duration
    else:
        base = view.expires_at(timings.lease_duration) - view.changed_at
    return float(min(base * 2.0**quiet, _WATCH_SECONDS[1]))


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
        view.update(snapshot, clock.monotonic(), authoritative=True)
        if not started:
            started = True
            task_status.started()
        return True

    async def poll_for(seconds: float) -> None:
        """GET now and then every jittered retry_period, for ``seconds``."""
        until = clock.monotonic() + seconds
        while True:
            if not view.fed_by_our_writes:
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

    forbidden_announced = False
    quiet = 0  # consecutive silent watches that a re-read showed nothing new for
    while True:
        opened_at = clock.monotonic()
        silence = anyio.CancelScope(
            deadline=anyio.current_time() + _silence_bound(view, timings, quiet)
        )
        try:
            with silence:
                async with lock.watch(
                    resource_version=resource_version,
                    timeout_seconds=rng.randint(*_WATCH_SECONDS),
                ) as events:

                    def alive(_: object, silence: anyio.CancelScope = silence) -> None:
                        # Any accepted observation (an event, a read after a 409) moves the
                        # bound, computed from what the view now shows.
                        silence.deadline = anyio.current_time() + _silence_bound(
                            view, timings, quiet=0
                        )

                    remove_listener = view.add_listener(alive)
                    try:
                        async for event in events:
                            alive(None)  # bookmarks are signs of life too
                            resource_version = event.resource_version
                            if event.type is WatchEventType.BOOKMARK:
                                continue
                            quiet = 0
                            if backoff.failures or forbidden_announced:
                                logger.info("watch on lease %s recovered", lock.lease)
                                backoff.reset()
                                polling_announced = forbidden_announced = False
                            if event.type is WatchEventType.DELETED:
                                view.update(
                                    None,
                                    clock.monotonic(),
                                    version=event.resource_version,
                                    last=event.snapshot,
                                )
                            else:
                                view.update(event.snapshot, clock.monotonic())
                    finally:
                        remove_listener()
            if silence.cancelled_caught:
                # A watch can stay open and say nothing (a half-open connection, a stuck
                # proxy): re-read, which catches a missed release, and watch again.
                before = view.snapshot.resource_version if view.snapshot is not None else None
                logger.info(
                    "watch on lease %s said nothing for %.0fs; replacing it",
                    lock.lease,
                    clock.monotonic() - opened_at,
                )
                await read()
                after = view.snapshot.resource_version if view.snapshot is not None else None
                quiet = quiet + 1 if before == after else 0
                resource_version = after
                continue
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
            # RBAC can be fixed while we run: poll for a while, then try watching again.
            level = logging.DEBUG if forbidden_announced else logging.WARNING
            forbidden_announced = True
            logger.log(
                level,
                "cannot watch lease %s (%s); polling it every %gs, and trying to watch again "
                "every %gs",
                lock.lease,
                exc,
                timings.retry_period,
                timings.lease_duration,
            )
            await poll_for(jittered(timings.lease_duration, rng))
            resource_version = view.snapshot.resource_version if view.snapshot is not None else None
        except LeaseError as exc:
            delay = backoff.next(exc.retry_after)
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
