"""LeaseLock: the :class:`~leaderelect._lease_client.LeaseClient` over kubernetes_asyncio.

Requests are sent as plain JSON dicts we build ourselves, and answers are read raw
(``_preload_content=False``) and parsed in ``_snapshot.py``: kubernetes_asyncio's models would
format a ``MicroTime`` without its fraction when ``microsecond == 0`` (the server answers 400),
and would crash deserialising a Lease someone else wrote badly. Failures become the
:mod:`leaderelect._errors` tree in ``_errors.py``; the watch stream is read in ``_watch.py``;
kubeconfig and service-account loading is in ``_connect.py``, and the credentials a lock
owns are kept fresh by ``_credentials.py``: a 401 reloads them and sends the request once more.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, final

import anyio
import kubernetes_asyncio.client

from .._errors import LeaseForbidden
from .._lease_client import LeaseSnapshot, WatchEvent
from .._record import LeaseRecord, spec_from_record
from ._connect import Connection, connect, load_in_cluster, load_kubeconfig, pod_namespace
from ._credentials import Credentials
from ._errors import is_lease_404, map_errors, status_error
from ._names import validate_name, validate_namespace
from ._snapshot import snapshot_from_body
from ._watch import LeaseWatch

__all__ = ["LeaseLock"]

logger = logging.getLogger(__name__)

_API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]


@final
class LeaseLock:
    """A ``coordination.k8s.io/v1`` Lease reached through kubernetes_asyncio.

    The lock is stateless: every call states its own precondition, and every answer is a fresh
    :class:`LeaseSnapshot`.

    Args:
        api_client: the kubernetes_asyncio client to send requests with. The lock does not
            close it, nor refresh its credentials; use :meth:`connect` for a lock that owns
            its client and keeps its credentials fresh.
        name: the Lease's name (an RFC 1123 subdomain).
        namespace: the Lease's namespace (an RFC 1123 label).

    Raises:
        ConfigError: ``name`` or ``namespace`` is not a valid Kubernetes name.

    Example:
        ```python
        async with await LeaseLock.connect("billing", "ops") as lock:
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
        validate_name(name)
        validate_namespace(namespace)
        self.name = name
        self.namespace = namespace
        self._api_client = api_client
        self._shared_api = kubernetes_asyncio.client.CoordinationV1Api(api_client)
        self._reserved_client: kubernetes_asyncio.client.ApiClient | None = None
        self._reserved_api: kubernetes_asyncio.client.CoordinationV1Api | None = None
        self._reservations = 0
        self._owns_client = False
        self._credentials: Credentials | None = None
        self._closed = False

    @classmethod
    async def connect(
        cls,
        name: str,
        namespace: str | None = None,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> LeaseLock:
        """Build a lock, and the API client it owns, from wherever this process finds its
        cluster: the one way to connect, inside a pod or outside.

        The configuration is looked for in controller-runtime's (and kubectl's) order:

        1. ``kubeconfig``, when given;
        2. else ``$KUBECONFIG``, when set (a list of paths, as kubectl reads it);
        3. else the pod's service account, when running in a pod (``$KUBERNETES_SERVICE_HOST``
           is set) and no ``context`` is asked for; a service account that cannot be loaded
           falls through to the next step;
        4. else ``~/.kube/config``.

        The lock keeps the credentials it loaded fresh: tokens from an exec plugin (EKS,
        GKE's ``gke-gcloud-auth-plugin``, ``kubelogin``), an OIDC or GCP auth-provider are
        refreshed before they expire, a service-account token (which the kubelet rotates) is
        read again every minute, and a request answered 401 reloads them and is sent once more
        before it fails.

        Args:
            name: the Lease's name.
            namespace: the Lease's namespace; by default the kubeconfig context's namespace
                (else ``"default"``), or in a pod its own namespace.
            kubeconfig: a kubeconfig file to use instead of looking for one.
            context: the kubeconfig context to use; by default its current context.

        Returns:
            A lock that closes its API client in :meth:`aclose`.

        Raises:
            ConfigError: a name is invalid, or the configuration found cannot be loaded, or
                none was found; the message says what was tried.

        Example:
            ```python
            async with await LeaseLock.connect("my-controller") as lock:
                elector = LeaderElector(lock)
            ```
        """
        return await cls._connect(name, namespace, kubeconfig=kubeconfig, context=context)

    @classmethod
    async def _connect(
        cls,
        name: str,
        namespace: str | None,
        *,
        kubeconfig: str | os.PathLike[str] | None,
        context: str | None,
        give: str = "pass kubeconfig=...",
    ) -> LeaseLock:
        """:meth:`connect`; ``give`` says how messages name an explicit kubeconfig."""
        validate_name(name)
        if namespace is not None:
            validate_namespace(namespace)
        connection = await connect(kubeconfig, context, give=give)
        if namespace is None:
            namespace = (
                await pod_namespace()
                if connection.in_cluster
                else connection.namespace or "default"
            )
            validate_namespace(namespace)
        return await cls._owning(connection, name, namespace)

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

        Its credentials are kept fresh as :meth:`connect` describes. Prefer :meth:`connect`,
        which also works in a pod.

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
        validate_name(name)
        if namespace is not None:
            validate_namespace(namespace)
        connection = await load_kubeconfig(config_file, context)
        if namespace is None:
            namespace = connection.namespace or "default"
            validate_namespace(namespace)
        return await cls._owning(connection, name, namespace)

    @classmethod
    async def in_cluster(cls, name: str, namespace: str | None = None) -> LeaseLock:
        """Build a lock, and the API client it owns, from the pod's service account.

        The token file, which the kubelet rotates, is read again every minute and after a 401.
        Prefer :meth:`connect`, which also works outside a pod.

        Args:
            name: the Lease's name.
            namespace: the Lease's namespace; by default the pod's own namespace, read from
                ``/var/run/secrets/kubernetes.io/serviceaccount/namespace``.

        Returns:
            A lock that closes its API client in :meth:`aclose`.

        Raises:
            ConfigError: a name is invalid, or the process is not running in a pod.
        """
        validate_name(name)
        if namespace is not None:
            validate_namespace(namespace)
        connection = await load_in_cluster()
        if namespace is None:
            namespace = await pod_namespace()
            validate_namespace(namespace)
        return await cls._owning(connection, name, namespace)

    @classmethod
    async def _owning(cls, connection: Connection, name: str, namespace: str) -> LeaseLock:
        api_client = _new_client(connection.configuration)
        try:
            lock = cls(api_client, name, namespace)
        except BaseException:
            await api_client.close()
            raise
        lock._owns_client = True
        lock._credentials = connection.credentials
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

    @contextlib.asynccontextmanager
    async def reserved(self) -> AsyncIterator[None]:
        """While the block runs, the election's requests use connections of their own.

        An application often shares its kubernetes_asyncio ``ApiClient`` (and so its pool of
        connections) with the lock; when its own long requests (watches) fill that pool, a
        renewal would wait behind them until the leader lost its lease. Electors hold this
        reservation while they follow the Lease: the lock then sends through a second
        ``ApiClient`` with the same configuration (credentials included), opened on first use
        and closed when the last reservation ends. A lock that owns its client (from
        :meth:`from_kubeconfig` or :meth:`in_cluster`) already has connections of its own.
        """
        self._ensure_open()
        if self._owns_client:
            yield
            return
        if self._reserved_client is None:
            self._reserved_client = _new_client(self._api_client.configuration)
            self._reserved_api = kubernetes_asyncio.client.CoordinationV1Api(self._reserved_client)
        self._reservations += 1
        try:
            yield
        finally:
            self._reservations -= 1
            if self._reservations == 0 and self._reserved_client is not None:
                client, self._reserved_client, self._reserved_api = (
                    self._reserved_client,
                    None,
                    None,
                )
                with anyio.CancelScope(shield=True):
                    await client.close()

    @property
    def _api(self) -> kubernetes_asyncio.client.CoordinationV1Api:
        return self._reserved_api or self._shared_api

    async def __aenter__(self) -> LeaseLock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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
            self._api.read_namespaced_lease,
            self.name,
            self.namespace,
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
            "create", timeout, self._api.create_namespaced_lease, self.namespace, body
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
            self._api.replace_namespaced_lease,
            self.name,
            self.namespace,
            body,
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

        def open_watch() -> LeaseWatch:
            return LeaseWatch(
                self._api.list_namespaced_lease,
                self.name,
                self.namespace,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                ensure_open=self._ensure_open,
            )

        if self._credentials is None:
            return open_watch()
        return _ReauthenticatingWatch(open_watch, self._credentials, self.lease)

    # ---------------------------------------------------------------------------- plumbing

    async def _send(
        self,
        verb: str,
        timeout: float,  # noqa: ASYNC109
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        missing_ok: bool = False,
        resource_version: str | None = None,
        resource: str = "leases",
        name: str | None = None,
    ) -> _Reply:
        """Call ``method(*args)`` of the API and read its whole answer within ``timeout`` seconds.

        Bodies in ``args`` are plain dicts (module docstring), and the answer is read raw.
        Returns the 2xx answer, or with ``missing_ok`` also a 404 saying this Lease is missing;
        raises the mapped error for anything else. A 401 to a lock that owns its credentials
        reloads them and, when they changed, sends the request once more, within the same
        ``timeout``. ``resource`` and ``name`` name another object of ours than the Lease (a
        coordinated candidate's LeaseCandidate), for messages and the 404 check.
        """
        self._ensure_open()
        _check_timeout(timeout)
        name = self.name if name is None else name
        target = f"{self.namespace}/{name}"
        what = f"{'lease' if resource == 'leases' else 'leasecandidate'} {target}"
        with (
            map_errors(
                verb, name=name, namespace=self.namespace, timeout=timeout, resource=resource
            ),
            anyio.fail_after(timeout),
        ):
            sent_at = anyio.current_time()
            reply = await _call(method, args, timeout)
            if (
                reply.status == 401
                and self._credentials is not None
                and await self._credentials.recover(sent_at)
            ):
                logger.info(
                    "%s %s: HTTP 401, sending it again with reloaded credentials",
                    verb,
                    what,
                    extra={"lease": target, "verb": verb, "status": reply.status},
                )
                reply = await _call(method, args, timeout)
        logger.debug(
            "%s %s: HTTP %d",
            verb,
            what,
            reply.status,
            extra={"lease": target, "verb": verb, "status": reply.status},
        )
        if 200 <= reply.status < 300:
            return reply
        if missing_ok and reply.status == 404 and is_lease_404(reply.body, resource):
            return reply
        raise status_error(
            verb,
            reply.status,
            name=name,
            namespace=self.namespace,
            body=reply.body,
            headers=reply.headers,
            resource_version=resource_version,
            resource=resource,
        )

    def _snapshot(self, verb: str, reply: _Reply) -> LeaseSnapshot:
        return snapshot_from_body(reply.body, status=reply.status, verb=verb, lease=self.lease)

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")


async def _call(
    method: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    timeout: float,  # noqa: ASYNC109
) -> _Reply:
    """Send one request and read its whole answer (the caller bounds the time)."""
    response = await method(*args, _preload_content=False, _request_timeout=timeout)
    try:
        body = await response.read()
    except BaseException:
        response.close()
        raise
    response.release()
    return _Reply(response.status, body, response.headers)


@final
class _ReauthenticatingWatch:
    """A :class:`LeaseWatch` opened once more, with reloaded credentials, after a 401."""

    def __init__(
        self, open_watch: Callable[[], LeaseWatch], credentials: Credentials, lease: str
    ) -> None:
        self._open_watch = open_watch
        self._credentials = credentials
        self._lease = lease
        self._watch = open_watch()

    async def __aenter__(self) -> AsyncIterator[WatchEvent]:
        sent_at = anyio.current_time()
        try:
            return await self._watch.__aenter__()
        except LeaseForbidden as exc:
            if exc.status != 401 or not await self._credentials.recover(sent_at):
                raise
        logger.info(
            "watch lease %s: HTTP 401, watching again with reloaded credentials",
            self._lease,
            extra={"lease": self._lease, "verb": "watch", "status": 401},
        )
        self._watch = self._open_watch()
        return await self._watch.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._watch.__aexit__(exc_type, exc, traceback)


def _new_client(
    configuration: kubernetes_asyncio.client.Configuration,
) -> kubernetes_asyncio.client.ApiClient:
    from .. import __version__

    api_client = kubernetes_asyncio.client.ApiClient(configuration)
    api_client.user_agent = f"leaderelect/{__version__}"
    return api_client


def _check_timeout(timeout: float) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
