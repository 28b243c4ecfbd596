"""Faults the server injects into matching requests.

A fault is a small frozen dataclass saying *what* goes wrong (:class:`Latency`,
:class:`ErrorResponse`, :class:`Hang`, :class:`DropConnection`, :class:`RawResponse`,
:class:`StallWatch`, :class:`ExpireWatch`) and *to which requests* (``user``, ``verb``,
``namespace``, ``name``, ``resource``; each a value, a collection of values, or None for any),
*when* (``"before"`` the request is handled, or ``"after"`` it was handled and before the answer
is sent, i.e. after a write committed) and *how often* (``times``; None for every matching
request).

Each kind says what it does in one method, :meth:`Fault.inflict`, which the server calls at its
one hook point with the request (an :class:`Exchange`); the
:class:`~leaderelect.testing.FaultInjector` decides which faults a request meets::

    handle = server.faults.add(ErrorResponse(status=500, verb="update", times=1))
    with server.faults.add(Hang(user="elector")):      # removed on exit
        ...
    server.faults.add(DropConnection(verb="update"))   # commits, then closes without answer
    server.faults.cut_watches(user="elector")          # ends that user's open watches now
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, Protocol

import anyio
from aiohttp import web

from ._apiserver.status import status_body
from ._apiserver.watch import error_event
from ._requests import RequestInfo

__all__ = [
    "DropConnection",
    "ErrorResponse",
    "Exchange",
    "ExpireWatch",
    "Fault",
    "Hang",
    "Latency",
    "RawResponse",
    "Selector",
    "StallWatch",
    "When",
    "deny_writes",
    "partition",
]

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


class Exchange(Protocol):
    """One request at the server's fault hook, and what a fault can do with it."""

    @property
    def request(self) -> web.Request:
        """The aiohttp request."""
        ...

    @property
    def info(self) -> RequestInfo:
        """The request as the server parsed it."""
        ...

    @property
    def resource_version(self) -> int:
        """The server's current resourceVersion."""
        ...

    def answer(
        self, status: int, body: bytes | Mapping[str, Any], headers: Sequence[tuple[str, str]]
    ) -> web.StreamResponse:
        """Answer as the server answers anything (rendering, headers); the answer is counted."""
        ...

    async def open_stream(self) -> web.StreamResponse:
        """Send a watch stream's head (``200``, chunked JSON) and return the open stream."""
        ...

    def answered(self, status: int) -> None:
        """Count an answer the fault sent by itself."""
        ...

    async def hold(self, fault: Fault, seconds: float | None = None) -> None:
        """Wait until ``fault`` is released, the server stops, or ``seconds`` pass."""
        ...

    def drop(self) -> web.StreamResponse:
        """Close the connection without an answer."""
        ...


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

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Do to a matching request what the fault says; the server calls it at its one hook.

        Returns:
            the answer the request gets instead of the server's (already sent, or to send),
            or None to let the request go on.
        """
        raise TypeError(f"{type(self).__name__} is not a fault kind: it does nothing")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Latency(Fault):
    """Delay matching requests by ``seconds`` (several latencies add up)."""

    seconds: float

    @property
    def terminal(self) -> bool:
        """Latency only delays; the request goes on."""
        return False

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Wait ``seconds``, then let the request go on."""
        if self.seconds > 0:
            await anyio.sleep(self.seconds)
        return None


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

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Answer with the ``Status`` error."""
        headers: list[tuple[str, str]] = []
        details: dict[str, Any] | None = None
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
            details = {"retryAfterSeconds": self.retry_after}
        body = status_body(
            self.status, self.effective_message, self.effective_reason, details=details
        )
        return exchange.answer(self.status, body, headers)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Hang(Fault):
    """Never answer matching requests: they wait until the client gives up or the server stops.

    With ``when="after"`` a write commits first, then its answer never comes.
    :meth:`FaultInjector.release <leaderelect.testing.FaultInjector.release>` ends the held
    requests early by dropping their connections, as a healed network resets a stale one.
    """

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Hold the request until released or the server stops, then drop the connection."""
        await exchange.hold(self)
        return exchange.drop()


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class DropConnection(Fault):
    """Close the connection without any answer.

    The default ``when="after"`` is a write that commits but whose answer is lost;
    ``when="before"`` refuses the request without handling it. Note that aiohttp (and so
    kubernetes_asyncio) sends an idempotent request (GET, PUT, DELETE) once more when its
    connection drops; limit the fault with ``times`` accordingly.
    """

    when: When = "after"

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Drop the connection."""
        return exchange.drop()


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

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Send the bytes (slowly, or only half of them, if asked)."""
        body = self.body
        response = web.StreamResponse(status=self.status)
        if self.content_type:
            response.headers["Content-Type"] = self.content_type
        for key, value in self.headers:
            response.headers.add(key, value)
        response.content_length = len(body)
        await response.prepare(exchange.request)
        split = len(body) // 2 if (self.pause or self.truncate) else len(body)
        await response.write(body[:split])
        if self.truncate:
            exchange.drop()
            return response
        if self.pause:
            await anyio.sleep(self.pause)
        await response.write(body[split:])
        await response.write_eof()
        exchange.answered(self.status)
        return response


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StallWatch(Fault):
    """Open matching watch streams (``200``, headers sent) and then send nothing.

    The stream stays silent for ``seconds`` (None: until the fault is released with
    :meth:`FaultInjector.release <leaderelect.testing.FaultInjector.release>`, or the server
    stops) and then ends, as a connection that stalled and later recovered.
    :meth:`FaultInjector.stall_watches <leaderelect.testing.FaultInjector.stall_watches>`
    silences streams that are already open.
    """

    verb: Selector = "watch"
    seconds: float | None = None

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Open the stream, stay silent, then end it."""
        response = await exchange.open_stream()
        exchange.answered(200)
        await exchange.hold(self, self.seconds)
        await response.write_eof()
        return response


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

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        """Open the stream, send the ``410 Expired`` ERROR event, end it."""
        wanted = exchange.info.query.get("resourceVersion", "")
        status = status_body(
            410,
            f"too old resource version: {wanted} ({exchange.resource_version})",
            "Expired",
        )
        response = await exchange.open_stream()
        await response.write(error_event(status))
        await response.write_eof()
        exchange.answered(200)
        return response


def partition(user: str, *, mode: Literal["hang", "drop"] = "hang") -> Fault:
    """A fault cutting ``user`` off: every request hangs (``"hang"``) or is dropped unanswered
    before it is handled (``"drop"``). Add it with :meth:`FaultInjector.add
    <leaderelect.testing.FaultInjector.add>`."""
    if mode == "hang":
        return Hang(user=user)
    return DropConnection(user=user, when="before")


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
