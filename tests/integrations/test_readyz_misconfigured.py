"""``/readyz`` of the FastAPI and aiohttp integrations answers 503 naming a misconfiguration
(a missing RBAC verb), 200 once it is fixed; ``/healthz`` stays 200 throughout.

Both run on the embedded server and on the real kube-apiserver, with the ``reader`` user in a
namespace of the test's own whose RBAC the test changes (``_rbac.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import httpx
from _integrations import fast_elector, run_lifespan, serve_aiohttp
from _kube import KubeTarget
from _rbac import READ, READ_WRITE, Grant, reader_namespace
from aiohttp import web
from fastapi import FastAPI

from leaderelect import LeaseLock
from leaderelect.integrations import aiohttp as le_aiohttp
from leaderelect.integrations import fastapi as le_fastapi

BOUND = 30.0
Get = Callable[[str], Awaitable[tuple[int, Any]]]


def _forbidden(namespace: str, lease: str) -> str:
    return (
        f"leader election for lease {namespace}/{lease} cannot proceed: create lease "
        f'{namespace}/{lease} forbidden: User "reader" lacks RBAC verb "create" on resource '
        f'"leases" (API group "coordination.k8s.io") in namespace "{namespace}"'
    )


async def _until_status(get: Get, path: str, status: int) -> Any:
    while True:
        code, body = await get(path)
        if code == status:
            return body
        await anyio.sleep(0.05)


async def _check_probes(get: Get, grant: Grant, lease: str) -> None:
    body = await _until_status(get, "/readyz", 503)
    assert body["status"] == "not ready"
    assert body["reason"].startswith(_forbidden(grant.namespace, lease)), body
    assert await get("/healthz") == (200, {"status": "ok"})
    code, leader = await get("/leader")
    assert code == 200 and leader["problem"] is not None
    assert 'lacks RBAC verb "create"' in leader["problem"]

    await grant.allow(READ_WRITE)
    assert await _until_status(get, "/readyz", 200) == {"status": "ready"}
    code, leader = await get("/leader")
    assert leader["problem"] is None


async def test_fastapi_readyz_names_a_missing_rbac_verb_until_it_is_granted(
    kube: KubeTarget, lease_name: str
) -> None:
    async with reader_namespace(kube, READ) as grant:
        api = await kube.api_client("reader")

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with (
                LeaseLock(api, lease_name, grant.namespace) as lock,
                le_fastapi.leader_election(app, fast_elector(lock, "reader-app")),
            ):
                yield

        app = FastAPI(lifespan=lifespan)
        app.include_router(le_fastapi.health_router())
        stop = anyio.Event()
        with anyio.fail_after(BOUND):
            async with (
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://app"
                ) as http,
                anyio.create_task_group() as tasks,
            ):
                await tasks.start(run_lifespan, app, stop)

                async def get(path: str) -> tuple[int, Any]:
                    response = await http.get(path)
                    return response.status_code, response.json()

                await _check_probes(get, grant, lease_name)
                stop.set()


async def test_aiohttp_readyz_names_a_missing_rbac_verb_until_it_is_granted(
    kube: KubeTarget, lease_name: str
) -> None:
    async with reader_namespace(kube, READ) as grant:
        api = await kube.api_client("reader")

        async def election(app: web.Application) -> AsyncIterator[None]:
            async with (
                LeaseLock(api, lease_name, grant.namespace) as lock,
                le_aiohttp.leader_election(app, fast_elector(lock, "reader-app")),
            ):
                yield

        app = web.Application()
        app.cleanup_ctx.append(election)
        app.add_routes(le_aiohttp.health_routes())
        stop = anyio.Event()
        with anyio.fail_after(BOUND):
            async with aiohttp.ClientSession() as http, anyio.create_task_group() as tasks:
                url = await tasks.start(serve_aiohttp, app, stop)

                async def get(path: str) -> tuple[int, Any]:
                    async with http.get(f"{url}{path}") as response:
                        return response.status, await response.json()

                await _check_probes(get, grant, lease_name)
                stop.set()
