"""The fault injector: which faults a request meets, and the requests and streams they hold.

The server consults :class:`FaultInjector` exactly twice per request, before it is handled and
after (the write, if any, has committed), and calls :meth:`Fault.inflict
<leaderelect.testing.Fault.inflict>` on each fault it returns: every matching latency, then the
first matching fault that decides the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import math
from types import TracebackType

import anyio

from ._apiserver.store import Store, Watcher
from ._faults import Fault, Selector, When
from ._requests import RequestInfo

__all__ = ["FaultHandle", "FaultInjector"]

logger = logging.getLogger(__name__)


class FaultHandle:
    """An added fault: how often it fired, and a way to remove it (also as a ``with`` block)."""

    __slots__ = ("_hit", "_injector", "fault", "hits")

    def __init__(self, injector: FaultInjector, fault: Fault) -> None:
        self._injector = injector
        self.fault = fault
        self.hits = 0
        self._hit = asyncio.Event()

    def _record_hit(self) -> None:
        self.hits += 1
        self._hit.set()
        self._hit = asyncio.Event()

    async def wait_hits(self, count: int = 1) -> None:
        """Wait until the fault has been applied ``count`` times in all (no polling)."""
        while self.hits < count:
            await self._hit.wait()

    @property
    def active(self) -> bool:
        """True while the fault still applies to new requests."""
        return self in self._injector.active

    def remove(self) -> None:
        """Stop applying the fault (no-op when already retired)."""
        self._injector.remove(self)

    def __enter__(self) -> FaultHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<FaultHandle {self.fault!r} hits={self.hits} active={self.active}>"


class FaultInjector:
    """The active faults of one server, consulted before and after each request is handled.

    It also ends what faults hold: :meth:`release` lets go of requests held by a
    :class:`~leaderelect.testing.Hang` or a :class:`~leaderelect.testing.StallWatch`, and
    :meth:`cut_watches`, :meth:`stall_watches` and :meth:`resume_watches` act on watch streams
    that are already open.
    """

    __slots__ = ("_closing", "_handles", "_held", "_stalled", "_store")

    def __init__(self, store: Store, closing: asyncio.Event) -> None:
        self._handles: list[FaultHandle] = []
        self._store = store
        self._closing = closing
        # Keyed by id(); the fault is kept so that its id cannot be reused. A released fault's
        # event stays set: a request it caught but had not begun holding is let go at once.
        self._held: dict[int, tuple[Fault, asyncio.Event]] = {}
        self._stalled: list[Watcher] = []

    def add(self, fault: Fault) -> FaultHandle:
        """Start applying ``fault``; returns a handle to remove it.

        Raises:
            TypeError: ``fault`` is the bare :class:`~leaderelect.testing.Fault` base (which
                does nothing).
        """
        if type(fault) is Fault:
            raise TypeError("add a fault kind (Latency, ErrorResponse, Hang...), not a bare Fault")
        handle = FaultHandle(self, fault)
        self._handles.append(handle)
        logger.debug("fault added", extra={"fault": repr(fault)})
        return handle

    def remove(self, handle: FaultHandle) -> None:
        """Stop applying a fault (no-op when already removed).

        Requests it already holds stay held until :meth:`release`.
        """
        if handle in self._handles:
            self._handles.remove(handle)

    def clear(self) -> None:
        """Remove every fault."""
        self._handles.clear()

    @property
    def active(self) -> list[FaultHandle]:
        """The faults still applying, in the order they were added."""
        return list(self._handles)

    def release(self, fault: Fault | None = None) -> None:
        """End the requests held by ``fault`` (a ``Hang`` or ``StallWatch``), or by every fault.

        Hung requests lose their connection, as a healed network resets a stale one; stalled
        watch streams end, and their clients resume from the last version they saw. Requests
        the fault catches later are let go at once (remove it to stop that). Without ``fault``,
        the streams :meth:`stall_watches` silenced end too.
        """
        if fault is None:
            for _, event in self._held.values():
                event.set()
            self.resume_watches()
            return
        self._held.setdefault(id(fault), (fault, asyncio.Event()))[1].set()

    async def hold(self, fault: Fault, seconds: float | None = None) -> None:
        """Wait until ``fault`` is released, the server stops, or ``seconds`` pass."""
        _, event = self._held.setdefault(id(fault), (fault, asyncio.Event()))
        if self._closing.is_set():
            return
        with anyio.move_on_after(math.inf if seconds is None else seconds):
            await event.wait()

    def cut_watches(
        self,
        *,
        user: Selector = None,
        namespace: Selector = None,
        name: Selector = None,
    ) -> int:
        """End the matching open watch streams now (the client sees the stream close).

        Returns:
            how many streams were cut.
        """
        probe = Fault(user=user, namespace=namespace, name=name)
        return self._store.close_watchers(probe.matches)

    def stall_watches(
        self,
        *,
        user: Selector = None,
        namespace: Selector = None,
        name: Selector = None,
    ) -> int:
        """Silence the matching open watch streams: they stay open and receive nothing.

        Returns:
            how many streams were silenced. :meth:`resume_watches` (or :meth:`release`
            without a fault) ends them.
        """
        probe = Fault(user=user, namespace=namespace, name=name)
        silenced = 0
        for watcher in self._store.watchers():
            if not watcher.closed and probe.matches(watcher.info):
                self._store.remove_watcher(watcher)
                self._stalled.append(watcher)
                silenced += 1
        return silenced

    def resume_watches(self, *, user: Selector = None) -> int:
        """End the streams :meth:`stall_watches` silenced (of ``user``, or all).

        Their clients resume from the last version they saw and get what they missed.

        Returns:
            how many streams ended.
        """
        probe = Fault(user=user)
        ended = 0
        for watcher in list(self._stalled):
            if probe.matches(watcher.info):
                self._stalled.remove(watcher)
                watcher.close()
                ended += 1
        return ended

    def consult(self, info: RequestInfo, when: When) -> list[Fault]:
        """The faults a request meets at ``when``: the matching latencies (and other faults that
        let it go on), then the first matching fault that decides its outcome, if any.

        Each counts one hit; a fault with ``times`` retires when used up.
        """
        going_on: list[Fault] = []
        decided: Fault | None = None
        for handle in list(self._handles):
            fault = handle.fault
            if fault.when != when or not fault.matches(info):
                continue
            if fault.terminal and decided is not None:
                continue
            handle._record_hit()
            if fault.times is not None and handle.hits >= fault.times:
                self.remove(handle)
            if fault.terminal:
                decided = fault
            else:
                going_on.append(fault)
        if decided is None:
            return going_on
        logger.debug(
            "fault applied",
            extra={"fault": repr(decided), "verb": info.verb, "user": info.user},
        )
        return [*going_on, decided]
