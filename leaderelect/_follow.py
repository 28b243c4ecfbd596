"""Keeping a ``LeaseView`` current: one GET, then a watch on this single Lease.

The watch is resumed from the last resourceVersion, so followers make no steady-state
requests at all. While the watch is failing the view is polled (a GET every jittered
``retry_period``), and for good when RBAC forbids watching; ``watch=False`` polls like
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
