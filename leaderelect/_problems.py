"""The elector's own requests, watched for a problem that retrying does not cure.

An election retries every failed request, and should: RBAC can be granted, and a namespace
created, while it runs. But a misconfiguration then looks like a candidate that never leads.
:class:`ProblemWatch` sits between the elector and its :class:`LeaseClient` and remembers the
last *persistent* error of each kind of request (a read, a watch, a write), until the next
request of that kind gets through; ``LeaderElector.problem`` shows the latest of them.

Persistent: :class:`LeaseForbidden` (401/403), :class:`LeaseInvalid` (400/422, or an answer
that is not a Lease) and :class:`LeaseNotFound` from a read or a create (the namespace, or the
Lease API, is missing; an update's 404 means the Lease was deleted, and the create that
follows tells whether its namespace went with it). Transient errors (:class:`ApiUnavailable`,
:class:`WatchExpired`) leave the record as it is; a :class:`LeaseConflict` clears it, since the
server answers 409 only to a request it has authorized and admitted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import final

from ._errors import LeaseConflict, LeaseError, LeaseForbidden, LeaseInvalid, LeaseNotFound
from ._lease_client import LeaseClient, LeaseSnapshot, WatchEvent
from ._record import LeaseRecord

__all__ = ["ProblemWatch", "is_persistent"]


def is_persistent(exc: LeaseError) -> bool:
    """True for an error that retrying alone will not cure: a misconfiguration to report."""
    if isinstance(exc, (LeaseForbidden, LeaseInvalid)):
        return True
    return isinstance(exc, LeaseNotFound) and exc.verb != "update"


@final
class ProblemWatch:
    """A :class:`LeaseClient` that passes every request on and remembers persistent errors."""

    def __init__(self, inner: LeaseClient) -> None:
        self._inner = inner
        self._problems: dict[str, LeaseError] = {}  # by kind of request, the latest last

    @property
    def lease(self) -> str:
        """``"namespace/name"`` of the Lease."""
        return self._inner.lease

    @property
    def problem(self) -> LeaseError | None:
        """The latest persistent error whose kind of request has not succeeded since."""
        return next(reversed(self._problems.values()), None)

    def _failed(self, kind: str, exc: LeaseError) -> None:
        if is_persistent(exc):
            self._problems.pop(kind, None)
            self._problems[kind] = exc
        elif isinstance(exc, LeaseConflict):
            self._problems.pop(kind, None)

    def _succeeded(self, kind: str) -> None:
        self._problems.pop(kind, None)

    async def get(self, *, timeout: float) -> LeaseSnapshot | None:
        try:
            snapshot = await self._inner.get(timeout=timeout)
        except LeaseError as exc:
            self._failed("read", exc)
            raise
        self._succeeded("read")
        return snapshot

    async def create(self, record: LeaseRecord, *, timeout: float) -> LeaseSnapshot:
        try:
            created = await self._inner.create(record, timeout=timeout)
        except LeaseError as exc:
            self._failed("write", exc)
            raise
        self._succeeded("write")
        return created

    async def update(
        self,
        record: LeaseRecord,
        *,
        base: LeaseSnapshot,
        timeout: float,
    ) -> LeaseSnapshot:
        try:
            updated = await self._inner.update(record, base=base, timeout=timeout)
        except LeaseError as exc:
            self._failed("write", exc)
            raise
        self._succeeded("write")
        return updated

    def reserved(self) -> AbstractAsyncContextManager[None]:
        return self._inner.reserved()

    @contextlib.asynccontextmanager
    async def watch(
        self, *, resource_version: str | None, timeout_seconds: int
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                events = await stack.enter_async_context(
                    self._inner.watch(
                        resource_version=resource_version, timeout_seconds=timeout_seconds
                    )
                )
            except LeaseError as exc:
                self._failed("watch", exc)
                raise
            self._succeeded("watch")
            yield events
