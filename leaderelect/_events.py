"""Kubernetes Events on leadership changes: best-effort, in the background, never in the way.

client-go's resource locks record an Event when a candidate starts and stops leading (reason
``LeaderElection``, type ``Normal``, message ``"<identity> became leader"`` or ``"<identity>
stopped leading"``, about the Lease); operators look for them in ``kubectl get events``. With
``LeaderElector(..., events=True)`` we write the same, through the ``events.k8s.io/v1`` API
(:mod:`leaderelect._kube._events`).

An Event is a side note, never part of the election: each write runs as a task of a task group
the elector owns for the term (:meth:`LeadershipEvents.owned`), bounded by a timeout, and what
it raises is logged, not raised. The takeover and the release never wait for one; at the end of
a term the pending write gets at most its timeout to finish before it is cancelled. A 403 is
logged once, naming the RBAC permission missing (``create`` on ``events`` in the API group
``events.k8s.io``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import final

import anyio
from anyio.abc import TaskGroup

from ._kube._events import EVENTS_API_GROUP, EventNotWritten, LeaseEventWriter
from ._kube._lock import LeaseLock
from ._lease_client import LeaseSnapshot
from ._tasks import BackgroundTasks

__all__ = ["EVENT_CONTROLLER", "EVENT_REASON", "LeadershipEvents"]

logger = logging.getLogger("leaderelect.events")

EVENT_REASON = "LeaderElection"
"""The ``reason`` of every Event, as client-go's."""
EVENT_CONTROLLER = "leaderelect"
"""The ``reportingController`` of our Events."""


@final
class LeadershipEvents:
    """Writes the Events of one candidate's terms on ``lock``'s Lease.

    Args:
        lock: the Lease (its API client sends the Events).
        identity: the candidate's identity, which opens each message.
        timeout: seconds each write may take.
    """

    def __init__(self, lock: LeaseLock, *, identity: str, timeout: float) -> None:
        self._writer = LeaseEventWriter(lock, controller=EVENT_CONTROLLER)
        self._identity = identity
        self._timeout = timeout
        self._lease = lock.lease
        self._pending = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._forbidden_logged = False
        self._failing = False

    @contextlib.asynccontextmanager
    async def owned(self) -> AsyncIterator[TaskGroup]:
        """A task group for the writes of one term: on exit, pending writes get up to the
        timeout to finish (each write is shielded and bounded by it), then the group ends."""
        tasks = BackgroundTasks()
        group = await tasks.__aenter__()
        try:
            yield group
        finally:
            with anyio.move_on_after(self._timeout, shield=True):
                await self._idle.wait()
            await tasks.close()

    def became_leader(self, tasks: TaskGroup, lease: LeaseSnapshot) -> None:
        """Record ``"<identity> became leader"`` about ``lease``, in the background."""
        self._start(tasks, lease, "became leader", action="BecameLeader")

    def stopped_leading(self, tasks: TaskGroup, lease: LeaseSnapshot) -> None:
        """Record ``"<identity> stopped leading"`` about ``lease``, in the background."""
        self._start(tasks, lease, "stopped leading", action="StoppedLeading")

    def _start(self, tasks: TaskGroup, lease: LeaseSnapshot, what: str, *, action: str) -> None:
        try:
            body = self._writer.body(
                lease,
                type="Normal",
                reason=EVENT_REASON,
                action=action,
                note=f"{self._identity} {what}",
            )
        except Exception:  # never raise into the election
            logger.exception("cannot build the Event %r for lease %s", what, self._lease)
            return
        self._pending += 1
        self._idle = anyio.Event()
        tasks.start_soon(self._write, body, what)

    async def _write(self, body: dict[str, object], what: str) -> None:
        try:
            # Shielded, so that a term cancelled from outside still records its end; the
            # write's own timeout bounds it.
            with anyio.CancelScope(shield=True):
                await self._writer.create(body, timeout=self._timeout)
        except EventNotWritten as exc:
            self._failed(exc, what)
        except Exception:
            logger.exception("writing the Event %r for lease %s failed", what, self._lease)
        else:
            self._failing = False
            logger.debug("event %r recorded for lease %s", what, self._lease)
        finally:
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()

    def _failed(self, exc: EventNotWritten, what: str) -> None:
        if exc.status == 403:
            log = logger.debug if self._forbidden_logged else logger.warning
            self._forbidden_logged = True
            log(
                "cannot record Events for lease %s: the credentials may not create events "
                '(RBAC: verb "create" on resource "events" in API group "%s", namespace '
                '"%s"); leader election goes on without them: %s',
                self._lease,
                EVENTS_API_GROUP,
                self._writer.namespace,
                exc,
            )
            return
        log = logger.debug if self._failing else logger.warning
        self._failing = True
        log("could not record the Event %r for lease %s: %s", what, self._lease, exc)
