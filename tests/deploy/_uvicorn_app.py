"""The app ``test_uvicorn_workers.py`` serves with ``uvicorn --workers 2``.

Built as ``docs/howto-fastapi.md`` tells users to build theirs (``examples/fastapi_app.py``):
the lock from ``$KUBECONFIG``, an elector with the default identity (the how-to sets
``$POD_NAME`` from the downward API, so every worker of a pod sees the same one), and
``leader_election()`` in the lifespan running one leader-only worker. Only the timings are
short. Each worker process writes to the work log (``_worklog.py``) its identity once the
elector is built, and when its leader-only work starts and stops.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from _worklog import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, WORK_LOG, record
from fastapi import FastAPI

from leaderelect import LeaderElector, Leadership, LeaseLock
from leaderelect.integrations.fastapi import health_router, leader_election

LEASE_NAME = os.environ.get("LEASE_NAME", "uvicorn-workers")


async def reconcile_forever(leadership: Leadership) -> None:
    """Leader-only work: logged when it starts and when it stops."""
    log = os.environ[WORK_LOG]
    record(log, "start", leadership.identity, leadership.token)
    try:
        await anyio.sleep_forever()
    finally:
        record(log, "stop")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with await LeaseLock.from_kubeconfig(LEASE_NAME) as lock:
        elector = LeaderElector(
            lock,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        record(os.environ[WORK_LOG], "ready", elector.identity)
        async with leader_election(app, elector, reconcile_forever):
            yield


app = FastAPI(lifespan=lifespan)
app.include_router(health_router())
