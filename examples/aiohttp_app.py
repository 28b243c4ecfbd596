"""An aiohttp service: every replica serves requests, the leader also runs background work.

```shell
python examples/aiohttp_app.py --port 8080
```

Every replica answers ``GET /hello``. Only the replica holding the Lease runs the background
reconciler and accepts ``POST /reconcile``; the others answer 503, naming the leader.
``/healthz``, ``/readyz`` and ``/leader`` are for Kubernetes probes and people.

It uses ``$KUBECONFIG`` (else ``~/.kube/config``), or the pod's service account when it runs
in a cluster. The identity is ``$POD_NAME``, else ``<hostname>_<uuid>``.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import AsyncIterator

import anyio
from aiohttp import web

from leaderelect import LeaderElector, Leadership, LeaseLock
from leaderelect.integrations.aiohttp import (
    election_of,
    health_routes,
    leader_election,
    leader_only,
)

LEASE_NAME = os.environ.get("LEASE_NAME", "aiohttp-example")
RECONCILE_EVERY = float(os.environ.get("RECONCILE_EVERY", "30"))


# --8<-- [start:app]
routes = web.RouteTableDef()


async def reconcile(leadership: Leadership) -> None:
    # Stands in for real work; pass the fencing token to whatever you write to.
    print(f"{leadership.identity}: reconciling under token {leadership.token}", flush=True)


async def reconcile_forever(leadership: Leadership) -> None:
    """Leader-only background work: runs while this replica leads, cancelled on loss."""
    while True:
        await reconcile(leadership)
        await anyio.sleep(RECONCILE_EVERY)


async def election(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: campaigns while the app runs, releases the lease at cleanup."""
    async with (
        await LeaseLock.connect(LEASE_NAME) as lock,  # $KUBECONFIG, the pod, ~/.kube/config
        leader_election(app, LeaderElector(lock), reconcile_forever),
    ):
        yield


@routes.get("/hello")
async def hello(request: web.Request) -> web.Response:
    """Any replica answers."""
    status = election_of(request).status
    return web.json_response({"replica": status.identity, "leader": status.leader})


@routes.post("/reconcile")
@leader_only
async def reconcile_now(request: web.Request) -> web.Response:
    """Only the leader answers; followers get a 503 naming the leader."""
    leadership = election_of(request).leadership
    assert leadership is not None  # leader_only let the request in
    await reconcile(leadership)
    return web.json_response({"reconciled_by": leadership.identity, "token": str(leadership.token)})


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(election)
    app.add_routes(routes)
    app.add_routes(health_routes())  # /healthz, /readyz, /leader
    return app


# --8<-- [end:app]


# --8<-- [start:main]
async def main(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; startup and cleanup run in this one task."""
    runner = web.AppRunner(create_app())
    await runner.setup()  # starts the election
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            print(f"serving on http://{address[0]}:{address[1]}", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
    finally:
        await runner.cleanup()  # stops the work and releases the lease


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An aiohttp service with a leader.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    options = parser.parse_args()
    anyio.run(main, options.host, options.port)
# --8<-- [end:main]
