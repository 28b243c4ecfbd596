"""aiohttp: campaign for the lifetime of the app, guard leader-only handlers, serve health checks.

aiohttp is a dependency of leaderelect already; nothing else is needed.

```python
async def election(app: web.Application) -> AsyncIterator[None]:
    async with await LeaseLock.from_kubeconfig("billing") as lock:
        async with leader_election(app, LeaderElector(lock), reconcile_forever):
            yield

app = web.Application()
app.cleanup_ctx.append(election)
app.add_routes(health_routes())

@leader_only
async def close_invoices(request: web.Request) -> web.Response: ...
```
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .. import LeaderElector
from ._common import (
    DEFAULT_TOLERANCE,
    BackgroundElection,
    Worker,
    liveness_answer,
    not_leader_body,
    readiness_answer,
)

__all__ = [
    "ELECTION",
    "Handler",
    "cleanup_ctx",
    "election_of",
    "health_routes",
    "leader_election",
    "leader_only",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""

ELECTION = web.AppKey("leaderelect.election", BackgroundElection)
"""The app key under which the app's election is stored while it runs."""


@contextlib.asynccontextmanager
async def leader_election(
    app: web.Application, elector: LeaderElector, *workers: Worker
) -> AsyncIterator[BackgroundElection]:
    """Campaign in the background while the app runs; use it inside a ``cleanup_ctx``.

    Starts a [`BackgroundElection`][leaderelect.integrations.BackgroundElection] and stores
    it in ``app[ELECTION]``, for [`leader_only`][leaderelect.integrations.aiohttp.leader_only]
    and [`health_routes()`][leaderelect.integrations.aiohttp.health_routes] (sub-applications
    find it through ``request.config_dict``). The app starts serving at once, on every
    replica; ``workers`` run only on the leader, for as long as it leads. At cleanup the
    workers are cancelled and awaited and the lease is released before this context exits.

    The app's startup and cleanup must run in one task and within the same cancel scopes,
    as ``web.run_app()`` runs them, and an ``AppRunner`` set up and cleaned up by one
    coroutine: the election's task group is opened at startup and closed at cleanup.

    Args:
        app: the application; one election per app.
        elector: the elector to campaign with.
        *workers: leader-only background work, each called with the term's
            [`Leadership`][leaderelect.Leadership] at the start of every term.

    Raises:
        RuntimeError: the app already has an election running.
        Exception: what a worker raised, at cleanup (the failure is logged and reported by
            ``/healthz`` as soon as it happens).
    """
    if ELECTION in app:
        raise RuntimeError("this app already has a leader election; one per app")
    async with BackgroundElection(elector, *workers) as election:
        # Stored during startup, before aiohttp freezes the app; it stays after cleanup, where
        # its status says it is no longer running.
        app[ELECTION] = election
        yield election


def cleanup_ctx(
    elector: LeaderElector, *workers: Worker
) -> Callable[[web.Application], AsyncIterator[None]]:
    """[`leader_election()`][leaderelect.integrations.aiohttp.leader_election] as a
    cleanup context, for an elector that exists before the app starts.

    Example:
        ```python
        app.cleanup_ctx.append(cleanup_ctx(elector, reconcile_forever))
        ```
    """

    async def election(app: web.Application) -> AsyncIterator[None]:
        async with leader_election(app, elector, *workers):
            yield

    return election


def election_of(request: web.Request) -> BackgroundElection:
    """The election that runs for the request's application (or a parent of it).

    Raises:
        RuntimeError: no election runs for the app.
    """
    election = request.config_dict.get(ELECTION)
    if election is None:
        raise RuntimeError(
            "no leader election runs for this app: add leaderelect.integrations.aiohttp."
            "leader_election(app, elector) to app.cleanup_ctx"
        )
    return election


def leader_only(handler: Handler) -> Handler:
    """Decorate a handler so that it runs only on the leader; followers answer 503.

    The 503 carries a JSON body naming the leader, so that a client can retry there:
    ``{"error": "not_leader", "message": ..., "lease": ..., "identity": ..., "leader": ...}``.
    The guard is checked once, when the request starts; the handler can read the term with
    ``election_of(request).leadership`` and pass its fencing token on.

    Example:
        ```python
        @routes.post("/invoices/close")
        @leader_only
        async def close_invoices(request: web.Request) -> web.Response:
            leadership = election_of(request).leadership
            ...
        ```
    """

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        election = election_of(request)
        if election.leadership is None:
            return web.json_response(dict(not_leader_body(election)), status=503)
        return await handler(request)

    return guarded


def health_routes(
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    ready_only_when_leading: bool = False,
    prefix: str = "",
) -> list[web.RouteDef]:
    """Health endpoints for Kubernetes probes, backed by the app's election.

    ``app.add_routes(health_routes())`` adds:

    - ``GET /healthz``, for the liveness probe: 200, or 503 when the process should be
      restarted: leader-only work failed, or a term outlived ``lease_duration + tolerance``
      since its last renewal ([`LeaderElector.check()`][leaderelect.LeaderElector.check],
      client-go's ``HealthzAdaptor``). Followers are healthy.
    - ``GET /readyz``, for the readiness probe: 200 while the election runs; with
      ``ready_only_when_leading``, only on the leader. 503 while the election cannot proceed
      because of a misconfiguration
      ([`LeaderElector.problem`][leaderelect.LeaderElector.problem]), its ``reason`` naming
      the missing RBAC verb and resource, or the missing namespace; 200 again once a request
      of the same kind gets through.
    - ``GET /leader``: always 200, the
      [`ElectionStatus`][leaderelect.integrations.ElectionStatus] as JSON.

    Args:
        tolerance: seconds past ``lease_duration`` that ``/healthz`` tolerates (20 s, as
            kube-controller-manager uses).
        ready_only_when_leading: make ``/readyz`` succeed on the leader only.
        prefix: a path prefix for the three endpoints, such as ``"/-"``.
    """

    async def healthz(request: web.Request) -> web.Response:
        status, body = liveness_answer(election_of(request), tolerance)
        return web.json_response(body, status=status)

    async def readyz(request: web.Request) -> web.Response:
        election = election_of(request)
        status, body = readiness_answer(election, leader_only=ready_only_when_leading)
        return web.json_response(body, status=status)

    async def leader(request: web.Request) -> web.Response:
        return web.json_response(election_of(request).status.to_dict())

    return [
        web.get(f"{prefix}/healthz", healthz),
        web.get(f"{prefix}/readyz", readyz),
        web.get(f"{prefix}/leader", leader),
    ]
