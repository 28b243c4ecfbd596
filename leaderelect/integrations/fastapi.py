"""FastAPI: campaign for the lifetime of the app, guard leader-only endpoints, serve health checks.

Needs the ``fastapi`` extra: ``pip install 'leaderelect[fastapi]'``.

```python
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with await LeaseLock.from_kubeconfig("billing") as lock:
        async with leader_election(app, LeaderElector(lock), reconcile_forever):
            yield

app = FastAPI(lifespan=lifespan)
app.include_router(health_router())

@app.post("/invoices/close", dependencies=[Depends(require_leader)])
async def close_invoices() -> None: ...
```
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

try:
    from fastapi import APIRouter, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "leaderelect.integrations.fastapi needs FastAPI: pip install 'leaderelect[fastapi]'"
    ) from exc

from .. import LeaderElector, Leadership
from ._common import (
    DEFAULT_TOLERANCE,
    BackgroundElection,
    Worker,
    liveness_answer,
    not_leader_body,
    readiness_answer,
)

__all__ = [
    "election_of",
    "get_election",
    "health_router",
    "leader_election",
    "require_leader",
]

_STATE_ATTRIBUTE = "leaderelect_election"


@contextlib.asynccontextmanager
async def leader_election(
    app: FastAPI, elector: LeaderElector, *workers: Worker
) -> AsyncIterator[BackgroundElection]:
    """Campaign in the background while the app runs; use it inside the app's lifespan.

    Starts a [`BackgroundElection`][leaderelect.integrations.BackgroundElection] and makes it
    the app's, for [`require_leader`][leaderelect.integrations.fastapi.require_leader], the
    [`health_router()`][leaderelect.integrations.fastapi.health_router] endpoints and
    [`election_of()`][leaderelect.integrations.fastapi.election_of]. The app starts serving
    at once, on every replica; ``workers`` run only on the leader, for as long as it leads.
    When the lifespan ends (the server shuts down), the workers are cancelled and awaited and
    the lease is released before this context exits.

    Args:
        app: the application; one election per app.
        elector: the elector to campaign with.
        *workers: leader-only background work, each called with the term's
            [`Leadership`][leaderelect.Leadership] at the start of every term.

    Raises:
        RuntimeError: the app already has an election running.
        Exception: what a worker raised, when the context exits (the failure is logged and
            reported by ``/healthz`` as soon as it happens).
    """
    if getattr(app.state, _STATE_ATTRIBUTE, None) is not None:
        raise RuntimeError("this app already runs a leader election; one per app")
    election = BackgroundElection(elector, *workers)
    async with election:
        setattr(app.state, _STATE_ATTRIBUTE, election)
        try:
            yield election
        finally:
            setattr(app.state, _STATE_ATTRIBUTE, None)


def election_of(app: FastAPI) -> BackgroundElection:
    """The election [`leader_election()`][leaderelect.integrations.fastapi.leader_election]
    runs for ``app``.

    Raises:
        RuntimeError: no election runs for ``app`` (it is not in the app's lifespan, or the
            lifespan has not started or has ended).
    """
    election: BackgroundElection | None = getattr(app.state, _STATE_ATTRIBUTE, None)
    if election is None:
        raise RuntimeError(
            "no leader election runs for this app: enter leaderelect.integrations.fastapi."
            "leader_election(app, elector) in the app's lifespan"
        )
    return election


async def get_election(request: Request) -> BackgroundElection:
    """A dependency: the app's [`BackgroundElection`][leaderelect.integrations.BackgroundElection].

    Example:
        ```python
        @app.get("/status")
        async def status(election: Annotated[BackgroundElection, Depends(get_election)]) -> dict:
            return election.status.to_dict()
        ```
    """
    return election_of(request.app)


async def require_leader(request: Request) -> Leadership:
    """A dependency for leader-only endpoints: the current term, or a 503 on followers.

    On a follower (or a leader whose renew deadline has passed) the request fails with
    ``503 Service Unavailable`` and a JSON body naming the leader, so that a client can
    retry there:

    ```json
    {"detail": {"error": "not_leader",
                "message": "'pod-b' is not the leader of lease default/billing; ...",
                "lease": "default/billing", "identity": "pod-b", "leader": "pod-a"}}
    ```

    It is an ``async`` dependency on purpose: FastAPI runs sync dependencies in a thread,
    where the elector's clock cannot be read. The guard is checked once, when the request
    starts: pass the returned [`Leadership`][leaderelect.Leadership]'s ``token`` to
    the systems you write to, so that they can reject a write from a term that has ended.

    Example:
        ```python
        @app.post("/invoices/close")
        async def close(leadership: Annotated[Leadership, Depends(require_leader)]) -> None:
            await ledger.close_month(fencing_token=leadership.token)
        ```
    """
    election = election_of(request.app)
    leadership = election.leadership
    if leadership is None:
        raise HTTPException(status_code=503, detail=dict(not_leader_body(election)))
    return leadership


def health_router(
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    ready_only_when_leading: bool = False,
    prefix: str = "",
) -> APIRouter:
    """Health endpoints for Kubernetes probes, backed by the app's election.

    - ``GET /healthz``, for the liveness probe: 200, or 503 when the process should be
      restarted: leader-only work failed, or a term outlived ``lease_duration + tolerance``
      since its last renewal, which means the event loop is blocked or work ignores its
      cancellation ([`LeaderElector.check()`][leaderelect.LeaderElector.check], client-go's
      ``HealthzAdaptor``). Followers are healthy.
    - ``GET /readyz``, for the readiness probe: 200 while the election runs; with
      ``ready_only_when_leading``, only on the leader, so that a Service sends traffic to the
      leader alone. 503 while the election cannot proceed because of a misconfiguration
      ([`LeaderElector.problem`][leaderelect.LeaderElector.problem]), its ``reason`` naming
      the missing RBAC verb and resource, or the missing namespace; 200 again once a request
      of the same kind gets through.
    - ``GET /leader``: always 200, the
      [`ElectionStatus`][leaderelect.integrations.ElectionStatus] as JSON (who leads, whether
      this replica does, the fencing token).

    Args:
        tolerance: seconds past ``lease_duration`` that ``/healthz`` tolerates (20 s, as
            kube-controller-manager uses).
        ready_only_when_leading: make ``/readyz`` succeed on the leader only.
        prefix: a path prefix for the three endpoints, such as ``"/-"``.
    """
    router = APIRouter(prefix=prefix, tags=["leader election"])

    @router.get("/healthz", summary="Liveness: is this process wedged?")
    async def healthz(request: Request) -> JSONResponse:
        status, body = liveness_answer(election_of(request.app), tolerance)
        return JSONResponse(body, status_code=status)

    @router.get("/readyz", summary="Readiness: should this replica get traffic?")
    async def readyz(request: Request) -> JSONResponse:
        election = election_of(request.app)
        status, body = readiness_answer(election, leader_only=ready_only_when_leading)
        return JSONResponse(body, status_code=status)

    @router.get("/leader", summary="Who leads the lease, and does this replica?")
    async def leader(request: Request) -> JSONResponse:
        return JSONResponse(election_of(request.app).status.to_dict())

    return router
