"""A FastAPI service: every replica serves requests, the leader also runs background work.

```shell
pip install uvicorn \
  'leaderelect[fastapi,prometheus] @ git+https://github.com/leaderelect/leaderelect'
uvicorn fastapi_app:app --port 8000
```

Every replica answers ``GET /hello``. Only the replica holding the Lease runs the background
reconciler and accepts ``POST /reconcile``; the others answer 503, naming the leader.
``/healthz``, ``/readyz`` and ``/leader`` are for Kubernetes probes and people; ``/metrics``
is for Prometheus.

It uses ``$KUBECONFIG`` (else ``~/.kube/config``), or the pod's service account when it runs
in a cluster. The identity is ``$POD_NAME`` with a random suffix (unique to each process, so
every worker of ``uvicorn --workers N`` is a candidate of its own), else ``<hostname>_<uuid>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry, Counter, make_asgi_app

from leaderelect import LeaderElector, Leadership, LeaseLock
from leaderelect.integrations import BackgroundElection
from leaderelect.integrations.fastapi import (
    get_election,
    health_router,
    leader_election,
    require_leader,
)
from leaderelect.metrics import PrometheusMetrics

logger = logging.getLogger("fastapi_app")

LEASE_NAME = os.environ.get("LEASE_NAME", "fastapi-example")
RECONCILE_EVERY = float(os.environ.get("RECONCILE_EVERY", "30"))


# --8<-- [start:app]
def create_app(*, identity: str | None = None) -> FastAPI:
    """The application; ``identity`` defaults to ``default_identity()``: ``<$POD_NAME>_<8 hex>``."""
    registry = CollectorRegistry()  # this app's metrics, served at /metrics
    metrics = PrometheusMetrics(registry)  # the election's series
    reconciliations = Counter("reconciliations", "Reconciliations run.", registry=registry)

    async def reconcile(leadership: Leadership) -> None:
        # Stands in for real work; pass the fencing token to whatever you write to.
        reconciliations.inc()
        logger.info("reconciling under token %s", leadership.token)

    async def reconcile_forever(leadership: Leadership) -> None:
        """Leader-only background work: runs while this replica leads, cancelled on loss."""
        while True:
            await reconcile(leadership)
            await anyio.sleep(RECONCILE_EVERY)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # $KUBECONFIG, else the pod's service account, else ~/.kube/config (kubectl's order).
        async with await LeaseLock.connect(LEASE_NAME) as lock:
            elector = LeaderElector(lock, identity=identity, metrics=metrics)
            # Campaigns in the background; releases the lease when the server shuts down.
            async with leader_election(app, elector, reconcile_forever):
                yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(health_router())  # /healthz, /readyz, /leader
    app.mount("/metrics", make_asgi_app(registry))

    @app.get("/hello")
    async def hello(
        election: Annotated[BackgroundElection, Depends(get_election)],
    ) -> dict[str, str | None]:
        """Any replica answers."""
        status = election.status
        return {"replica": status.identity, "leader": status.leader}

    @app.post("/reconcile")
    async def reconcile_now(
        leadership: Annotated[Leadership, Depends(require_leader)],
    ) -> dict[str, str]:
        """Only the leader answers; followers get a 503 naming the leader."""
        await reconcile(leadership)
        return {"reconciled_by": leadership.identity, "token": str(leadership.token)}

    return app


app = create_app()
# --8<-- [end:app]
