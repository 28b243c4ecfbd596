"""One watch request on one Lease (or a coordinated candidate's LeaseCandidate), read as a
stream of NDJSON events.

kubernetes_asyncio's own ``Watch`` would deserialise every object into its models; this reader
takes the raw chunked response instead, reassembles lines split across chunks, refuses a line
longer than any Lease can be, and bounds the whole stream by ``timeoutSeconds`` plus a grace
period, so that a stalled connection fails with :class:`~leaderelect.ApiUnavailable`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, final

import anyio

from .._errors import LeaseInvalid
from .._lease_client import WatchEvent, WatchEventType
from ._errors import loads, map_errors, snippet, status_error
from ._snapshot import snapshot_from_object

__all__ = ["LeaseWatch"]

logger = logging.getLogger(__name__)

# Seconds a watch may stay open beyond the timeoutSeconds it asked the server for; past that the
# stream is considered stalled and the watch fails with ApiUnavailable.
_WATCH_GRACE = 3.0
# A watch event longer than this is refused (etcd stores at most ~1.5 MiB per object).
_MAX_EVENT_BYTES = 8 * 1024 * 1024


@final
class LeaseWatch:
    """One watch request: an async context manager that is also the event iterator.

    Args:
        list_objects: the API's list method for the resource (``list_namespaced_lease``).
        name: the object's name; events about other objects are skipped.
        namespace: the Lease's namespace.
        resource_version: resume after this version; ``None`` starts from the current Lease.
        timeout_seconds: how long the server should keep the stream open (at least 1).
        ensure_open: called on entering; raises if the lock it belongs to is closed.
        resource: ``leases``, or ``leasecandidates`` (then snapshots carry an empty record).
    """

    def __init__(
        self,
        list_objects: Callable[..., Awaitable[Any]],
        name: str,
        namespace: str,
        *,
        resource_version: str | None,
        timeout_seconds: int,
        ensure_open: Callable[[], None],
        resource: str = "leases",
    ) -> None:
        self._list_objects = list_objects
        self._resource = resource
        self._name = name
        self._namespace = namespace
        self._lease = f"{namespace}/{name}"
        self._resource_version = resource_version
        self._timeout_seconds = timeout_seconds
        self._ensure_open = ensure_open
        self._bound = timeout_seconds + _WATCH_GRACE
        self._deadline = math.inf
        self._response: Any = None
        self._buffer = bytearray()
        self._scanned = 0
        self._entered = False
        self._finished = False

    async def __aenter__(self) -> AsyncIterator[WatchEvent]:
        if self._entered:
            raise RuntimeError(f"a watch of lease {self._lease} can be entered only once")
        self._entered = True
        self._ensure_open()
        self._deadline = anyio.current_time() + self._bound
        kwargs: dict[str, Any] = {
            "watch": "true",
            "field_selector": f"metadata.name={self._name}",
            "timeout_seconds": self._timeout_seconds,
            "_preload_content": False,
            "_request_timeout": self._bound,
        }
        if self._resource_version in (None, "", "0"):
            # Start from the current state, served by the watch cache ("0"): a watch with no
            # resourceVersion at all is a consistent read that kube-apiserver may hold for 3 s
            # and then fail with 504 "Too large resource version" when the newest etcd write
            # is not a Lease. No bookmarks here: with them, kube-apiserver (1.3x, WatchList)
            # serves a watch-list stream (sendInitialEvents), which fails with a 500 ERROR
            # event where etcd cannot answer progress requests.
            kwargs["resource_version"] = "0"
        else:
            kwargs["resource_version"] = self._resource_version
            kwargs["allow_watch_bookmarks"] = "true"
        try:
            with self._mapped_errors(), anyio.fail_after(self._bound):
                self._response = await self._list_objects(self._namespace, **kwargs)
                status = self._response.status
                body = b"" if status == 200 else await self._response.read()
        except BaseException:
            self._close()
            raise
        logger.debug(
            "watch lease %s from resourceVersion %s: HTTP %d",
            self._lease,
            self._resource_version,
            status,
            extra={"lease": self._lease, "verb": "watch", "status": status},
        )
        if status != 200:
            self._close()
            raise status_error(
                "watch",
                status,
                name=self._name,
                namespace=self._namespace,
                body=body,
                headers=self._response.headers,
                resource_version=self._resource_version,
                resource=self._resource,
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._close()

    def __aiter__(self) -> LeaseWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        if not self._entered:
            raise RuntimeError("iterate a watch inside its `async with` block")
        try:
            while not self._finished:
                line = await self._next_line()
                if line is None:
                    break
                if not line.strip():
                    continue
                event = self._event(line)
                if event is not None:
                    return event
        except BaseException:
            self._close()
            raise
        self._close()
        raise StopAsyncIteration

    def _close(self) -> None:
        self._finished = True
        if self._response is not None:
            self._response.close()

    def _mapped_errors(self) -> AbstractContextManager[None]:
        return map_errors(
            "watch",
            name=self._name,
            namespace=self._namespace,
            timeout=self._bound,
            resource=self._resource,
        )

    async def _next_line(self) -> bytes | None:
        """The next line of the stream (without its newline), or ``None`` at its end."""
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buffer)
            if self._scanned > _MAX_EVENT_BYTES:
                raise self._invalid(f"an event is longer than {_MAX_EVENT_BYTES} bytes")
            chunk = await self._read_chunk()
            if not chunk:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                self._scanned = 0
                return line
            self._buffer += chunk

    async def _read_chunk(self) -> bytes:
        with self._mapped_errors():
            with anyio.fail_after(max(0.0, self._deadline - anyio.current_time())):
                chunk: bytes = await self._response.content.readany()
                return chunk

    def _event(self, line: bytes) -> WatchEvent | None:
        """The event on one line; ``None`` for an event about another Lease."""
        data = loads(line)
        if not isinstance(data, Mapping):
            raise self._invalid(
                f"the server sent a line that is not a watch event: {snippet(line)!r}"
            )
        kind = data.get("type")
        obj = data.get("object")
        if kind == "ERROR":
            self._finished = True
            code = obj.get("code") if isinstance(obj, Mapping) else None
            if not isinstance(code, int) or isinstance(code, bool):
                code = 500  # an ERROR event without a code: the server failed the watch
            raise status_error(
                "watch",
                code,
                name=self._name,
                namespace=self._namespace,
                body=obj if isinstance(obj, Mapping) else None,
                resource_version=self._resource_version,
                resource=self._resource,
            )
        try:
            event_type = WatchEventType(kind)
        except ValueError:
            raise self._invalid(f"unknown watch event type {kind!r}") from None
        if not isinstance(obj, Mapping):
            raise self._invalid(f"the {kind} event carries no object")
        if event_type is WatchEventType.BOOKMARK:
            metadata = obj.get("metadata")
            version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
            if not isinstance(version, str) or not version:
                raise self._invalid("a BOOKMARK without metadata.resourceVersion")
            return WatchEvent(event_type, version, None)
        snapshot = snapshot_from_object(
            obj, status=None, verb="watch", lease=self._lease, resource=self._resource
        )
        metadata = snapshot.obj["metadata"]
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if (name is not None and name != self._name) or (
            namespace is not None and namespace != self._namespace
        ):
            logger.debug(
                "watch lease %s: skipped an event about %s/%s", self._lease, namespace, name
            )
            return None
        return WatchEvent(event_type, snapshot.resource_version, snapshot)

    def _invalid(self, problem: str) -> LeaseInvalid:
        """The error for a stream that is not a watch of this Lease."""
        return LeaseInvalid(
            f"watch lease {self._lease}: {problem}", lease=self._lease, verb="watch", status=200
        )
