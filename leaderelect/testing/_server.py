"""``LeaseApiServer``: an in-process kube-apiserver for the Lease API, on aiohttp.

Each request goes through one path (:meth:`LeaseApiServer._handle`):

1. parse it into a :class:`~leaderelect.testing.RequestInfo` (verb, resource, namespace, name,
   user, ...) and count it;
2. consult the fault injector (``when="before"``);
3. authenticate (401) and authorize (403) as RBAC would, then serve it;
4. consult the fault injector again (``when="after"``; the write, if any, has committed);
5. send the answer.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import logging
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
from aiohttp import web

from . import _discovery
from ._auth import ANONYMOUS, Rule, User, admin_user, anonymous_allows_path, make_user
from ._calls import Call, Reply, Settings
from ._faults import DropConnection, ErrorResponse, Fault, FaultInjector, Hang
from ._gojson import dumps
from ._kubeconfig import write_kubeconfig
from ._leases import LeaseHandlers
from ._namespaces import NamespaceHandler
from ._requests import RequestCounter, RequestInfo, WriteRecord
from ._selectors import parse_field_selector
from ._status import (
    ApiError,
    forbidden,
    internal_error,
    method_not_allowed,
    path_not_found,
    status_body,
    unauthorized,
)
from ._store import Store
from ._watch import WatchHandler

__all__ = ["DEFAULT_NAMESPACES", "LeaseApiServer"]

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
GROUP = "coordination.k8s.io"
SYSTEM_USER = "system:apiserver"

_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_TOKEN_PREFIX = "_token"
_PAGE_NOT_FOUND = Reply(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")
_PRETTY_AGENTS = ("curl", "Wget", "Mozilla/5.0")


@dataclasses.dataclass(frozen=True, slots=True)
class _Route:
    """Where a resource request points (beyond what :class:`RequestInfo` says)."""

    group: str
    version: str
    parts: tuple[str, ...]
    watch_prefix: bool


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _wants_pretty(request: web.Request) -> bool:
    text = request.query.get("pretty")
    if text:
        return text.lower() in ("1", "t", "true")
    return request.headers.get("User-Agent", "").startswith(_PRETTY_AGENTS)


def _watch_requested(request: web.Request) -> bool:
    if "watch" not in request.query:
        return False
    return request.query.get("watch", "").lower() not in ("0", "false")


class LeaseApiServer:
    """An in-process Kubernetes API server for ``coordination.k8s.io/v1`` Leases.

    It answers as kube-apiserver v1.36.2 does (bodies, errors, resourceVersions, watch), with
    bearer-token users and RBAC-style rules, a fault injector, request counters and a write
    history. Use it as an async context manager::

        async with LeaseApiServer(users=standard_users()) as server:
            config = server.kubeconfig("elector")
            ...

    Args:
        host: the address to listen on.
        port: the port (0 picks a free one).
        users: the users (default: one ``admin`` allowed everything).
        namespaces: the namespaces that exist at start.
        watch_cache_size: how many changes the watch cache keeps; a watch from an older
            resourceVersion gets a 410 ``Expired`` ERROR event.
        min_request_timeout: a watch without ``timeoutSeconds`` lasts between this and twice
            this (kube-apiserver's ``--min-request-timeout``, 1800 s).
        resource_version_wait: how long a read with a future resourceVersion waits before the
            504 ``Too large resource version`` (3 s, as kube-apiserver).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Sequence[User] | None = None,
        namespaces: Sequence[str] = DEFAULT_NAMESPACES,
        watch_cache_size: int = 1000,
        min_request_timeout: float = 1800.0,
        resource_version_wait: float = 3.0,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._users: dict[str, User] = {}
        for user in users if users is not None else [admin_user()]:
            self._register(user)
        self._store = Store(
            namespaces=namespaces,
            history_size=watch_cache_size,
            wall_clock=_utcnow,
            monotonic=self._monotonic,
        )
        self._closing = asyncio.Event()
        settings = Settings(
            min_request_timeout=min_request_timeout,
            resource_version_wait=resource_version_wait,
        )
        self._leases = LeaseHandlers(self._store, settings, wall_clock=_utcnow)
        self._watches = WatchHandler(
            self._store, settings, now=self._leases.now, closing=self._closing
        )
        self._namespace_api = NamespaceHandler(self._store, now=self._leases.now)
        self.faults = FaultInjector(self._store.close_watchers)
        """The fault injector (see :class:`~leaderelect.testing.FaultInjector`)."""
        self.requests = RequestCounter()
        """Requests counted by verb, resource, user, namespace, name (and answers by code)."""
        self._runner: web.AppRunner | None = None
        self._tmpdir: pathlib.Path | None = None
        self._state = "new"

    @staticmethod
    def _monotonic() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return 0.0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (prefer ``async with``)."""
        if self._state != "new":
            raise RuntimeError(f"cannot start a LeaseApiServer that is {self._state}")
        self._state = "starting"
        app = web.Application(client_max_size=3 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="leaderelect-testing-"))
        self._state = "running"
        logger.info("lease api server started", extra={"url": self.url})

    async def stop(self) -> None:
        """Stop: end open watches and hung requests, close connections, remove kubeconfigs."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopping"
        self._closing.set()
        self._store.close_watchers(lambda _: True)
        try:
            if self._runner is not None:
                # Bounded: open handlers get ``shutdown_timeout`` (1 s), then are cancelled.
                with anyio.move_on_after(10, shield=True):
                    await self._runner.cleanup()
        finally:
            self._runner = None
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            self._state = "stopped"
            logger.info("lease api server stopped")

    async def __aenter__(self) -> LeaseApiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses, users, kubeconfigs -----------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the LeaseApiServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self._host}:{self.port}"

    def _register(self, user: User) -> None:
        for other in self._users.values():
            if other.token == user.token and other.name != user.name:
                raise ValueError(f"token of user {user.name!r} is already used by {other.name!r}")
        self._users[user.name] = user

    def add_user(
        self, name: str, rules: Sequence[Rule] | None = None, token: str | None = None
    ) -> User:
        """Add (or replace) a user; ``rules=None`` allows everything, ``token=None`` makes one."""
        user = make_user(name, rules, token)
        self._users.pop(name, None)
        self._register(user)
        return user

    @property
    def users(self) -> Mapping[str, User]:
        """The users by name."""
        return dict(self._users)

    def token(self, user: str | User) -> str:
        """The bearer token of a user."""
        name = user.name if isinstance(user, User) else user
        try:
            return self._users[name].token
        except KeyError:
            raise KeyError(f"no user {name!r}") from None

    def kubeconfig(self, user: str = "admin", namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig for ``user`` (plain HTTP, bearer token) and return its path.

        The file lives in a temporary directory the server removes when it stops. Its server
        URL is ``<url>/_token/<token>``: clients that send the bearer token (kubernetes_asyncio)
        authenticate with it, and kubectl, which never sends credentials over plain HTTP,
        authenticates by that path prefix, which the server strips before anything else.
        """
        if self._tmpdir is None:
            raise RuntimeError("the LeaseApiServer is not started")
        token = self.token(user)
        return write_kubeconfig(
            self._tmpdir,
            server=f"{self.url}/{_TOKEN_PREFIX}/{token}",
            user=user,
            token=token,
            namespace=namespace,
        )

    # -- state, for tests ------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The cluster-wide resourceVersion (the latest committed write)."""
        return self._store.resource_version

    @property
    def writes(self) -> Sequence[WriteRecord]:
        """Every committed Lease write, oldest first."""
        return tuple(self._store.writes)

    def lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the stored Lease (with ``kind``/``apiVersion``), or None."""
        found = self._store.get(namespace, name)
        return None if found is None else copy.deepcopy(found)

    def leases(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored Leases (all namespaces when ``namespace`` is None)."""
        return copy.deepcopy(self._store.items(namespace))

    def create_namespace(self, name: str) -> None:
        """Create a namespace (no-op when it exists)."""
        if self._store.namespace_state(name) is None:
            self._store.create_namespace(
                name, _utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), manager=SYSTEM_USER
            )

    @property
    def namespaces(self) -> list[str]:
        """The namespaces, sorted."""
        return self._store.namespace_names()

    def compact(self, resource_version: int | None = None) -> None:
        """Forget watch history up to ``resource_version`` (default: all).

        A watch from an older resourceVersion then gets 410 ``Expired``, as after a real
        server's watch cache rolled over.
        """
        self._store.compact(resource_version)

    async def wait_for_lease(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[Mapping[str, Any] | None], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of the documented API
    ) -> dict[str, Any] | None:
        """Wait until the stored Lease satisfies ``predicate``; return it (None when absent).

        The predicate sees the Lease (or None when it does not exist) after every commit; no
        polling.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        with anyio.fail_after(timeout):
            while True:
                changed = self._store.change_signal()
                current = self.lease(namespace, name)
                if predicate(current):
                    return current
                await changed.wait()

    # -- the request path ------------------------------------------------------------------

    def _authenticate(self, request: web.Request, path_token: str | None) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            if path_token is None:
                return ANONYMOUS
            token = path_token
        for user in self._users.values():
            if user.token == token:
                return user.name
        return None

    @staticmethod
    def _split_credential(path: str) -> tuple[str, str | None]:
        """Strip the ``/_token/<token>`` prefix kubeconfig URLs carry (see :meth:`kubeconfig`)."""
        prefix = f"/{_TOKEN_PREFIX}/"
        if not path.startswith(prefix):
            return path, None
        token, _, rest = path[len(prefix) :].partition("/")
        return "/" + rest, token

    def _parse(self, request: web.Request) -> tuple[RequestInfo, _Route | None]:
        path, path_token = self._split_credential(request.path)
        parts = [p for p in path.split("/")]
        parts = parts[1:] if parts and parts[0] == "" else parts
        if parts and parts[-1] == "":
            parts = parts[:-1]
        method = request.method
        verb = method.lower()
        route: _Route | None = None
        resource = namespace = name = None
        group = None
        watch = False
        rest: list[str] = []
        if len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        if group is not None and rest:
            verb = {
                "GET": "get",
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
            }.get(method, method.lower())
            watch_prefix = rest[0] == "watch"
            if watch_prefix:
                rest = rest[1:]
                verb = "watch"
            if rest and rest[0] == "namespaces" and len(rest) > 1:
                namespace = rest[1]
                if len(rest) > 2:
                    rest = rest[2:]
            resource = rest[0] if rest else ""
            if len(rest) >= 2:
                name = rest[1]
            if not name and verb == "get":
                watch = _watch_requested(request)
                verb = "watch" if watch else "list"
                try:
                    name = parse_field_selector(request.query.get("fieldSelector", "")).name
                except ApiError:
                    name = None
            elif verb == "watch":
                watch = True
                if not name:
                    try:
                        name = parse_field_selector(request.query.get("fieldSelector", "")).name
                    except ApiError:
                        name = None
            if not name and verb == "delete":
                verb = "deletecollection"
            route = _Route(group, version, tuple(rest), watch_prefix)
        info = RequestInfo(
            method=method,
            path=path,
            query={k: request.query.get(k, "") for k in request.query},
            verb=verb,
            resource=resource,
            namespace=namespace or None,
            name=name or None,
            user=self._authenticate(request, path_token),
            is_watch=watch,
            remote=request.remote,
            user_agent=request.headers.get("User-Agent", ""),
            api_group=group if route is not None else None,
        )
        return info, route

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        info, route = self._parse(request)
        self.requests.record(info)
        fault = await self.faults.consult(info, "before")
        if fault is not None:
            return await self._inflict(fault, request, info)
        try:
            outcome = await self._serve(request, info, route)
        except ApiError as exc:
            outcome = Reply(exc.code, exc.body, list(exc.headers.items()))
        except Exception:
            logger.exception("request failed", extra={"path": info.path, "verb": info.verb})
            error = internal_error("Internal error occurred: the test server failed")
            outcome = Reply(500, error.body)
        if isinstance(outcome, web.StreamResponse):
            self.requests.record_answer(info, outcome.status)
            return outcome
        fault = await self.faults.consult(info, "after")
        if fault is not None:
            return await self._inflict(fault, request, info)
        response = self._render(request, outcome)
        self.requests.record_answer(info, response.status)
        return response

    async def _inflict(
        self, fault: Fault, request: web.Request, info: RequestInfo
    ) -> web.StreamResponse:
        """Answer as the fault says (error), or never (hang, drop)."""
        if isinstance(fault, ErrorResponse):
            headers: list[tuple[str, str]] = []
            details: dict[str, Any] | None = None
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
                details = {"retryAfterSeconds": fault.retry_after}
            body = status_body(
                fault.status, fault.effective_message, fault.effective_reason, details=details
            )
            response = self._render(request, Reply(fault.status, body, headers))
            self.requests.record_answer(info, fault.status)
            return response
        if isinstance(fault, Hang):
            await self._closing.wait()
        elif not isinstance(fault, DropConnection):
            raise TypeError(f"unknown fault {fault!r}")
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    async def _serve(
        self, request: web.Request, info: RequestInfo, route: _Route | None
    ) -> Reply | web.StreamResponse:
        if info.user is None:
            raise unauthorized()
        user = self._users.get(info.user)
        if route is None:
            allowed = (
                user.allows_path(info.path)
                if user is not None
                else anonymous_allows_path(info.path)
            )
            if not allowed:
                raise forbidden(info.user, info.verb, resource=None, path=info.path)
            return self._non_resource(request, info)
        group = route.group
        allowed = user is not None and user.allows(
            info.verb,
            group=group,
            resource=info.resource or "",
            namespace=info.namespace,
            name=info.name,
        )
        if not allowed:
            raise forbidden(
                info.user,
                info.verb,
                resource=info.resource or "",
                group=group,
                namespace=info.namespace,
                name=info.name,
            )
        return await self._resource(request, info, route)

    async def _resource(
        self, request: web.Request, info: RequestInfo, route: _Route
    ) -> Reply | web.StreamResponse:
        assert info.user is not None
        call = Call(request, info, info.user)
        leases = self._leases
        method = request.method
        if route.group == "" and route.version == "v1" and info.resource == "namespaces":
            if len(route.parts) > 2:
                raise path_not_found()
            return await self._namespace_api.namespaces(call)
        if route.group == GROUP and route.version == "v1" and info.resource == "leases":
            parts = route.parts
            if len(parts) > 2:
                raise path_not_found()
            named = len(parts) == 2
            if route.watch_prefix:
                if method != "GET":
                    raise method_not_allowed()
                return await self._watches.watch(call)
            if named:
                table: dict[str, Callable[[Call], Any]] = {
                    "GET": leases.get,
                    "PUT": leases.update,
                    "PATCH": leases.patch,
                    "DELETE": leases.delete,
                }
            else:
                table = {"GET": self._watches.watch if info.is_watch else leases.list}
                if info.namespace:
                    table["POST"] = leases.create
                    table["DELETE"] = leases.delete_collection
            handler = table.get(method)
            if handler is None:
                raise method_not_allowed()
            result: Reply | web.StreamResponse = await handler(call)
            return result
        if (route.group, route.version) in ((GROUP, "v1"), ("", "v1")):
            raise path_not_found()
        return _PAGE_NOT_FOUND

    def _non_resource(self, request: web.Request, info: RequestInfo) -> Reply:
        path = info.path.rstrip("/") or "/"
        accept = request.headers.get("Accept", "")
        aggregated = "as=APIGroupDiscoveryList" in accept and "v=v2" in accept
        if request.method != "GET":
            return Reply(
                405,
                status_body(
                    405,
                    "the server does not allow this method on the requested resource",
                    "MethodNotAllowed",
                    details={},
                ),
            )
        if path == "/version":
            return Reply(200, _discovery.VERSION_INFO, pretty=True)
        if path in _HEALTH_PATHS or path.startswith(tuple(p + "/" for p in _HEALTH_PATHS)):
            text = _discovery.health(path, "verbose" in request.query)
            if text is None:
                return _PAGE_NOT_FOUND
            reply = Reply(200, text.encode(), content_type="text/plain; charset=utf-8")
            if path in _HEALTH_PATHS:
                reply.headers.append(("X-Content-Type-Options", "nosniff"))
            return reply
        discovery: Any = None
        content_type = "application/json"
        if path == "/api":
            discovery = (
                _discovery.aggregated_core()
                if aggregated
                else _discovery.api_versions(f"{self._host}:{self.port}")
            )
        elif path == "/api/v1":
            discovery = _discovery.core_resource_list()
        elif path == "/apis":
            discovery = (
                _discovery.aggregated_groups() if aggregated else _discovery.api_group_list()
            )
        elif path == f"/apis/{GROUP}":
            discovery = _discovery.api_group()
        elif path == f"/apis/{GROUP}/v1":
            discovery = _discovery.api_resource_list()
        elif path == "/openapi/v3":
            return Reply(200, _discovery.openapi_index(), content_type="text/plain; charset=utf-8")
        elif path == f"/openapi/v3/apis/{GROUP}/v1":
            return Reply(200, _discovery.openapi_lease_document())
        elif path.startswith("/openapi/v3/"):
            return Reply(404, b"", content_type="")
        elif path.startswith(f"/apis/{GROUP}/"):
            raise path_not_found()
        if discovery is None:
            return _PAGE_NOT_FOUND
        headers: list[tuple[str, str]] = []
        if path in ("/api", "/apis"):
            headers.append(("Vary", "Accept"))
            if aggregated:
                content_type = _discovery.AGGREGATED_DISCOVERY
        return Reply(200, discovery, headers, content_type=content_type)

    def _render(self, request: web.Request, reply: Reply) -> web.Response:
        pretty = reply.pretty
        if pretty is None:
            pretty = _wants_pretty(request) or reply.status == 406
        if isinstance(reply.body, bytes):
            body = reply.body
        else:
            body = dumps(reply.body, pretty=pretty).encode()
        response = web.Response(status=reply.status, body=body)
        response.headers["Audit-Id"] = str(uuid.uuid4())
        response.headers["Cache-Control"] = "no-cache, private"
        if reply.content_type:
            response.headers["Content-Type"] = reply.content_type
        if reply.status in (403, 404) and reply.content_type.startswith("text/plain"):
            response.headers["X-Content-Type-Options"] = "nosniff"
        for key, value in reply.headers:
            if key.lower() == "x-content-type-options":
                response.headers[key] = value
            else:
                response.headers.add(key, value)
        return response
