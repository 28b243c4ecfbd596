"""The only place leaderelect talks to Kubernetes.

Everything the elector needs from the API server goes through the small :class:`LeaseClient`
protocol: read the Lease, create it, replace it under a resourceVersion precondition, and watch
it. :class:`LeaseLock` implements it with kubernetes_asyncio's ``CoordinationV1Api``.

Requests are sent as plain JSON dicts we build ourselves, and answers are read raw
(``_preload_content=False``) and parsed here: kubernetes_asyncio's models would format a
``MicroTime`` without its fraction when ``microsecond == 0`` (the server answers 400), and would
crash deserialising a Lease someone else wrote badly. Every kubernetes_asyncio and aiohttp failure
is translated into the :mod:`leaderelect._errors` tree by one function,
:meth:`LeaseLock._map_error`.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, final

import aiohttp
import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.config
from kubernetes_asyncio.client.exceptions import ApiException, OpenApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from ._errors import (
    ApiUnavailable,
    ConfigError,
    LeaseConflict,
    LeaseError,
    LeaseForbidden,
    LeaseInvalid,
    LeaseNotFound,
    WatchExpired,
)
from ._record import LeaseRecord, record_from_spec, spec_from_record

__all__ = [
    "LeaseClient",
    "LeaseLock",
    "LeaseSnapshot",
    "WatchEvent",
    "WatchEventType",
]

logger = logging.getLogger(__name__)

_API_VERSION = "coordination.k8s.io/v1"
_API_GROUP = "coordination.k8s.io"
_RESOURCE = "leases"

# Seconds a watch may stay open beyond the timeoutSeconds it asked the server for; past that the
# stream is considered stalled and the watch fails with ApiUnavailable.
_WATCH_GRACE = 3.0
# A watch event longer than this is refused (etcd stores at most ~1.5 MiB per object).
_MAX_EVENT_BYTES = 8 * 1024 * 1024
# How much of a body that is not a Kubernetes Status is quoted in an error message.
_SNIPPET = 200

_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_DEFAULT_KUBECONFIG = "~/.kube/config"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# kube-apiserver's RBAC denial: `... is forbidden: User "reader" cannot update resource "leases"`.
_RBAC_DENIAL = re.compile(r'cannot [a-z]+ resource "')
_DENIED_USER = re.compile(r'User "((?:[^"\\]|\\.)*)"')


# --------------------------------------------------------------------------------------------
# The seam
# --------------------------------------------------------------------------------------------


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

    async def get(self, *, timeout: float) -> LeaseSnapshot | None:  # noqa: ASYNC109
        """Read the Lease; ``None`` when it does not exist.

        Raises:
            LeaseNotFound: the namespace does not exist (when the server says so).
        """
        ...

    async def create(self, record: LeaseRecord, *, timeout: float) -> LeaseSnapshot:  # noqa: ASYNC109
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
        timeout: float,  # noqa: ASYNC109
    ) -> LeaseSnapshot:
        """Replace the Lease's spec with ``record``, only if it is still at ``base``.

        Raises:
            LeaseConflict: the Lease changed (or was deleted) since ``base`` was read.
            LeaseNotFound: the namespace does not exist.
        """
        ...

    def watch(
        self, *, resource_version: str | None, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Watch the Lease from ``resource_version`` until the server ends the stream.

        Raises:
            WatchExpired: ``resource_version`` is too old (410); re-read, then re-watch.
        """
        ...


# --------------------------------------------------------------------------------------------
# LeaseLock
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]


_Send = Callable[[], Awaitable[Any]]


