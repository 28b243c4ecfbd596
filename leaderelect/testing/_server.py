"""``LeaseApiServer``: an in-process kube-apiserver for the Lease API, on aiohttp.

Each request goes through one path (:meth:`LeaseApiServer._handle`):

1. parse it into a :class:`~leaderelect.testing.RequestInfo` (verb, resource, namespace, name,
   user, ...) and count it;
2. the fault hook (``when="before"``): every fault the injector returns is inflicted;
3. authenticate (401) and authorize (403) as RBAC would, then serve it;
4. the fault hook again (``when="after"``; the write, if any, has committed);
5. send the answer.

The kube-apiserver emulation behind it (parsing, routing, the endpoints, the store) is in
:mod:`leaderelect.testing._apiserver`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import pathlib
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from aiohttp import web

from ._apiserver.calls import Call, Reply, Settings
from ._apiserver.events import EventHandlers
from ._apiserver.http import Route, Router, parse_request, render
from ._apiserver.kubeconfig import credential_url, write_kubeconfig
from ._apiserver.leases import LeaseHandlers
from ._apiserver.namespaces import NamespaceHandler
from ._apiserver.status import ApiError, forbidden, internal_error, unauthorized
from ._apiserver.store import Store
from ._apiserver.watch import WatchHandler, stream_response
from ._auth import ANONYMOUS, Rule, User, admin_user, anonymous_allows_path, make_user
from ._faults import Fault, When
from ._injector import FaultInjector
from ._requests import RequestCounter, RequestInfo, WriteRecord

__all__ = ["DEFAULT_NAMESPACES", "LeaseApiServer"]

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
SYSTEM_USER = "system:apiserver"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LeaseApiServer:
    """An in-process Kubernetes API server for ``coordination.k8s.io/v1`` Leases.

    It answers as kube-apiserver v1.36.2 does (bodies, errors, resourceVersions, watch), with
    bearer-token users and RBAC-style rules, a fault injector, request counters and a write
    history. It also serves the Events an elector writes (``events.k8s.io/v1`` create, get and
    list; core ``v1`` get and list). Use it as an async context manager::

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
        self._issued: dict[str, tuple[str, datetime.datetime | None]] = {}
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
        leases = LeaseHandlers(self._store, settings, wall_clock=_utcnow)
        self._events = EventHandlers(self._store, now=leases.now)
        self._router = Router(
            leases,
            WatchHandler(self._store, settings, now=leases.now, closing=self._closing),
            NamespaceHandler(self._store, now=leases.now),
            self._events,
        )
        self.faults = FaultInjector(self._store, self._closing)
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
        self.faults.release()
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

    async def __aexit__(self, *exc_info: object) -> None:
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
        issued = self._issued.get(user.token)
        if issued is not None and issued[0] != user.name:
            raise ValueError(f"token of user {user.name!r} is already used by {issued[0]!r}")
        self._users[user.name] = user

    def add_user(
        self,
        name: str,
        rules: Sequence[Rule] | None = None,
        token: str | None = None,
        *,
        token_expires: datetime.datetime | None = None,
    ) -> User:
        """Add (or replace) a user; ``rules=None`` allows everything, ``token=None`` makes one.

        ``token_expires`` (a timezone-aware time) makes the token stop working then: requests
        carrying it are answered 401 ``Unauthorized``, the body kube-apiserver sends for an
        expired or unknown token. Give the user more tokens with :meth:`issue_token`.
        """
        user = make_user(name, rules, token, token_expires)
        self._users.pop(name, None)
        self._register(user)
        return user

    def issue_token(
        self,
        user: str | User,
        *,
        expires: datetime.datetime | None = None,
        token: str | None = None,
    ) -> str:
        """Give ``user`` another bearer token, valid until ``expires``, and return it.

        As with the tokens an exec plugin (``aws eks get-token``), an OIDC provider or the
        TokenRequest API hands out, the user's other tokens keep working until their own
        expiry; a request carrying an expired token is answered 401 ``Unauthorized``. Use it
        to rotate a client's credentials under a running test, and :meth:`revoke_token` to
        end a token early.

        Args:
            user: an existing user (its name or :class:`~leaderelect.testing.User`).
            expires: when the token stops working (timezone-aware); ``None`` for never.
            token: the token; by default a random one.

        Raises:
            KeyError: there is no such user.
            ValueError: ``expires`` is naive, or ``token`` belongs to another user.
        """
        name = user.name if isinstance(user, User) else user
        if name not in self._users:
            raise KeyError(f"no user {name!r}")
        if expires is not None and expires.tzinfo is None:
            raise ValueError("expires must be timezone-aware (datetime.timezone.utc)")
        if token is None:
            token = secrets.token_hex(16)
        owner = next((u.name for u in self._users.values() if u.token == token), None)
        owner = owner or self._issued.get(token, (None, None))[0]
        if owner is not None and owner != name:
            raise ValueError(f"token is already used by {owner!r}")
        self._issued[token] = (name, expires)
        return token

    def revoke_token(self, token: str) -> None:
        """Stop accepting a token from :meth:`issue_token` (401 from now on); no-op if unknown."""
        self._issued.pop(token, None)

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
            server=credential_url(self.url, token),
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

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored Events (``events.k8s.io/v1`` form; all namespaces when
        ``namespace`` is None), in the order ``kubectl get events`` lists them."""
        return self._events.items(namespace)

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
        now = _utcnow()
        for user in self._users.values():
            if user.token == token:
                expires = user.token_expires
                return user.name if expires is None or now < expires else None
        issued = self._issued.get(token)
        if issued is not None and issued[0] in self._users:
            name, expires = issued
            return name if expires is None or now < expires else None
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        info, route = parse_request(request, self._authenticate)
        self.requests.record(info)
        exchange = _Exchange(self, request, info)
        answer = await self._fault_hook(exchange, "before")
        if answer is not None:
            return answer
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
        answer = await self._fault_hook(exchange, "after")
        if answer is not None:
            return answer
        response = render(request, outcome)
        self.requests.record_answer(info, response.status)
        return response

    async def _fault_hook(self, exchange: _Exchange, when: When) -> web.StreamResponse | None:
        """The one place faults act: each fault the injector returns is inflicted in turn,
        until one answers (or drops) the request."""
        for fault in self.faults.consult(exchange.info, when):
            try:
                answer = await fault.inflict(exchange)
            except ConnectionError:
                # The client went away meanwhile (a cut or abandoned stream): nobody to answer.
                return exchange.drop()
            if answer is not None:
                return answer
        return None

    async def _serve(
        self, request: web.Request, info: RequestInfo, route: Route | None
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
            return self._router.non_resource(request, info, f"{self._host}:{self.port}")
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
        return await self._router.resource(Call(request, info, info.user), route)


class _Exchange:
    """One request at the fault hook (see :class:`~leaderelect.testing._faults.Exchange`)."""

    __slots__ = ("_server", "info", "request")

    def __init__(self, server: LeaseApiServer, request: web.Request, info: RequestInfo) -> None:
        self._server = server
        self.request = request
        self.info = info

    @property
    def resource_version(self) -> int:
        return self._server.resource_version

    def answer(
        self, status: int, body: bytes | Mapping[str, Any], headers: Sequence[tuple[str, str]]
    ) -> web.StreamResponse:
        response = render(self.request, Reply(status, body, list(headers)))
        self.answered(response.status)
        return response

    async def open_stream(self) -> web.StreamResponse:
        response = stream_response()
        await response.prepare(self.request)
        return response

    def answered(self, status: int) -> None:
        self._server.requests.record_answer(self.info, status)

    async def hold(self, fault: Fault, seconds: float | None = None) -> None:
        await self._server.faults.hold(fault, seconds)

    def drop(self) -> web.StreamResponse:
        if self.request.transport is not None:
            self.request.transport.abort()
        return web.Response(status=500)
