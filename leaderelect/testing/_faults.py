"""Faults the server injects into matching requests.

A fault is a small frozen dataclass saying *what* goes wrong (:class:`Latency`,
:class:`ErrorResponse`, :class:`Hang`, :class:`DropConnection`) and *to which requests*
(``user``, ``verb``, ``namespace``, ``name``, ``resource``; each a value, a collection of values,
or None for any), *when* (``"before"`` the request is handled, or ``"after"`` it was handled and
before the answer is sent, i.e. after a write committed) and *how often* (``times``; None for
every matching request).

:class:`FaultInjector` holds the active faults. The server consults it exactly twice per request,
at those two points; latencies add up and the first matching terminal fault decides the outcome::

    handle = server.faults.add(ErrorResponse(status=500, verb="update", times=1))
    with server.faults.add(Hang(user="elector")):      # removed on exit
        ...
    server.faults.add(DropConnection(verb="update"))   # commits, then closes without answer
    server.faults.cut_watches(user="elector")          # ends that user's open watches now
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Literal

import anyio

from ._requests import RequestInfo

__all__ = [
    "DropConnection",
    "ErrorResponse",
    "Fault",
    "FaultHandle",
    "FaultInjector",
    "Hang",
    "Latency",
    "When",
    "partition",
    "RawResponse",
    "StallWatch",
    "ExpireWatch",
    "deny_writes",
]

logger = logging.getLogger(__name__)

When = Literal["before", "after"]
Selector = str | Collection[str] | None


def _selected(value: str | None, selector: Selector) -> bool:
    if selector is None:
        return True
    if value is None:
        return False
    if isinstance(selector, str):
        return value == selector
    return value in selector


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """Which requests a fault applies to, when, and how many times.

    Attributes:
        user: user name(s) to match (None: any user).
        verb: Kubernetes verb(s) to match (``get``, ``update``, ``watch``...).
        namespace: namespace(s) to match.
        name: Lease name(s) to match.
        resource: resource(s) to match (``leases``; None also matches non-resource paths).
        times: apply to this many matching requests, then retire (None: no limit).
        when: ``"before"`` handling, or ``"after"`` handling (the write, if any, has committed).
    """

    user: Selector = None
    verb: Selector = None
    namespace: Selector = None
    name: Selector = None
    resource: Selector = None
    times: int | None = None
    when: When = "before"

    def matches(self, info: RequestInfo) -> bool:
        """True when the request is one this fault applies to."""
        return (
            _selected(info.user, self.user)
            and _selected(info.verb, self.verb)
            and _selected(info.namespace, self.namespace)
            and _selected(info.name, self.name)
            and _selected(info.resource, self.resource)
        )

    @property
    def terminal(self) -> bool:
        """True when the fault decides the request's outcome (all but latency)."""
        return True


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Latency(Fault):
    """Delay matching requests by ``seconds`` (several latencies add up)."""

    seconds: float

    @property
    def terminal(self) -> bool:
        """Latency only delays; the request goes on."""
        return False


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ErrorResponse(Fault):
    """Answer matching requests with a Kubernetes ``Status`` error instead.

    Attributes:
        status: the HTTP status.
        reason: the Status ``reason`` (default: Kubernetes' reason for ``status``).
        message: the Status ``message`` (default: a short injected-fault message).
        retry_after: seconds for a ``Retry-After`` header and ``details.retryAfterSeconds``.
    """

    status: int = 500
    reason: str | None = None
    message: str | None = None
    retry_after: int | None = None

    @property
    def effective_reason(self) -> str:
        """The reason the Status carries."""
        if self.reason is not None:
            return self.reason
        return _REASONS.get(self.status, "")

    @property
    def effective_message(self) -> str:
        """The message the Status carries."""
        if self.message is not None:
            return self.message
        return f"injected fault: {self.status} {self.effective_reason}".rstrip()


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Hang(Fault):
    """Never answer matching requests: they wait until the client gives up or the server stops.

    With ``when="after"`` a write commits first, then its answer never comes.
    """


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class DropConnection(Fault):
    """Close the connection without any answer.

    The default ``when="after"`` is a write that commits but whose answer is lost;
    ``when="before"`` refuses the request without handling it. Note that aiohttp (and so
    kubernetes_asyncio) sends an idempotent request (GET, PUT, DELETE) once more when its
    connection drops; limit the fault with ``times`` accordingly.
    """

    when: When = "after"


def partition(user: str, *, mode: Literal["hang", "drop"] = "hang") -> Fault:
    """A fault cutting ``user`` off: every request hangs (``"hang"``) or is dropped unanswered
    before it is handled (``"drop"``). Add it with :meth:`FaultInjector.add`."""
    if mode == "hang":
        return Hang(user=user)
    return DropConnection(user=user, when="before")