@final
class LeaseLock:
    """A ``coordination.k8s.io/v1`` Lease reached through kubernetes_asyncio.

    The lock is stateless: every call states its own precondition, and every answer is a fresh
    :class:`LeaseSnapshot`.

    Args:
        api_client: the kubernetes_asyncio client to send requests with. The lock does not
            close it; use :meth:`from_kubeconfig` or :meth:`in_cluster` for a lock that owns
            its client.
        name: the Lease's name (an RFC 1123 subdomain).
        namespace: the Lease's namespace (an RFC 1123 label).

    Raises:
        ConfigError: ``name`` or ``namespace`` is not a valid Kubernetes name.

    Example:
        ```python
        async with await LeaseLock.from_kubeconfig("billing", "ops") as lock:
            elector = LeaderElector(lock, identity=pod_name)
        ```
    """

    name: str
    """The Lease's name."""
    namespace: str
    """The Lease's namespace."""

    def __init__(
        self,
        api_client: kubernetes_asyncio.client.ApiClient,
        name: str,
        namespace: str = "default",
    ) -> None:
        _validate_name(name)
        _validate_namespace(namespace)
        self.name = name
        self.namespace = namespace
        self._api_client = api_client
        self._api = kubernetes_asyncio.client.CoordinationV1Api(api_client)
        self._owns_client = False
        self._closed = False

    @classmethod
    async def from_kubeconfig(
        cls,
        name: str,
        namespace: str | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> LeaseLock:
        """Build a lock, and the API client it owns, from a kubeconfig file.

        Args:
            name: the Lease's name.
            namespace: the Lease's namespace; by default the context's namespace, else
                ``"default"``.
            config_file: the kubeconfig; by default ``$KUBECONFIG``, else ``~/.kube/config``.
            context: the kubeconfig context to use; by default its current context.

        Returns:
            A lock that closes its API client in :meth:`aclose`.

        Raises:
            ConfigError: a name is invalid, or the kubeconfig cannot be loaded.
        """
        _validate_name(name)
        if namespace is not None:
            _validate_namespace(namespace)
        if config_file is not None:
            path = os.fspath(config_file)
        else:
            path = os.environ.get("KUBECONFIG") or _DEFAULT_KUBECONFIG
        existing = await anyio.to_thread.run_sync(_existing_files, path)
        if not existing:
            raise ConfigError(f"config_file: no kubeconfig found at {path!r}")
        configuration = kubernetes_asyncio.client.Configuration()
        try:
            loader = await kubernetes_asyncio.config.load_kube_config(
                config_file=os.pathsep.join(existing),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except Exception as exc:  # anything the loader throws means the file is unusable
            which = f"context {context!r} of " if context is not None else ""
            raise ConfigError(
                f"config_file: cannot load {which}kubeconfig {path!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if namespace is None:
            namespace = _context_namespace(loader.current_context) or "default"
            _validate_namespace(namespace)
        return await cls._owning(configuration, name, namespace)

    @classmethod
    async def in_cluster(cls, name: str, namespace: str | None = None) -> LeaseLock:
        """Build a lock, and the API client it owns, from the pod's service account.

        Args:
            name: the Lease's name.
            namespace: the Lease's namespace; by default the pod's own namespace, read from
                ``/var/run/secrets/kubernetes.io/serviceaccount/namespace``.

        Returns:
            A lock that closes its API client in :meth:`aclose`.

        Raises:
            ConfigError: a name is invalid, or the process is not running in a pod.
        """
        _validate_name(name)
        if namespace is not None:
            _validate_namespace(namespace)
        account = _SERVICE_ACCOUNT_DIR
        configuration = kubernetes_asyncio.client.Configuration()
        try:
            await anyio.to_thread.run_sync(
                lambda: kubernetes_asyncio.config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration,
                    token_filename=str(account / "token"),
                    cert_filename=str(account / "ca.crt"),
                )
            )
        except (ConfigException, OSError) as exc:
            raise ConfigError(
                f"in_cluster: cannot load the service-account config from {str(account)!r}: {exc}"
            ) from exc
        if namespace is None:
            namespace_file = anyio.Path(account / "namespace")
            try:
                namespace = (await namespace_file.read_text()).strip()
            except OSError as exc:
                raise ConfigError(
                    f"namespace: not given, and {str(namespace_file)!r} cannot be read: {exc}"
                ) from exc
            _validate_namespace(namespace)
        return await cls._owning(configuration, name, namespace)

    @classmethod
    async def _owning(cls, configuration: Any, name: str, namespace: str) -> LeaseLock:
        from . import __version__

        api_client = kubernetes_asyncio.client.ApiClient(configuration)
        api_client.user_agent = f"leaderelect/{__version__}"
        try:
            lock = cls(api_client, name, namespace)
        except BaseException:
            await api_client.close()
            raise
        lock._owns_client = True
        return lock

    @property
    def lease(self) -> str:
        """``"namespace/name"`` of the Lease."""
        return f"{self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return f"LeaseLock(name={self.name!r}, namespace={self.namespace!r})"

    async def aclose(self) -> None:
        """Close the lock; closes its API client only if the lock created it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._api_client.close()

    async def __aenter__(self) -> LeaseLock:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------- the verbs

    async def get(self, *, timeout: float) -> LeaseSnapshot | None:  # noqa: ASYNC109
        """Read the Lease.

        Args:
            timeout: seconds to wait for the whole answer.

        Returns:
            The Lease, or ``None`` when it does not exist.

        Raises:
            LeaseNotFound: the server says the namespace does not exist.
            LeaseForbidden: the credentials may not ``get`` leases here.
            ApiUnavailable: no answer in time, a connection error, 429 or 5xx.
            LeaseError: any other failure, or an answer that is not a Lease.
        """
        reply = await self._send(
            "get",
            timeout,
            lambda: self._api.read_namespaced_lease(
                self.name,
                self.namespace,
                _preload_content=False,
                _request_timeout=timeout,
            ),
            missing_ok=True,
        )
        if reply.status == 404:
            return None
        return self._snapshot("get", reply)

    async def create(self, record: LeaseRecord, *, timeout: float) -> LeaseSnapshot:  # noqa: ASYNC109
        """Create the Lease holding ``record``.

        Args:
            record: the leader-election record to store.
            timeout: seconds to wait for the whole answer.

        Returns:
            The Lease as created.

        Raises:
            LeaseConflict: the Lease already exists.
            LeaseNotFound: the namespace does not exist.
            LeaseForbidden: the credentials may not ``create`` leases here.
            LeaseInvalid: the server rejected the record.
            ApiUnavailable: no answer in time, a connection error, 429 or 5xx. The write
                may still have been applied: read the Lease again before deciding.
        """
        body = {
            "apiVersion": _API_VERSION,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec_from_record(record),
        }
        reply = await self._send(
            "create",
            timeout,
            lambda: self._api.create_namespaced_lease(
                self.namespace,
                body,  # type: ignore[arg-type]  # a plain dict on purpose (module docstring)
                _preload_content=False,
                _request_timeout=timeout,
            ),
        )
        return self._snapshot("create", reply)

    async def update(
        self,
        record: LeaseRecord,
        *,
        base: LeaseSnapshot,
        timeout: float,  # noqa: ASYNC109
    ) -> LeaseSnapshot:
        """Replace the Lease's spec with ``record``, only if the Lease is still at ``base``.

        The whole ``base.obj`` is sent back (labels, annotations and other metadata kept) with
        its spec replaced and ``metadata.resourceVersion`` set to ``base.resource_version``.
        Because ``metadata.uid`` goes back too, a Lease deleted since ``base`` was read is not
        silently created again: the server answers 409.

        Args:
            record: the leader-election record to store.
            base: the snapshot this write is based on.
            timeout: seconds to wait for the whole answer.

        Returns:
            The Lease as updated.

        Raises:
            LeaseConflict: the Lease changed, or was deleted, since ``base`` was read.
            LeaseNotFound: the namespace does not exist.
            LeaseForbidden: the credentials may not ``update`` leases here.
            LeaseInvalid: the server rejected the record.
            ApiUnavailable: no answer in time, a connection error, 429 or 5xx. The write
                may still have been applied: read the Lease again before deciding.
        """
        body = copy.deepcopy(dict(base.obj))
        metadata = dict(body.get("metadata") or {})
        metadata["name"] = self.name
        metadata["namespace"] = self.namespace
        metadata["resourceVersion"] = base.resource_version
        body["apiVersion"] = _API_VERSION
        body["kind"] = "Lease"
        body["metadata"] = metadata
        body["spec"] = spec_from_record(record)
        reply = await self._send(
            "update",
            timeout,
            lambda: self._api.replace_namespaced_lease(
                self.name,
                self.namespace,
                body,  # type: ignore[arg-type]  # a plain dict on purpose (module docstring)
                _preload_content=False,
                _request_timeout=timeout,
            ),
            resource_version=base.resource_version,
        )
        return self._snapshot("update", reply)

    def watch(
        self, *, resource_version: str | None, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Watch this Lease only, resumed from ``resource_version``.

        The iterator ends when the server closes the stream, which it does after
        ``timeout_seconds``; if it has not after ``timeout_seconds`` plus a few seconds, the
        stream is taken as stalled. Leaving the context always closes the HTTP response.

        Bookmarks are asked for when resuming from ``resource_version``; without one (a
        plain watch that starts with the current Lease) they are not, because kube-apiserver
        would then serve a watch-list stream instead.

        Args:
            resource_version: resume after this version; ``None`` starts with an ``ADDED``
                event for the current Lease, if there is one.
            timeout_seconds: how long the server should keep the stream open (at least 1).

        Returns:
            An async context manager whose value iterates the events.

        Raises:
            WatchExpired: ``resource_version`` is too old (410); re-read, then re-watch.
            ApiUnavailable: the stream stalled, broke, or the server is unavailable.
            LeaseInvalid: the server sent something that is not a watch event.
            LeaseError: the server ended the watch with another error.
        """
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int):
            raise TypeError(f"timeout_seconds must be an int, got {timeout_seconds!r}")
        if timeout_seconds < 1:
            raise ValueError(f"timeout_seconds must be at least 1, got {timeout_seconds}")
        return _LeaseWatch(self, resource_version, timeout_seconds)

    # ---------------------------------------------------------------------------- plumbing

    async def _send(
        self,
        verb: str,
        timeout: float,  # noqa: ASYNC109
        send: _Send,
        *,
        missing_ok: bool = False,
        resource_version: str | None = None,
    ) -> _Reply:
        """Send one request and read its whole answer within ``timeout`` seconds.

        Returns the 2xx answer, or with ``missing_ok`` also a 404 saying this Lease is missing;
        raises the mapped error for anything else.
        """
        self._check_usable(timeout)
        try:
            with anyio.fail_after(timeout):
                response = await send()
                try:
                    body = await response.read()
                except BaseException:
                    response.close()
                    raise
                response.release()
            reply = _Reply(response.status, body, response.headers)
        except (
            TimeoutError,
            asyncio.TimeoutError,
            aiohttp.ClientError,
            OSError,
            OpenApiException,
            ConfigException,
        ) as exc:
            raise self._map_error(verb, cause=exc, timeout=timeout) from exc
        logger.debug(
            "%s lease %s: HTTP %d",
            verb,
            self.lease,
            reply.status,
            extra={"lease": self.lease, "verb": verb, "status": reply.status},
        )
        if 200 <= reply.status < 300:
            return reply
        if missing_ok and reply.status == 404 and _is_lease_404(reply.body):
            return reply
        raise self._map_error(
            verb,
            status=reply.status,
            body=reply.body,
            headers=reply.headers,
            resource_version=resource_version,
        )

    def _check_usable(self, timeout: float) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

    def _snapshot(self, verb: str, reply: _Reply | Mapping[str, Any]) -> LeaseSnapshot:
        """The snapshot of a Lease the server sent (a 2xx body, or a watch event's object)."""
        if isinstance(reply, _Reply):
            status: int | None = reply.status
            obj = _loads(reply.body)
            if obj is _NOT_JSON:
                raise LeaseInvalid(
                    f"{verb} lease {self.lease}: the answer (HTTP {reply.status}) is not JSON: "
                    f"{_snippet(reply.body)!r}",
                    lease=self.lease,
                    verb=verb,
                    status=status,
                )
        else:
            status = None
            obj = reply
        problem = _lease_object_problem(obj)
        if problem is not None:
            raise LeaseInvalid(
                f"{verb} lease {self.lease}: the answer is not a usable Lease: {problem}",
                lease=self.lease,
                verb=verb,
                status=status,
            )
        metadata = obj["metadata"]
        return LeaseSnapshot(
            record=record_from_spec(obj.get("spec")),
            resource_version=metadata["resourceVersion"],
            uid=metadata["uid"],
            obj=obj,
        )

    def _map_error(
        self,
        verb: str,
        *,
        status: int | None = None,
        body: bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        cause: BaseException | None = None,
        timeout: float | None = None,
        resource_version: str | None = None,
    ) -> LeaseError:
        """Translate a failed request into the error tree: the only place this is done.

        Args:
            verb: the Kubernetes verb we were doing (``get``, ``create``, ``update``, ``watch``).
            status: the HTTP status of the answer, or the ``code`` of a watch ERROR event.
            body: the raw answer, or the ``Status`` object of a watch ERROR event.
            headers: the answer's headers (``Retry-After``).
            cause: the exception raised instead of an answer.
            timeout: the bound that ``cause`` may have hit, in seconds.
            resource_version: the resourceVersion the request was based on, if any.
        """
        lease = self.lease
        what = f"{verb} lease {lease}"

        if cause is not None:
            if isinstance(cause, ApiException) and cause.status:
                raw = cause.body.encode() if isinstance(cause.body, str) else cause.body
                return self._map_error(
                    verb,
                    status=cause.status,
                    body=raw if isinstance(raw, bytes) else None,
                    headers=cause.headers,
                    resource_version=resource_version,
                )
            if isinstance(cause, (TimeoutError, asyncio.TimeoutError)):
                within = f" within {timeout:.2f}s" if timeout is not None else " in time"
                return ApiUnavailable(f"{what}: no answer{within}", lease=lease, verb=verb)
            if isinstance(cause, ConfigException):
                return ApiUnavailable(
                    f"{what}: cannot load the credentials: {cause}", lease=lease, verb=verb
                )
            return ApiUnavailable(
                f"{what}: cannot reach the API server: {type(cause).__name__}: {cause}",
                lease=lease,
                verb=verb,
            )

        code = status if status is not None else 0
        parsed: object = body if isinstance(body, Mapping) else _loads(body or b"")
        kube_status = parsed if isinstance(parsed, Mapping) and _looks_like_status(parsed) else None
        message: str | None = None
        reason: str | None = None
        details: Mapping[str, Any] = {}
        if kube_status is not None:
            if isinstance(kube_status.get("message"), str) and kube_status["message"]:
                message = kube_status["message"]
            if isinstance(kube_status.get("reason"), str) and kube_status["reason"]:
                reason = kube_status["reason"]
            if isinstance(kube_status.get("details"), Mapping):
                details = kube_status["details"]
            said = f": {message}" if message else ""
        elif isinstance(body, bytes) and body:
            said = f": the body is not a Kubernetes Status: {_snippet(body)!r}"
        else:
            said = ""
        label = f"{code} {reason}" if reason else f"HTTP {code}" if code else "no status"

        def fail(kind: type[LeaseError], text: str) -> LeaseError:
            return kind(text, lease=lease, verb=verb, status=status, reason=reason)

        if code == 401:
            return fail(
                LeaseForbidden,
                f"{what} unauthorized: the API server rejected the credentials (401)",
            )
        if code == 403:
            if message is not None and not _RBAC_DENIAL.search(message):
                # Admission (webhook, ValidatingAdmissionPolicy), quota, or a terminating
                # namespace: not a missing permission, so do not send anyone to fix RBAC.
                return fail(LeaseForbidden, f"{what} forbidden by the API server ({label}){said}")
            user_match = _DENIED_USER.search(message or "")
            who = f'User "{user_match.group(1)}"' if user_match else "the caller"
            return fail(
                LeaseForbidden,
                f'{what} forbidden: {who} lacks RBAC verb "{verb}" on resource "{_RESOURCE}" '
                f'(API group "{_API_GROUP}") in namespace "{self.namespace}"'
                + (f"; the API server said: {message}" if message else said),
            )
        if code == 404:
            if details.get("kind") == "namespaces":
                return fail(
                    LeaseNotFound, f'{what}: namespace "{self.namespace}" does not exist ({label})'
                )
            return fail(LeaseNotFound, f"{what}: not found ({label}){said}")
        if code == 409:
            if verb == "create":
                return fail(LeaseConflict, f"{what}: the lease already exists ({label})")
            if message is not None and "Precondition failed: UID" in message:
                return fail(
                    LeaseConflict,
                    f"{what}: the lease was deleted (or replaced) since it was read ({label})",
                )
            stale = f"resourceVersion {resource_version} is stale" if resource_version else ""
            return fail(LeaseConflict, f"{what}: {stale or 'conflict'} ({label}){said}")
        if code == 410:
            since = f" (resourceVersion {resource_version})" if resource_version else ""
            return fail(WatchExpired, f"{what}: the watch expired{since} ({label}){said}")
        if code in (408, 429) or code >= 500 or code == 0:
            retry_after = _retry_after(headers, details)
            hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            return ApiUnavailable(
                f"{what}: the API server is unavailable ({label}){said}{hint}",
                lease=lease,
                verb=verb,
                status=status,
                reason=reason,
                retry_after=retry_after,
            )
        # 400 and 422 (the request was rejected), and anything unexpected (3xx, 405, 415...).
        return fail(LeaseInvalid, f"{what}: the API server rejected the request ({label}){said}")


# --------------------------------------------------------------------------------------------
# The watch stream
# --------------------------------------------------------------------------------------------


@final
class _LeaseWatch:
    """One watch request: an async context manager that is also the event iterator."""

    def __init__(self, lock: LeaseLock, resource_version: str | None, timeout_seconds: int):
        self._lock = lock
        self._resource_version = resource_version
        self._timeout_seconds = timeout_seconds
        self._bound = timeout_seconds + _WATCH_GRACE
        self._deadline = math.inf
        self._response: Any = None
        self._buffer = bytearray()
        self._scanned = 0
        self._entered = False
        self._finished = False

    async def __aenter__(self) -> AsyncIterator[WatchEvent]:
        if self._entered:
            raise RuntimeError(f"a watch of lease {self._lock.lease} can be entered only once")
        self._entered = True
        lock = self._lock
        lock._check_usable(self._bound)
        self._deadline = anyio.current_time() + self._bound
        kwargs: dict[str, Any] = {
            "watch": "true",
            "field_selector": f"metadata.name={lock.name}",
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
            with anyio.fail_after(self._bound):
                self._response = await lock._api.list_namespaced_lease(lock.namespace, **kwargs)
                status = self._response.status
                body = b"" if status == 200 else await self._response.read()
        except (
            TimeoutError,
            asyncio.TimeoutError,
            aiohttp.ClientError,
            OSError,
            OpenApiException,
            ConfigException,
        ) as exc:
            self._close()
            raise lock._map_error("watch", cause=exc, timeout=self._bound) from exc
        except BaseException:
            self._close()
            raise
        logger.debug(
            "watch lease %s from resourceVersion %s: HTTP %d",
            lock.lease,
            self._resource_version,
            status,
            extra={"lease": lock.lease, "verb": "watch", "status": status},
        )
        if status != 200:
            self._close()
            raise lock._map_error(
                "watch",
                status=status,
                body=body,
                headers=self._response.headers,
                resource_version=self._resource_version,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    def __aiter__(self) -> _LeaseWatch:
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
                raise LeaseInvalid(
                    f"watch lease {self._lock.lease}: an event is longer than "
                    f"{_MAX_EVENT_BYTES} bytes",
                    lease=self._lock.lease,
                    verb="watch",
                    status=200,
                )
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
        try:
            with anyio.fail_after(max(0.0, self._deadline - anyio.current_time())):
                chunk: bytes = await self._response.content.readany()
                return chunk
        except (TimeoutError, asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._lock._map_error("watch", cause=exc, timeout=self._bound) from exc

    def _event(self, line: bytes) -> WatchEvent | None:
        """The event on one line; ``None`` for an event about another Lease."""
        lock = self._lock
        data = _loads(line)
        if not isinstance(data, Mapping):
            raise LeaseInvalid(
                f"watch lease {lock.lease}: the server sent a line that is not a watch event: "
                f"{_snippet(line)!r}",
                lease=lock.lease,
                verb="watch",
                status=200,
            )
        kind = data.get("type")
        obj = data.get("object")
        if kind == "ERROR":
            self._finished = True
            code = obj.get("code") if isinstance(obj, Mapping) else None
            if not isinstance(code, int) or isinstance(code, bool):
                code = 500  # an ERROR event without a code: the server failed the watch
            raise lock._map_error(
                "watch",
                status=code,
                body=obj if isinstance(obj, Mapping) else None,
                resource_version=self._resource_version,
            )
        try:
            event_type = WatchEventType(kind)
        except ValueError:
            raise LeaseInvalid(
                f"watch lease {lock.lease}: unknown watch event type {kind!r}",
                lease=lock.lease,
                verb="watch",
                status=200,
            ) from None
        if not isinstance(obj, Mapping):
            raise LeaseInvalid(
                f"watch lease {lock.lease}: the {kind} event carries no object",
                lease=lock.lease,
                verb="watch",
                status=200,
            )
        if event_type is WatchEventType.BOOKMARK:
            metadata = obj.get("metadata")
            version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
            if not isinstance(version, str) or not version:
                raise LeaseInvalid(
                    f"watch lease {lock.lease}: a BOOKMARK without metadata.resourceVersion",
                    lease=lock.lease,
                    verb="watch",
                    status=200,
                )
            return WatchEvent(event_type, version, None)
        snapshot = lock._snapshot("watch", obj)
        metadata = snapshot.obj["metadata"]
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if (name is not None and name != lock.name) or (
            namespace is not None and namespace != lock.namespace
        ):
            logger.debug(
                "watch lease %s: skipped an event about %s/%s", lock.lease, namespace, name
            )
            return None
        return WatchEvent(event_type, snapshot.resource_version, snapshot)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class _NotJson:
    pass


_NOT_JSON: Any = _NotJson()


def _loads(raw: bytes) -> Any:
    """Decode JSON, or return ``_NOT_JSON``."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _snippet(raw: bytes) -> str:
    return raw[: _SNIPPET * 4].decode("utf-8", "replace")[:_SNIPPET]


def _looks_like_status(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Status" or (
        "kind" not in obj and ("message" in obj or "reason" in obj or "code" in obj)
    )


def _is_lease_404(body: bytes) -> bool:
    """True when a 404 says this Lease is missing (not its namespace, nor the Lease API)."""
    parsed = _loads(body)
    if not isinstance(parsed, Mapping):
        return False
    details = parsed.get("details")
    return isinstance(details, Mapping) and details.get("kind") == _RESOURCE


def _lease_object_problem(obj: object) -> str | None:
    if not isinstance(obj, Mapping):
        return f"expected a JSON object, got {type(obj).__name__}"
    kind = obj.get("kind")
    if kind is not None and kind != "Lease":
        return f"kind is {kind!r}"
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return "metadata is missing"
    for field in ("resourceVersion", "uid"):
        value = metadata.get(field)
        if not isinstance(value, str) or not value:
            return f"metadata.{field} is missing"
    return None


def _retry_after(headers: Mapping[str, str] | None, details: Mapping[str, Any]) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds) or the Status's ``retryAfterSeconds``."""
    candidates: list[object] = []
    if headers is not None:
        candidates.append(headers.get("Retry-After"))
    candidates.append(details.get("retryAfterSeconds"))
    for value in candidates:
        if isinstance(value, bool) or value is None:
            continue
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue  # an HTTP-date: we only read delays
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _existing_files(paths: str) -> list[str]:
    """The files of a ``KUBECONFIG``-style path list that exist."""
    return [p for p in paths.split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]


def _context_namespace(context: object) -> str | None:
    if not isinstance(context, Mapping):
        return None
    body = context.get("context")
    if not isinstance(body, Mapping):
        return None
    namespace = body.get("namespace")
    return namespace if isinstance(namespace, str) and namespace else None


def _validate_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ConfigError(
            f"name {name!r} is not a valid Lease name: it must be a lowercase RFC 1123 subdomain "
            "(at most 253 characters of a-z, 0-9, '-' and '.', starting and ending with a "
            "letter or digit)"
        )


def _validate_namespace(namespace: object) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise ConfigError(f"namespace must be a non-empty string, got {namespace!r}")
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise ConfigError(
            f"namespace {namespace!r} is not a valid namespace: it must be a lowercase RFC 1123 "
            "label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a "
            "letter or digit)"
        )
