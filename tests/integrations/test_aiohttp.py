"""leaderelect.integrations.aiohttp: real aiohttp servers on loopback, against the Lease server.

Each app is served by ``AppRunner`` and ``TCPSite`` in a task of its own (startup and cleanup in
one task, as ``web.run_app()`` does), and requested over HTTP with ``aiohttp.ClientSession``.
pytest-aiohttp is not used: it is not installed here, and its ``aiohttp_client`` fixture is not
needed to serve on loopback.
"""

from __future__ import annotations

import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from _integrations import example_process, fast_elector, held_by, pod_of, serve_aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from leaderelect import Leadership, LeaseLock
from leaderelect.integrations import ElectionStatus, Worker
from leaderelect.integrations.aiohttp import (
    ELECTION,
    cleanup_ctx,
    election_of,
    health_routes,
    leader_election,
    leader_only,
)
from leaderelect.testing import LeaseApiServer

LEASE = "aiohttp"


@leader_only
async def write(request: web.Request) -> web.Response:
    leadership = election_of(request).leadership
    assert leadership is not None
    return web.json_response({"written_by": leadership.identity, "token": str(leadership.token)})


async def who(request: web.Request) -> web.Response:
    return web.json_response(election_of(request).status.identity)


def make_app(
    kubeconfig: Path, identity: str, *workers: Worker, ready_only_when_leading: bool = False
) -> web.Application:
    async def election(app: web.Application) -> AsyncIterator[None]:
        async with (
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock,
            leader_election(app, fast_elector(lock, identity), *workers),
        ):
            yield

    app = web.Application()
    app.cleanup_ctx.append(election)
    app.add_routes([web.post("/write", write), web.get("/who", who)])
    app.add_routes(health_routes(ready_only_when_leading=ready_only_when_leading))
    return app


def is_leader(status: ElectionStatus) -> bool:
    return status.is_leader


async def test_only_the_leader_serves_guarded_handlers_and_cleanup_hands_over(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    app_a = make_app(kubeconfig, "a", ready_only_when_leading=True)
    app_b = make_app(kubeconfig, "b", ready_only_when_leading=True)
    stop_a, stop_b = anyio.Event(), anyio.Event()
    with anyio.fail_after(15):
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            a = await tg.start(serve_aiohttp, app_a, stop_a)
            await app_a[ELECTION].wait_until(is_leader)
            b = await tg.start(serve_aiohttp, app_b, stop_b)
            await app_b[ELECTION].wait_until(lambda status: status.leader == "a")

            async with http.post(f"{a}/write") as response:
                assert response.status == 200
                body = await response.json()
                assert body["written_by"] == "a" and body["token"].endswith(":0")
            async with http.post(f"{b}/write") as response:
                assert response.status == 503
                assert response.content_type == "application/json"
                assert await response.json() == {
                    "error": "not_leader",
                    "message": "'b' is not the leader of lease default/aiohttp; the leader is 'a'",
                    "lease": "default/aiohttp",
                    "identity": "b",
                    "leader": "a",
                }
            async with http.get(f"{b}/who") as response:
                assert await response.json() == "b"  # every replica serves the rest

            for url in (a, b):
                async with http.get(f"{url}/healthz") as response:
                    assert (response.status, await response.json()) == (200, {"status": "ok"})
            async with http.get(f"{a}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{b}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "not ready"
            async with http.get(f"{b}/leader") as response:
                status = await response.json()
                assert status["leader"] == "a" and status["is_leader"] is False

            # Cleaning the leader up releases the lease; the follower takes over at once.
            stop_a.set()
            await leaderelect_server.wait_for_lease("default", LEASE, held_by("b"))
            await app_b[ELECTION].wait_until(is_leader)
            async with http.post(f"{b}/write") as response:
                assert response.status == 200
                assert (await response.json())["token"].endswith(":1")
            assert not app_a[ELECTION].status.running
            stop_b.set()
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


async def test_cleanup_ctx_and_guards_in_sub_applications(
    leaderelect_server: LeaseApiServer,
) -> None:
    started = anyio.Event()

    async def worker(leadership: Leadership) -> None:
        started.set()
        await anyio.sleep_forever()

    stop = anyio.Event()
    with anyio.fail_after(15):
        async with (
            await LeaseLock.from_kubeconfig(
                LEASE, config_file=leaderelect_server.kubeconfig()
            ) as lock,
            aiohttp.ClientSession() as http,
            anyio.create_task_group() as tg,
        ):
            app = web.Application()
            app.cleanup_ctx.append(cleanup_ctx(fast_elector(lock, "main"), worker))
            api = web.Application()
            api.add_routes([web.post("/write", write), *health_routes(prefix="/-")])
            app.add_subapp("/api", api)
            url = await tg.start(serve_aiohttp, app, stop)
            await started.wait()
            async with http.post(f"{url}/api/write") as response:
                assert response.status == 200
                assert (await response.json())["written_by"] == "main"
            async with http.get(f"{url}/api/-/healthz") as response:
                assert response.status == 200
            stop.set()


async def test_a_guard_without_an_election_is_a_server_error() -> None:
    app = web.Application()
    app.add_routes([web.post("/write", write)])
    stop = anyio.Event()
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            url = await tg.start(serve_aiohttp, app, stop)
            async with http.post(f"{url}/write") as response:
                assert response.status == 500
            stop.set()
    with pytest.raises(RuntimeError, match="no leader election runs for this app"):
        election_of(make_mocked_request("GET", "/write", app=app))


# -- the example -------------------------------------------------------------------------------

_SERVING = re.compile(r"serving on (http://\S+)")


async def test_the_aiohttp_example_runs_on_two_replicas(leaderelect_server: LeaseApiServer) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(30):
        async with (
            example_process("aiohttp_app.py", kubeconfig, "web-a", "--port", "0") as (pa, out_a),
            aiohttp.ClientSession() as http,
        ):
            a = _url(await out_a.wait_for(_serving))
            await out_a.wait_for(lambda line: line.startswith("web-a: reconciling"))
            async with example_process("aiohttp_app.py", kubeconfig, "web-b", "--port", "0") as (
                pb,
                out_b,
            ):
                b = _url(await out_b.wait_for(_serving))
                async with http.post(f"{a}/reconcile") as response:
                    assert response.status == 200
                    assert pod_of((await response.json())["reconciled_by"]) == "web-a"
                async with http.post(f"{b}/reconcile") as response:
                    assert response.status == 503
                    assert (await response.json())["error"] == "not_leader"
                async with http.get(f"{b}/hello") as response:
                    assert pod_of((await response.json())["replica"]) == "web-b"
                for url in (a, b):
                    async with http.get(f"{url}/healthz") as response:
                        assert response.status == 200

                # SIGTERM, as Kubernetes stops a pod: the leader releases, web-b takes over.
                pa.send_signal(signal.SIGTERM)
                assert await pa.wait() == 0
                await out_b.wait_for(lambda line: line.startswith("web-b: reconciling"))
                async with http.post(f"{b}/reconcile") as response:
                    assert response.status == 200
                    assert (await response.json())["token"].endswith(":1")
                pb.send_signal(signal.SIGTERM)
                assert await pb.wait() == 0
    lease = leaderelect_server.lease("default", "aiohttp-example")
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


def _serving(line: str) -> bool:
    return _SERVING.search(line) is not None


def _url(line: str) -> str:
    match = _SERVING.search(line)
    assert match is not None
    return match[1]
