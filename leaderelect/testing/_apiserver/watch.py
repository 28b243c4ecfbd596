"""Watch streams: initial events or history replay, then live events, bookmarks, timeout.

The snapshot (or replay) and the watcher's registration happen in one step on the event loop,
so no commit falls between them; afterwards the store's commit path feeds the watcher.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from aiohttp import web

from . import discovery
from .calls import (
    API_VERSION,
    Call,
    Form,
    Settings,
    include_object,
    int_param,
    lease_rv,
    negotiate,
    partial,
    query_resource_version,
    selection,
    validate_list_options,
    with_type_meta,
)
from .gojson import dumps
from .gotime import Instant
from .status import status_body
from .store import Expired, Store, Watcher

logger = logging.getLogger(__name__)

__all__ = ["WatchHandler", "error_event", "stream_response"]


class WatchHandler:
    """``GET ...?watch=1`` (and ``/watch/...``): newline-delimited JSON events."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        now: Callable[[], Instant],
        closing: asyncio.Event,
    ) -> None:
        self.store = store
        self.settings = settings
        self._now = now
        self._closing = closing

    async def watch(self, call: Call) -> web.StreamResponse:
        """A watch stream (newline-delimited JSON events)."""
        validate_list_options(call, watch=True)
        form = negotiate(call)
        wanted = query_resource_version(call)
        selected = selection(call)
        if call.name:
            by_selector = selected
            name = call.name

            def selected(lease: Mapping[str, Any]) -> bool:
                return lease["metadata"]["name"] == name and by_selector(lease)

        timeout = self._watch_timeout(call)
        bookmarks = call.param("allowWatchBookmarks").lower() in ("true", "1", "t")
        initial: bool | None = None
        if call.has("sendInitialEvents"):
            initial = call.param("sendInitialEvents").lower() in ("true", "1", "t")
        deadline = anyio.current_time() + timeout
        store = self.store
        # Snapshot and registration happen together, so no change falls between them.
        failure: dict[str, Any] | None = None
        if initial and bookmarks:
            # The real server runs on etcd 3.4, which lacks what streaming lists need.
            failure = status_body(
                500,
                "a watch stream was requested by the client but the required storage feature "
                "RequestWatchProgress is disabled",
                "InternalError",
            )
            start_rv, backlog = store.resource_version, []
        elif initial is not None:
            start_rv = max(store.resource_version, wanted or 0)
            items = store.items(call.namespace or None) if initial else []
            backlog = [("ADDED", i) for i in items if selected(i)]
        elif not wanted:
            start_rv = store.resource_version
            backlog = [("ADDED", i) for i in store.items(call.namespace or None) if selected(i)]
        elif wanted > store.resource_version:
            start_rv = wanted
            backlog = []
        else:
            start_rv = store.resource_version
            try:
                changes = store.changes_since(wanted)
            except Expired as exc:
                failure = status_body(410, str(exc), "Expired")
                changes = []
            probe = Watcher(selected, call.info, wanted)
            backlog = [e for e in (probe.translate(c) for c in changes) if e is not None]
        watcher = Watcher(selected, call.info, start_rv)
        if failure is None:
            store.add_watcher(watcher)
        response = stream_response()
        try:
            await response.prepare(call.request)
            if failure is not None:
                await response.write(error_event(failure))
                return response
            events = _EventWriter(response, form, include_object(call), self._now)
            for event_type, obj in backlog:
                await events.send(event_type, obj)
            await self._stream(watcher, events, deadline, bookmarks)
        except (ConnectionResetError, ConnectionError):
            logger.debug("watch client went away", extra={"user": call.user})
        finally:
            store.remove_watcher(watcher)
        return response

    def _watch_timeout(self, call: Call) -> float:
        seconds = int_param(call, "timeoutSeconds")
        if seconds > 0:
            return float(seconds)
        base = self.settings.min_request_timeout
        return base * (1.0 + random.random())

    def _next_bookmark(self, now: float, deadline: float) -> float | None:
        pre_timeout = deadline - self.settings.bookmark_before_timeout
        candidate = min(now + self.settings.bookmark_interval, pre_timeout)
        return candidate if candidate > now else None

    async def _stream(
        self, watcher: Watcher, events: _EventWriter, deadline: float, bookmarks: bool
    ) -> None:
        bookmark_at = self._next_bookmark(anyio.current_time(), deadline) if bookmarks else None
        while True:
            while watcher.queue:
                event_type, obj = watcher.queue.popleft()
                watcher.resource_version = lease_rv(obj)
                await events.send(event_type, obj)
            if watcher.closed or self._closing.is_set():
                return
            now = anyio.current_time()
            if now >= deadline:
                return
            if bookmark_at is not None and now >= bookmark_at:
                current = self.store.resource_version
                if current > watcher.resource_version:
                    watcher.resource_version = current
                    await events.response.write(_bookmark(current))
                bookmark_at = self._next_bookmark(now, deadline)
                continue
            wake = deadline if bookmark_at is None else min(deadline, bookmark_at)
            with anyio.move_on_after(max(wake - now, 0.0)):
                await watcher.wait()


class _EventWriter:
    """Writes watch events in the negotiated form (Lease, Table, PartialObjectMetadata)."""

    __slots__ = ("_first", "_form", "_now", "include_object", "response")

    def __init__(
        self,
        response: web.StreamResponse,
        form: Form,
        include: str,
        now: Callable[[], Instant],
    ) -> None:
        self.response = response
        self._form = form
        self.include_object = include
        self._now = now
        self._first = True

    async def send(self, event_type: str, obj: Mapping[str, Any]) -> None:
        body: Any
        if self._form.kind == "table":
            meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            body = discovery.lease_table(
                [obj],
                meta,
                self._now(),
                self._form.api_version,
                include=self.include_object,
                headers=self._first,
            )
        elif self._form.kind == "partial":
            body = partial(obj, self._form.api_version)
        else:
            body = with_type_meta(obj)
        self._first = False
        await self.response.write(dumps({"type": event_type, "object": body}).encode())


def stream_response() -> web.StreamResponse:
    """A watch stream's answer, not yet prepared: ``200``, JSON, chunked, not cached."""
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.headers["Cache-Control"] = "no-cache, private"
    response.enable_chunked_encoding()
    return response


def error_event(status: Mapping[str, Any]) -> bytes:
    """A watch ``ERROR`` event carrying a ``Status``."""
    return dumps({"type": "ERROR", "object": status}).encode()


def _bookmark(resource_version: int) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(resource_version)}
    obj = {"kind": "Lease", "apiVersion": API_VERSION, "metadata": meta, "spec": {}}
    return dumps({"type": "BOOKMARK", "object": obj}).encode()