# -- faults served by ChaosApiServer (leaderelect.testing._chaos) ------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RawResponse(Fault):
    """Answer matching requests with exactly these bytes, valid or not.

    For what a validating server never sends by itself: a malformed Lease, a non-JSON error,
    an arbitrary status, a truncated or a slow body, a hand-written watch stream.

    Attributes:
        status: the HTTP status.
        body: the body, sent as is.
        content_type: the ``Content-Type`` header (``""`` for none).
        headers: extra ``(name, value)`` headers.
        pause: seconds to wait between the first half of the body and the rest (a slow body).
        truncate: announce the whole body's length, send its first half, then close the
            connection.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    pause: float = 0.0
    truncate: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StallWatch(Fault):
    """Open matching watch streams (``200``, headers sent) and then send nothing.

    The stream stays silent for ``seconds`` (None: until the fault is released, see
    ``ChaosApiServer.release``, or the server stops) and then ends, as a connection that
    stalled and later recovered. ``ChaosApiServer.stall_watches`` silences streams that are
    already open.
    """

    verb: Selector = "watch"
    seconds: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ExpireWatch(Fault):
    """Answer a watch that *resumes* from a resourceVersion with ``410 Expired``.

    As kube-apiserver does once the version left its watch cache: ``200``, then one ``ERROR``
    event carrying a ``Status`` with code 410. Watches without a resourceVersion (or with
    ``"0"``) are not affected.
    """

    verb: Selector = "watch"

    def matches(self, info: RequestInfo) -> bool:
        """A matching watch request that names a resourceVersion to resume from."""
        resume = info.query.get("resourceVersion", "")
        return Fault.matches(self, info) and resume not in ("", "0")


_WRITE_VERBS = ("create", "update", "patch", "delete")


def deny_writes(user: str, *, status: int = 403, times: int | None = None) -> ErrorResponse:
    """Refuse every write by ``user``, as an admission policy does (403) or validation (422).

    This is how a holder is fenced off in kube-apiserver's own tests: a
    ValidatingAdmissionPolicy denying the writes that would keep it the holder. Reads and
    watches still work, so the candidate sees everything and can change nothing.
    """
    if status == 422:
        message = (
            'Lease.coordination.k8s.io "lease" is invalid: spec.holderIdentity: '
            f"Forbidden: injected fault: writes by {user} are denied"
        )
    else:
        message = (
            'admission webhook "deny.leaderelect.test" denied the request: '
            f"injected fault: writes by {user} are denied"
        )
    return ErrorResponse(user=user, verb=_WRITE_VERBS, status=status, message=message, times=times)


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
        return self in self._injector._handles

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
    """The active faults of one server, consulted before and after each request is handled."""

    __slots__ = ("_cut_watches", "_handles")

    def __init__(self, cut_watches: Callable[[Callable[[RequestInfo], bool]], int]) -> None:
        self._handles: list[FaultHandle] = []
        self._cut_watches = cut_watches

    def add(self, fault: Fault) -> FaultHandle:
        """Start applying ``fault``; returns a handle to remove it.

        Raises:
            TypeError: ``fault`` is the bare :class:`Fault` base (which does nothing).
        """
        if type(fault) is Fault:
            raise TypeError(
                "add a Latency, ErrorResponse, Hang or DropConnection, not a bare Fault"
            )
        handle = FaultHandle(self, fault)
        self._handles.append(handle)
        logger.debug("fault added", extra={"fault": repr(fault)})
        return handle

    def remove(self, handle: FaultHandle) -> None:
        """Stop applying a fault (no-op when already removed)."""
        if handle in self._handles:
            self._handles.remove(handle)

    def clear(self) -> None:
        """Remove every fault."""
        self._handles.clear()

    @property
    def active(self) -> list[FaultHandle]:
        """The faults still applying, in the order they were added."""
        return list(self._handles)

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
        return self._cut_watches(probe.matches)

    async def consult(self, info: RequestInfo, when: When) -> Fault | None:
        """Apply matching latencies and return the terminal fault that decides, if any.

        Each matching fault counts one hit; a fault with ``times`` retires when used up.
        """
        delay = 0.0
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
            if isinstance(fault, Latency):
                delay += fault.seconds
            else:
                decided = fault
        if delay > 0:
            await anyio.sleep(delay)
        if decided is not None:
            logger.debug(
                "fault applied",
                extra={"fault": repr(decided), "verb": info.verb, "user": info.user},
            )
        return decided
