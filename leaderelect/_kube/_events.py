"""Kubernetes Events about a Lease, written through the ``events.k8s.io/v1`` Events API.

An Event is built as client-go's event recorders build them: named ``<lease>.<unix nanos in
hex>``, in the Lease's namespace, ``regarding`` the Lease (kind, namespace, name, uid,
apiVersion, resourceVersion), with a ``reportingController``, a ``reportingInstance``
(``<controller>-<hostname>``), an ``eventTime`` with microseconds, a ``reason``, an ``action``,
a ``note`` and a ``type``. ``kubectl get events`` shows it like any other (the core ``v1``
Events API serves the same objects, with ``involvedObject`` for ``regarding`` and ``message``
for ``note``).

Only the write is here; when to write, in the background and best-effort, is decided in
:mod:`leaderelect._events`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, final

import aiohttp
import anyio
import kubernetes_asyncio.client
from kubernetes_asyncio.client.exceptions import OpenApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from .._lease_client import LeaseSnapshot
from ._errors import loads, snippet
from ._lock import LeaseLock

__all__ = ["EVENTS_API_GROUP", "EventNotWritten", "LeaseEventWriter"]

logger = logging.getLogger(__name__)

EVENTS_API_GROUP: Final = "events.k8s.io"
_API_VERSION = f"{EVENTS_API_GROUP}/v1"
_LEASE_API_VERSION = "coordination.k8s.io/v1"
_MAX_INSTANCE = 128  # the API server's limit on reportingInstance, action and reason
_MAX_NOTE = 1024
_REQUEST_FAILURES = (aiohttp.ClientError, OSError, OpenApiException, ConfigException)


class EventNotWritten(Exception):
    """An Event could not be written.

    Attributes:
        status: the HTTP status of the answer (0 when there was none).
        reason: the Kubernetes ``Status`` reason, if any (``Forbidden``, ``NotFound``, ...).
    """

    def __init__(self, message: str, *, status: int = 0, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@final
class LeaseEventWriter:
    """Writes Events regarding ``lock``'s Lease, reported by ``controller``.

    Args:
        lock: the Lease the Events are about; its API client sends them.
        controller: ``reportingController`` (a qualified name, e.g. ``leaderelect``).
    """

    def __init__(self, lock: LeaseLock, *, controller: str) -> None:
        self._lock = lock
        self.controller = controller
        self.instance = f"{controller}-{socket.gethostname()}"[:_MAX_INSTANCE]

    @property
    def namespace(self) -> str:
        """The namespace the Events are written in (the Lease's)."""
        return self._lock.namespace

    def body(
        self,
        lease: LeaseSnapshot,
        *,
        type: str,
        reason: str,
        action: str,
        note: str,
        now: datetime.datetime | None = None,
    ) -> dict[str, Any]:
        """The ``events.k8s.io/v1`` Event regarding ``lease``, as it is sent."""
        when = now if now is not None else datetime.datetime.now(datetime.timezone.utc)
        nanos = time.time_ns() if now is None else int(when.timestamp() * 1_000_000) * 1000
        return {
            "apiVersion": _API_VERSION,
            "kind": "Event",
            "metadata": {"name": f"{self._lock.name}.{nanos:x}", "namespace": self.namespace},
            "eventTime": _micro_time(when),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": action[:_MAX_INSTANCE],
            "reason": reason[:_MAX_INSTANCE],
            "regarding": {
                "kind": "Lease",
                "namespace": self.namespace,
                "name": self._lock.name,
                "uid": lease.uid,
                "apiVersion": _LEASE_API_VERSION,
                "resourceVersion": lease.resource_version,
            },
            "note": note[:_MAX_NOTE],
            "type": type,
        }

    async def create(self, body: dict[str, Any], *, timeout: float) -> None:  # noqa: ASYNC109
        """Create the Event ``body`` within ``timeout`` seconds.

        Raises:
            EventNotWritten: no answer in time, a connection error, or an answer that is not
                a success (the message quotes the server's).
        """
        api = kubernetes_asyncio.client.EventsV1Api(self._lock._api_client)
        send: Callable[..., Awaitable[Any]] = api.create_namespaced_event  # answers read raw
        try:
            with anyio.fail_after(timeout):
                response = await send(
                    self.namespace, body, _preload_content=False, _request_timeout=timeout
                )
                try:
                    raw = await response.read()
                finally:
                    response.release()
        except (TimeoutError, asyncio.TimeoutError):
            raise EventNotWritten(f"no answer within {timeout:g}s") from None
        except _REQUEST_FAILURES as exc:
            raise EventNotWritten(f"{type(exc).__name__}: {exc}") from exc
        status = int(response.status)
        if 200 <= status < 300:
            return
        answer = loads(raw)
        if isinstance(answer, dict) and isinstance(answer.get("message"), str):
            reason = answer.get("reason") if isinstance(answer.get("reason"), str) else None
            raise EventNotWritten(
                f"{status} {reason or ''}: {answer['message']}".replace("  ", " "),
                status=status,
                reason=reason,
            )
        raise EventNotWritten(f"HTTP {status}: {snippet(raw)!r}", status=status)


def _micro_time(when: datetime.datetime) -> str:
    """``metav1.MicroTime``: always six fractional digits, in UTC."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
