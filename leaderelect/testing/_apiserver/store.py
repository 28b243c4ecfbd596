"""Stored Leases, the cluster-wide resourceVersion, the bounded event history and watchers.

Every write goes through :meth:`Store.commit`, which runs without awaiting: it takes the next
resourceVersion, stores the object, appends the change to the history (the "watch cache"),
hands it to every watcher and records it in the write history, all in one step on the event
loop. The history is bounded; a watch or exact list older than its window is "too old" (410),
as on a real server once its watch cache has rolled over. :meth:`Store.compact` empties it on
demand.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .._requests import RequestInfo, WriteRecord

__all__ = ["Change", "Expired", "Store", "Watcher"]

logger = logging.getLogger(__name__)

Lease = dict[str, Any]
Key = tuple[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One committed change, as the watch cache keeps it.

    Attributes:
        type: ``ADDED``, ``MODIFIED`` or ``DELETED``.
        object: the object after (for ``DELETED``: its last state, at the deletion's version).
        previous: the object before (None for ``ADDED``).
        resource_version: the version the change committed at.
    """

    type: str
    object: Lease
    previous: Lease | None
    resource_version: int

    @property
    def key(self) -> Key:
        """``(namespace, name)``."""
        meta = self.object["metadata"]
        return (meta["namespace"], meta["name"])


