"""leaderelect.integrations.fastapi: apps driven through their ASGI lifespan, over httpx.

The apps connect to the in-process Lease API server with a real kubeconfig; requests go
through ``httpx.ASGITransport`` and the lifespan is driven as an ASGI server drives it, in a
task of its own per app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio
import httpx
import pytest
from _integrations import (
    LEASE_DURATION,
    fast_elector,
    held_by,
    load_example,
    run_lifespan,
)
from fastapi import Depends, FastAPI
from starlette.types import Message

from leaderelect import Leadership, LeaseLock
from leaderelect.integrations import BackgroundElection, ElectionStatus, Worker
from leaderelect.integrations.fastapi import (
    election_of,
    get_election,
    health_router,
    leader_election,
    require_leader,
)
from leaderelect.testing import Hang, LeaseApiServer

LEASE = "fastapi"


def make_app(
    kubeconfig: Path,
    identity: str,
    *workers: Worker,
    tolerance: float = 20.0,
    ready_only_when_leading: bool = False,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock,
            leader_election(app, fast_elector(lock, identity), *workers),
        ):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(
        health_router(tolerance=tolerance, ready_only_when_leading=ready_only_when_leading)
    )

    @app.post("/write")
    async def write(leadership: Annotated[Leadership, Depends(require_leader)]) -> dict[str, str]:
        return {"written_by": leadership.identity, "token": str(leadership.token)}

    @app.get("/who")
    async def who(election: Annotated[BackgroundElection, Depends(get_election)]) -> str:
        return election.status.identity

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


def is_leader(status: ElectionStatus) -> bool:
    return status.is_leader


async def test_only_the_leader_serves_leader_only_endpoints_and_shutdown_hands_over(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    app_a, app_b = make_app(kubeconfig, "a"), make_app(kubeconfig, "b")
    stop_a, stop_b = anyio.Event(), anyio.Event()
    with anyio.fail_after(15):
        async with client(app_a) as a, client(app_b) as b, anyio.create_task_group() as tg:
            await tg.start(run_lifespan, app_a, stop_a)
            await election_of(app_a).wait_until(is_leader)
            await tg.start(run_lifespan, app_b, stop_b)
            await election_of(app_b).wait_until(lambda status: status.leader == "a")

            written = await a.post("/write")
            assert written.status_code == 200
            assert written.json()["written_by"] == "a"
            assert written.json()["token"].endswith(":0")

            refused = await b.post("/write")
            assert refused.status_code == 503
            assert refused.json() == {
                "detail": {
                    "error": "not_leader",
                    "message": "'b' is not the leader of lease default/fastapi; the leader is 'a'",
                    "lease": "default/fastapi",
                    "identity": "b",
                    "leader": "a",
                }
            }
            assert (await b.get("/who")).json() == "b"  # every replica serves the rest

            # Shutting the leader down releases the lease; the follower takes over at once.
            stop_a.set()
            await leaderelect_server.wait_for_lease("default", LEASE, held_by("b"))
            await election_of(app_b).wait_until(is_leader)
            written = await b.post("/write")
            assert written.status_code == 200
            assert written.json()["token"].endswith(":1")
            stop_b.set()
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


async def test_health_endpoints_on_leader_and_follower(leaderelect_server: LeaseApiServer) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    app_a = make_app(kubeconfig, "a", ready_only_when_leading=True)
    app_b = make_app(kubeconfig, "b", ready_only_when_leading=True)
    plain = make_app(kubeconfig, "c")
    stop = anyio.Event()
    with anyio.fail_after(15):
        async with (
            client(app_a) as a,
            client(app_b) as b,
            client(plain) as c,
            anyio.create_task_group() as tg,
        ):
            await tg.start(run_lifespan, app_a, stop)
            await election_of(app_a).wait_until(is_leader)
            await tg.start(run_lifespan, app_b, stop)
            await tg.start(run_lifespan, plain, stop)
            await election_of(app_b).wait_until(lambda status: status.leader == "a")
            await election_of(plain).wait_until(lambda status: status.leader == "a")

            for replica in (a, b, c):
                healthz = await replica.get("/healthz")
                assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})

            assert (await a.get("/readyz")).json() == {"status": "ready"}
            not_ready = await b.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {
                "status": "not ready",
                "reason": "'b' is not the leader of lease default/fastapi; the leader is 'a'",
            }
            # Without ready_only_when_leading, a follower is ready.
            assert (await c.get("/readyz")).status_code == 200

            leader = await a.get("/leader")
            assert leader.status_code == 200
            body = leader.json()
            assert body.pop("token").endswith(":0")
            assert body == {
                "lease": "default/fastapi",
                "identity": "a",
                "leader": "a",
                "is_leader": True,
                "running": True,
                "error": None,
                "problem": None,
            }
            follower = (await b.get("/leader")).json()
            assert follower["leader"] == "a" and follower["is_leader"] is False
            assert follower["token"] is None
            stop.set()


async def test_healthz_fails_while_a_term_outlives_its_lease(
    leaderelect_server: LeaseApiServer,
) -> None:
    leaderelect_server.add_user("wedged")
    verdicts: list[httpx.Response] = []
    reported = anyio.Event()

    async def stubborn(leadership: Leadership) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                # Work that ignores its cancellation for longer than a lease: the process
                # is wedged as far as the cluster is concerned.
                await anyio.sleep(LEASE_DURATION + 0.3)
                verdicts.append(await wedged.get("/healthz"))
                reported.set()

    app = make_app(leaderelect_server.kubeconfig("wedged"), "wedged", stubborn, tolerance=0)
    stop = anyio.Event()
    with anyio.fail_after(15):
        async with client(app) as wedged, anyio.create_task_group() as tg:
            await tg.start(run_lifespan, app, stop)
            await election_of(app).wait_until(is_leader)
            assert (await wedged.get("/healthz")).status_code == 200
            with leaderelect_server.faults.add(Hang(user="wedged", verb="update")):
                await reported.wait()
            stop.set()
    assert verdicts[0].status_code == 503
    body = verdicts[0].json()
    assert body["status"] == "failing"
    assert body["reason"].startswith("leader 'wedged' of lease default/fastapi has not renewed")


async def test_healthz_fails_once_leader_only_work_failed(
    leaderelect_server: LeaseApiServer,
) -> None:
    async def broken(leadership: Leadership) -> None:
        raise LookupError("no such table")

    app = make_app(leaderelect_server.kubeconfig(), "broken", broken)
    stop = anyio.Event()
    shutdown: list[Message] = []
    with anyio.fail_after(15):
        async with client(app) as broken_app, anyio.create_task_group() as tg:
            await tg.start(run_lifespan, app, stop, shutdown)
            await election_of(app).wait_until(lambda status: not status.running)
            healthz = await broken_app.get("/healthz")
            assert healthz.status_code == 503
            assert healthz.json() == {
                "status": "failing",
                "reason": "leader election for lease default/fastapi stopped: "
                "LookupError: no such table",
            }
            assert (await broken_app.get("/readyz")).status_code == 503
            assert (await broken_app.post("/write")).status_code == 503
            stop.set()
    # The failure comes out of the lifespan at shutdown, where ASGI servers report it.
    assert shutdown[0]["type"] == "lifespan.shutdown.failed"
    assert "LookupError: no such table" in shutdown[0]["message"]


async def test_guards_need_an_election_in_the_lifespan() -> None:
    app = FastAPI()
    with pytest.raises(RuntimeError, match="no leader election runs for this app"):
        election_of(app)

    @app.post("/write")
    async def write(leadership: Annotated[Leadership, Depends(require_leader)]) -> None:
        raise AssertionError("not reached")

    async with client(app) as plain:
        with pytest.raises(RuntimeError, match="no leader election runs"):
            await plain.post("/write")


async def test_one_election_per_app(leaderelect_server: LeaseApiServer) -> None:
    app = FastAPI()
    with anyio.fail_after(10):
        async with await LeaseLock.from_kubeconfig(
            LEASE, config_file=leaderelect_server.kubeconfig()
        ) as lock:
            async with leader_election(app, fast_elector(lock, "one")):
                with pytest.raises(RuntimeError, match="already runs a leader election"):
                    async with leader_election(app, fast_elector(lock, "two")):
                        pass
            with pytest.raises(RuntimeError):
                election_of(app)  # gone with the lifespan


# -- the example -------------------------------------------------------------------------------


async def test_the_fastapi_example_runs_on_two_replicas(
    leaderelect_server: LeaseApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(leaderelect_server.kubeconfig()))
    example = load_example("fastapi_app")
    app_a: FastAPI = example.create_app(identity="replica-a")
    app_b: FastAPI = example.create_app(identity="replica-b")
    stop_a, stop_b = anyio.Event(), anyio.Event()
    lease = example.LEASE_NAME
    with anyio.fail_after(20):
        async with client(app_a) as a, client(app_b) as b, anyio.create_task_group() as tg:
            await tg.start(run_lifespan, app_a, stop_a)
            await election_of(app_a).wait_until(is_leader)
            await tg.start(run_lifespan, app_b, stop_b)
            await election_of(app_b).wait_until(lambda status: status.leader == "replica-a")

            assert (await a.get("/hello")).json() == {"replica": "replica-a", "leader": "replica-a"}
            assert (await b.get("/hello")).json() == {"replica": "replica-b", "leader": "replica-a"}
            reconciled = await a.post("/reconcile")
            assert reconciled.status_code == 200
            assert reconciled.json()["reconciled_by"] == "replica-a"
            refused = await b.post("/reconcile")
            assert refused.status_code == 503
            assert refused.json()["detail"]["leader"] == "replica-a"
            for replica in (a, b):
                assert (await replica.get("/healthz")).status_code == 200
                assert (await replica.get("/readyz")).status_code == 200

            name = f'name="default/{lease}"'
            metrics_a = (await a.get("/metrics/")).text
            metrics_b = (await b.get("/metrics/")).text
            assert f"leader_election_master_status{{{name}}} 1.0" in metrics_a
            assert f"leader_election_transitions_total{{{name}}} 1.0" in metrics_a
            assert f"leader_election_master_status{{{name}}} 1.0" not in metrics_b
            assert "reconciliations_total 0.0" in metrics_b  # the follower never reconciled
            assert "reconciliations_total 0.0" not in metrics_a

            stop_a.set()
            await election_of(app_b).wait_until(is_leader)
            assert (await b.post("/reconcile")).json()["token"].endswith(":1")
            stop_b.set()
    await leaderelect_server.wait_for_lease("default", lease, held_by(""))
