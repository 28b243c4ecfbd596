"""The seam between the election and an API server: one Lease, four verbs, plain values.

The elector, the view and the term know Kubernetes only through :class:`LeaseClient`;
:class:`leaderelect.LeaseLock` (in ``_kube/``) is its one implementation, over
kubernetes_asyncio. Every answer is a fresh :class:`LeaseSnapshot`, and every write states
its own precondition, so the client holds no election state.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ._record import LeaseRecord

__all__ = ["CandidateClient", "LeaseClient", "LeaseSnapshot", "WatchEvent", "WatchEventType"]


@dataclass(frozen=True, slots=True)
class LeaseSnapshot:
    """One stored version of the Lease, as the server returned it."""

    record: LeaseRecord
    """The leader-election record read from ``obj["spec"]`` (never raises; see ``problems``)."""
    resource_version: str
    """``metadata.resourceVersion``: the precondition for the next update."""
    uid: str
    """``metadata.uid``: changes when the Lease is deleted and created again."""
    obj: Mapping[str, Any]
    """The whole Lease JSON as returned (metadata, labels, annotations, spec). Do not mutate."""


class WatchEventType(enum.Enum):
    """The type of a watch event."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch on the Lease."""

    type: WatchEventType
    """What happened."""
    resource_version: str
    """The resourceVersion to resume a later watch from."""
    snapshot: LeaseSnapshot | None
    """The Lease after the event (its last state for DELETED); ``None`` for BOOKMARK."""


class LeaseClient(Protocol):
    """The internal seam between the elector and one Lease on an API server.

    Every method is bounded by the timeout it is given and raises only
    :class:`~leaderelect.LeaseError` subclasses for API and transport failures.
    """

    @property
    def lease(self) -> str:
        """``"namespace/name"`` of the Lease, for log lines and errors."""
        ...

    async def get(self, *, timeout: float) -> LeaseSnapshot | None:
        """Read the Lease; ``None`` when it does not exist.

        Raises:
            LeaseNotFound: the namespace does not exist (when the server says so).
        """
        ...

    async def create(self, record: LeaseRecord, *, timeout: float) -> LeaseSnapshot:
        """Create the Lease holding ``record``.

        Raises:
            LeaseConflict: the Lease already exists.
        """
        ...

    async def update(
        self,
        record: LeaseRecord,
        *,
        base: LeaseSnapshot,
        timeout: float,
    ) -> LeaseSnapshot:
        """Replace the Lease's spec with ``record``, only if it is still at ``base``.

        Raises:
            LeaseConflict: the Lease changed (or was deleted) since ``base`` was read.
            LeaseNotFound: the namespace does not exist.
        """
        ...

    def reserved(self) -> AbstractAsyncContextManager[None]:
        """While the block runs, requests use connections reserved for the election, so that
        they never queue behind anyone else's (an application sharing the API client)."""
        ...

    def watch(
        self, *, resource_version: str | None, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Watch the Lease from ``resource_version`` until the server ends the stream.

        Raises:
            WatchExpired: ``resource_version`` is too old (410); re-read, then re-watch.
        """
        ...


class CandidateClient(Protocol):
    """The seam between a coordinated candidate and its own LeaseCandidate (KEP-4355).

    Snapshots carry the LeaseCandidate in ``obj`` and an empty ``record``. Every method is
    bounded by the timeout it is given and raises only :class:`~leaderelect.LeaseError`
    subclasses; a server without the LeaseCandidate API answers :class:`LeaseNotFound`.
    """

    @property
    def candidate(self) -> str:
        """``"namespace/name"`` of the LeaseCandidate, for log lines and errors."""
        ...

    async def get(self, *, timeout: float) -> LeaseSnapshot | None:
        """Read it; ``None`` when it does not exist."""
        ...

    async def create(self, spec: Mapping[str, Any], *, timeout: float) -> LeaseSnapshot:
        """Create it with ``spec``."""
        ...

    async def update(
        self, spec: Mapping[str, Any], *, base: LeaseSnapshot, timeout: float
    ) -> LeaseSnapshot:
        """Replace its spec, only if it is still at ``base``."""
        ...

    async def delete(self, *, timeout: float) -> None:
        """Delete it; nothing when it is already gone."""
        ...

    def watch(
        self, *, resource_version: str | None, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Watch it from ``resource_version`` until the server ends the stream."""
        ...