class Expired(Exception):
    """The requested resourceVersion is older than the history window."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


def with_resource_version(obj: Lease, resource_version: int) -> Lease:
    """A copy of ``obj`` carrying ``resource_version``."""
    meta = dict(obj["metadata"])
    meta["resourceVersion"] = str(resource_version)
    out = dict(obj)
    out["metadata"] = _reorder_meta(meta)
    return out


_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
)


def _reorder_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    head = {k: meta[k] for k in _META_ORDER if k in meta}
    return {**head, **{k: v for k, v in meta.items() if k not in head}}


class Watcher:
    """One open watch: what it selects, what it was sent last, and its queue of events."""

    __slots__ = ("_wakeup", "closed", "info", "predicate", "queue", "resource_version")

    def __init__(
        self,
        predicate: Callable[[Lease], bool],
        info: RequestInfo,
        resource_version: int,
    ) -> None:
        self.predicate = predicate
        self.info = info
        self.resource_version = resource_version
        self.queue: collections.deque[tuple[str, Lease]] = collections.deque()
        self.closed = False
        self._wakeup = asyncio.Event()

    def translate(self, change: Change) -> tuple[str, Lease] | None:
        """The event this watcher sees for ``change`` (selectors can turn it into another type)."""
        now = change.type != "DELETED" and self.predicate(change.object)
        before = change.previous is not None and self.predicate(change.previous)
        if change.type == "DELETED":
            return ("DELETED", change.object) if before else None
        if now and before:
            return ("MODIFIED", change.object)
        if now:
            return ("ADDED", change.object)
        if before and change.previous is not None:
            return ("DELETED", with_resource_version(change.previous, change.resource_version))
        return None

    def offer(self, change: Change) -> None:
        """Queue the event for ``change``, if the watcher selects it and has not seen it."""
        if self.closed or change.resource_version <= self.resource_version:
            return
        event = self.translate(change)
        if event is not None:
            self.queue.append(event)
            self._wakeup.set()

    def close(self) -> None:
        """End the stream (the handler sends what is queued, then closes)."""
        self.closed = True
        self._wakeup.set()

    async def wait(self) -> None:
        """Wait until an event is queued or the watcher is closed."""
        await self._wakeup.wait()
        self._wakeup.clear()


class Store:
    """Leases by ``(namespace, name)``, namespaces, the history window and the watchers."""

    def __init__(
        self,
        *,
        namespaces: Iterable[str],
        history_size: int,
        wall_clock: Callable[[], datetime.datetime],
        monotonic: Callable[[], float],
    ) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        self.resource_version = 1
        self._namespaces: dict[str, Lease] = {}
        self._leases: dict[Key, Lease] = {}
        self._history: collections.deque[Change] = collections.deque(maxlen=history_size)
        self._window_start = self.resource_version
        self._watchers: set[Watcher] = set()
        self._changed = asyncio.Event()
        self.writes: list[WriteRecord] = []
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        created = _format_seconds(wall_clock())
        for name in namespaces:
            self.create_namespace(name, created, manager="kube-apiserver")

    # -- namespaces -----------------------------------------------------------------------

    def namespace_state(self, name: str) -> str | None:
        """``Active``, ``Terminating``, or None when the namespace does not exist."""
        namespace = self._namespaces.get(name)
        return None if namespace is None else str(namespace["status"]["phase"])

    def namespace_names(self) -> list[str]:
        """The namespaces, sorted."""
        return sorted(self._namespaces)

    def namespace_object(self, name: str) -> Lease:
        """The Namespace object (a copy)."""
        return copy.deepcopy(self._namespaces[name])

    def create_namespace(self, name: str, now: str, *, manager: str) -> None:
        """Create a namespace (it takes a resourceVersion, as in etcd)."""
        self.resource_version += 1
        label = "kubernetes.io/metadata.name"
        self._namespaces[name] = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(self.resource_version),
                "creationTimestamp": now,
                "labels": {label: name},
                "managedFields": [
                    {
                        "manager": manager,
                        "operation": "Update",
                        "apiVersion": "v1",
                        "time": now,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, f"f:{label}": {}}}},
                    }
                ],
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def terminate_namespace(self, name: str, now: str) -> None:
        """Mark a namespace Terminating (no namespace controller runs, so it stays so)."""
        namespace = self._namespaces[name]
        if namespace["status"]["phase"] == "Terminating":
            return
        self.resource_version += 1
        meta = dict(namespace["metadata"])
        meta["resourceVersion"] = str(self.resource_version)
        ordered = {k: meta[k] for k in ("name", "uid", "resourceVersion", "creationTimestamp")}
        ordered["deletionTimestamp"] = now
        ordered.update({k: v for k, v in meta.items() if k not in ordered})
        self._namespaces[name] = {
            **namespace,
            "metadata": ordered,
            "status": {"phase": "Terminating"},
        }

    # -- reads ----------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Lease | None:
        """The stored Lease (do not modify it), or None."""
        return self._leases.get((namespace, name))

    def items(self, namespace: str | None = None) -> list[Lease]:
        """Stored Leases in key order (all namespaces when ``namespace`` is None)."""
        keys = sorted(k for k in self._leases if namespace is None or k[0] == namespace)
        return [self._leases[k] for k in keys]

    def items_at(self, resource_version: int, namespace: str | None = None) -> list[Lease]:
        """The Leases as they were at ``resource_version``.

        Raises:
            Expired: the history no longer reaches back that far.
        """
        if resource_version >= self.resource_version:
            return self.items(namespace)
        if resource_version < self._window_start:
            raise Expired(resource_version, self._window_start)
        state = dict(self._leases)
        for change in reversed(self._history):
            if change.resource_version <= resource_version:
                break
            if change.previous is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.previous
        keys = sorted(k for k in state if namespace is None or k[0] == namespace)
        return [state[k] for k in keys]

    def changes_since(self, resource_version: int) -> list[Change]:
        """Changes after ``resource_version``, oldest first.

        Raises:
            Expired: the history no longer reaches back that far.
        """
        if resource_version < self._window_start:
            raise Expired(resource_version, self._window_start)
        return [c for c in self._history if c.resource_version > resource_version]

    @property
    def window_start(self) -> int:
        """The oldest resourceVersion a watch may still start from."""
        return self._window_start

    # -- writes ---------------------------------------------------------------------------

    def commit(
        self,
        namespace: str,
        name: str,
        obj: Lease | None,
        *,
        user: str,
        verb: str,
    ) -> Lease | None:
        """Store ``obj`` (None deletes) at the next resourceVersion; return what was stored.

        Runs without awaiting: the version, the stored object, the history, the watchers and
        the write history change together.
        """
        key = (namespace, name)
        previous = self._leases.get(key)
        self.resource_version += 1
        rv = self.resource_version
        if obj is None:
            if previous is None:
                raise KeyError(key)
            stored = None
            del self._leases[key]
            change = Change("DELETED", with_resource_version(previous, rv), previous, rv)
        else:
            stored = with_resource_version(obj, rv)
            self._leases[key] = stored
            change = Change("ADDED" if previous is None else "MODIFIED", stored, previous, rv)
        if len(self._history) == self._history.maxlen:
            self._window_start = self._history[0].resource_version
        self._history.append(change)
        for watcher in list(self._watchers):
            watcher.offer(change)
        self.writes.append(
            WriteRecord(
                time=self._monotonic(),
                timestamp=self._wall_clock(),
                user=user,
                verb=verb,
                namespace=namespace,
                name=name,
                resource_version_before=_rv(previous),
                resource_version_after=rv,
                holder_before=_holder(previous),
                holder_after=_holder(stored),
                lease_before=copy.deepcopy(previous),
                lease_after=copy.deepcopy(stored),
            )
        )
        logger.debug(
            "lease written",
            extra={"lease": f"{namespace}/{name}", "verb": verb, "user": user, "rv": rv},
        )
        self._changed.set()
        self._changed = asyncio.Event()
        return stored

    def next_resource_version(self) -> int:
        """Take the next resourceVersion for an object kept outside this store (an Event):
        one counter for the cluster, as in etcd."""
        self.resource_version += 1
        return self.resource_version

    def compact(self, resource_version: int | None = None) -> None:
        """Forget history up to ``resource_version`` (default: all of it)."""
        target = self.resource_version if resource_version is None else resource_version
        target = min(target, self.resource_version)
        while self._history and self._history[0].resource_version <= target:
            self._history.popleft()
        self._window_start = max(self._window_start, target)

    # -- watchers -------------------------------------------------------------------------

    def add_watcher(self, watcher: Watcher) -> None:
        """Start feeding a watcher from the commit path."""
        self._watchers.add(watcher)

    def remove_watcher(self, watcher: Watcher) -> None:
        """Stop feeding a watcher."""
        self._watchers.discard(watcher)

    def watchers(self) -> Iterator[Watcher]:
        """The open watchers."""
        return iter(list(self._watchers))

    def close_watchers(self, predicate: Callable[[RequestInfo], bool]) -> int:
        """Close the watchers whose request matches ``predicate``; return how many."""
        cut = 0
        for watcher in list(self._watchers):
            if not watcher.closed and predicate(watcher.info):
                watcher.close()
                cut += 1
        return cut

    def change_signal(self) -> asyncio.Event:
        """An event set by the next commit (take it, check the state, then wait on it)."""
        return self._changed

    async def wait_changed(self) -> None:
        """Wait for the next commit."""
        await self._changed.wait()


def _format_seconds(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rv(obj: Lease | None) -> int | None:
    if obj is None:
        return None
    return int(obj["metadata"]["resourceVersion"])


def _holder(obj: Lease | None) -> str | None:
    if obj is None:
        return None
    holder = (obj.get("spec") or {}).get("holderIdentity")
    return holder if isinstance(holder, str) else None
