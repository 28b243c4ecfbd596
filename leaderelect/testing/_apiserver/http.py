"""kube-apiserver's HTTP face: a request parsed into a ``RequestInfo``, routed, and answered.

:func:`parse_request` reads verb, resource, namespace and name from the path and query as
kube-apiserver's request-info resolver does; :class:`Router` sends a resource request to its
endpoint and answers the non-resource paths (discovery, OpenAPI, version, health); :func:`render`
turns a :class:`~.calls.Reply` into the HTTP answer with kube-apiserver's headers.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .._requests import RequestInfo
from . import discovery
from .calls import Call, Reply
from .events import EVENTS_GROUP, EventHandlers
from .gojson import dumps
from .kubeconfig import split_credential
from .leases import LeaseHandlers
from .namespaces import NamespaceHandler
from .selectors import parse_field_selector
from .status import ApiError, method_not_allowed, path_not_found, status_body
from .watch import WatchHandler

__all__ = ["PAGE_NOT_FOUND", "Route", "Router", "parse_request", "render"]

GROUP = "coordination.k8s.io"

PAGE_NOT_FOUND = Reply(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_PRETTY_AGENTS = ("curl", "Wget", "Mozilla/5.0")
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Where a resource request points (beyond what :class:`RequestInfo` says)."""

    group: str
    version: str
    parts: tuple[str, ...]
    watch_prefix: bool


def _watch_requested(request: web.Request) -> bool:
    if "watch" not in request.query:
        return False
    return request.query.get("watch", "").lower() not in ("0", "false")


def _selected_name(request: web.Request) -> str | None:
    try:
        return parse_field_selector(request.query.get("fieldSelector", "")).name
    except ApiError:
        return None


def parse_request(
    request: web.Request, authenticate: Callable[[web.Request, str | None], str | None]
) -> tuple[RequestInfo, Route | None]:
    """The request's :class:`RequestInfo` (the user from ``authenticate(request, path_token)``)
    and, for a resource request, its :class:`Route`."""
    path, path_token = split_credential(request.path)
    parts = path.split("/")
    parts = parts[1:] if parts and parts[0] == "" else parts
    if parts and parts[-1] == "":
        parts = parts[:-1]
    method = request.method
    verb = method.lower()
    route: Route | None = None
    resource = namespace = name = None
    group = None
    watch = False
    rest: list[str] = []
    if len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    if group is not None and rest:
        verb = _VERBS.get(method, method.lower())
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
            name = _selected_name(request)
        elif verb == "watch":
            watch = True
            if not name:
                name = _selected_name(request)
        if not name and verb == "delete":
            verb = "deletecollection"
        route = Route(group, version, tuple(rest), watch_prefix)
    info = RequestInfo(
        method=method,
        path=path,
        query={k: request.query.get(k, "") for k in request.query},
        verb=verb,
        resource=resource,
        namespace=namespace or None,
        name=name or None,
        user=authenticate(request, path_token),
        is_watch=watch,
        remote=request.remote,
        user_agent=request.headers.get("User-Agent", ""),
        api_group=group if route is not None else None,
    )
    return info, route


class Router:
    """Sends an authorized request to its endpoint, or answers a non-resource path."""

    def __init__(
        self,
        leases: LeaseHandlers,
        watches: WatchHandler,
        namespaces: NamespaceHandler,
        events: EventHandlers | None = None,
    ) -> None:
        self._leases = leases
        self._watches = watches
        self._namespaces = namespaces
        self._events = events

    async def resource(self, call: Call, route: Route) -> Reply | web.StreamResponse:
        """Serve a resource request (Leases, namespaces)."""
        info = call.info
        leases = self._leases
        method = call.request.method
        if route.group == "" and route.version == "v1" and info.resource == "namespaces":
            if len(route.parts) > 2:
                raise path_not_found()
            return await self._namespaces.namespaces(call)
        if (
            self._events is not None
            and info.resource == "events"
            and route.version == "v1"
            and route.group in ("", EVENTS_GROUP)
            and not route.watch_prefix
            and not info.is_watch
        ):
            if len(route.parts) > 2:
                raise path_not_found()
            return await self._events.serve(
                call, core=route.group == "", named=len(route.parts) == 2
            )
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
        return PAGE_NOT_FOUND

    def non_resource(self, request: web.Request, info: RequestInfo, address: str) -> Reply:
        """Answer discovery, OpenAPI, ``/version`` and the health paths (``address``: the
        ``host:port`` the server advertises)."""
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
            return Reply(200, discovery.VERSION_INFO, pretty=True)
        if path in _HEALTH_PATHS or path.startswith(tuple(p + "/" for p in _HEALTH_PATHS)):
            text = discovery.health(path, "verbose" in request.query)
            if text is None:
                return PAGE_NOT_FOUND
            reply = Reply(200, text.encode(), content_type="text/plain; charset=utf-8")
            if path in _HEALTH_PATHS:
                reply.headers.append(("X-Content-Type-Options", "nosniff"))
            return reply
        document: Any = None
        content_type = "application/json"
        if path == "/api":
            document = (
                discovery.aggregated_core() if aggregated else discovery.api_versions(address)
            )
        elif path == "/api/v1":
            document = discovery.core_resource_list()
        elif path == "/apis":
            document = discovery.aggregated_groups() if aggregated else discovery.api_group_list()
        elif path == f"/apis/{GROUP}":
            document = discovery.api_group()
        elif path == f"/apis/{GROUP}/v1":
            document = discovery.api_resource_list()
        elif path == "/openapi/v3":
            return Reply(200, discovery.openapi_index(), content_type="text/plain; charset=utf-8")
        elif path == f"/openapi/v3/apis/{GROUP}/v1":
            return Reply(200, discovery.openapi_lease_document())
        elif path.startswith("/openapi/v3/"):
            return Reply(404, b"", content_type="")
        elif path.startswith(f"/apis/{GROUP}/"):
            raise path_not_found()
        if document is None:
            return PAGE_NOT_FOUND
        headers: list[tuple[str, str]] = []
        if path in ("/api", "/apis"):
            headers.append(("Vary", "Accept"))
            if aggregated:
                content_type = discovery.AGGREGATED_DISCOVERY
        return Reply(200, document, headers, content_type=content_type)


def _wants_pretty(request: web.Request) -> bool:
    text = request.query.get("pretty")
    if text:
        return text.lower() in ("1", "t", "true")
    return request.headers.get("User-Agent", "").startswith(_PRETTY_AGENTS)


def render(request: web.Request, reply: Reply) -> web.Response:
    """The HTTP answer for ``reply``: JSON indented for curl and browsers (or ``?pretty``), and
    kube-apiserver's ``Audit-Id``, ``Cache-Control`` and ``X-Content-Type-Options`` headers."""
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
