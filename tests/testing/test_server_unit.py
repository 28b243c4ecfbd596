"""What the differential suite cannot see: counters, faults, users, history, lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from leaderelect.testing import (
    DropConnection,
    ErrorResponse,
    Hang,
    Latency,
    LeaseApiServer,
    Rule,
    partition,
    standard_users,
)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


class Client:
    """A raw HTTP client for one user of a server."""

    def __init__(self, session: aiohttp.ClientSession, server: LeaseApiServer, user: str) -> None:
        self.session = session
        self.base = server.url
        self.headers = {"Authorization": f"Bearer {server.token(user)}", "User-Agent": "unit/1"}

    async def call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, Any, Mapping[str, str]]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        # A fresh connection each time: aiohttp silently retries a request once when a pooled
        # connection is closed under it, which would hide a dropped answer.
        headers["Connection"] = "close"
        async with self.session.request(
            method, self.base + path, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None, resp.headers

    async def create(self, name: str, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
        status, body, _ = await self.call(
            "POST", LEASES, {"metadata": {"name": name}, "spec": dict(spec or {})}
        )
        assert status == 201, body
        result: dict[str, Any] = body
        return result

    async def put_spec(self, lease: Mapping[str, Any], **spec: Any) -> tuple[int, Any]:
        body = dict(lease)
        body["spec"] = {**lease["spec"], **spec}
        status, answer, _ = await self.call("PUT", f"{LEASES}/{lease['metadata']['name']}", body)
        return status, answer


@pytest.fixture
async def server() -> AsyncIterator[LeaseApiServer]:
    async with LeaseApiServer(users=standard_users()) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def admin(server: LeaseApiServer, session: aiohttp.ClientSession) -> Client:
    return Client(session, server, "admin")


@pytest.fixture
def elector(server: LeaseApiServer, session: aiohttp.ClientSession) -> Client:
    return Client(session, server, "elector")


# -- counters ---------------------------------------------------------------------------------


async def test_requests_are_counted_by_verb_resource_and_user(
    server: LeaseApiServer, admin: Client, elector: Client
) -> None:
    lease = await elector.create("count")
    await elector.put_spec(lease, holderIdentity="a")
    await admin.call("GET", f"{LEASES}/count")
    await admin.call("GET", f"{LEASES}/missing")
    await admin.call("GET", "/version")
    counts = server.requests
    assert counts.count(verb="create", user="elector") == 1
    assert counts.count(verb="update", resource="leases", user="elector", name="count") == 1
    assert counts.count(verb="get", resource="leases", user="admin") == 2
    assert counts.count(verb="get", resource="leases", code=404) == 1
    assert counts.snapshot()[("get", "leases", "admin")] == 2
    assert counts.snapshot()[("get", None, "admin")] == 1, "GET /version"
    assert counts.total() == 5
    counts.reset()
    assert counts.total() == 0
    assert counts.snapshot() == {}


async def test_a_list_watch_with_a_name_selector_counts_under_that_name(
    server: LeaseApiServer, admin: Client
) -> None:
    await admin.call("GET", f"{LEASES}?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dx")
    assert server.requests.count(verb="watch", name="x") == 1


# -- faults -----------------------------------------------------------------------------------


async def test_error_fault_answers_a_status_once_then_retires(
    server: LeaseApiServer, elector: Client
) -> None:
    lease = await elector.create("err")
    handle = server.faults.add(
        ErrorResponse(status=503, verb="update", user="elector", times=1, retry_after=2)
    )
    status, body = await elector.put_spec(lease, holderIdentity="x")
    assert status == 503
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "injected fault: 503 ServiceUnavailable",
        "reason": "ServiceUnavailable",
        "details": {"retryAfterSeconds": 2},
        "code": 503,
    }
    assert handle.hits == 1
    assert not handle.active
    assert server.writes[-1].verb == "create", "the faulted update did not commit"
    status, _ = await elector.put_spec(lease, holderIdentity="x")
    assert status == 200


async def test_error_fault_sets_retry_after_header(server: LeaseApiServer, admin: Client) -> None:
    with server.faults.add(ErrorResponse(status=429, retry_after=3, verb="get")):
        status, body, headers = await admin.call("GET", f"{LEASES}/x")
    assert status == 429
    assert headers["Retry-After"] == "3"
    assert body["reason"] == "TooManyRequests"
    status, _, _ = await admin.call("GET", f"{LEASES}/x")
    assert status == 404, "the with block removed the fault"


async def test_faults_match_by_user_verb_namespace_and_name(
    server: LeaseApiServer, admin: Client, elector: Client
) -> None:
    await admin.create("a")
    await admin.create("b")
    server.faults.add(ErrorResponse(status=500, user="elector", verb="get", name=("a",)))
    assert (await elector.call("GET", f"{LEASES}/a"))[0] == 500
    assert (await elector.call("GET", f"{LEASES}/b"))[0] == 200
    assert (await admin.call("GET", f"{LEASES}/a"))[0] == 200
    server.faults.clear()
    server.faults.add(ErrorResponse(status=500, namespace="kube-system"))
    assert (await admin.call("GET", f"{LEASES}/a"))[0] == 200
    other = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/a"
    assert (await admin.call("GET", other))[0] == 500


async def test_error_fault_after_handling_commits_the_write(
    server: LeaseApiServer, elector: Client
) -> None:
    lease = await elector.create("after")
    server.faults.add(ErrorResponse(status=500, verb="update", when="after"))
    status, _ = await elector.put_spec(lease, holderIdentity="committed")
    assert status == 500
    stored = server.lease("default", "after")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "committed"


async def test_latency_delays_matching_requests(server: LeaseApiServer, admin: Client) -> None:
    server.faults.add(Latency(seconds=0.3, verb="get"))
    started = anyio.current_time()
    await admin.call("GET", f"{LEASES}/x")
    assert anyio.current_time() - started >= 0.3
    started = anyio.current_time()
    await admin.call("GET", LEASES)
    assert anyio.current_time() - started < 0.3, "a list is not a get"


async def test_dropped_response_after_commit_closes_the_connection(
    server: LeaseApiServer, elector: Client
) -> None:
    lease = await elector.create("drop")
    # aiohttp resends an idempotent request once when the connection drops: drop that too.
    handle = server.faults.add(DropConnection(verb="update"))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await elector.put_spec(lease, holderIdentity="lost-answer")
    assert handle.hits == server.requests.count(verb="update") >= 1
    stored = server.lease("default", "drop")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "lost-answer"
    assert [w.verb for w in server.writes] == ["create", "update"]


async def test_dropped_request_before_handling_does_not_commit(
    server: LeaseApiServer, elector: Client
) -> None:
    server.faults.add(DropConnection(verb="create", when="before"))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await elector.create("never")
    assert server.lease("default", "never") is None
    assert server.writes == ()


async def test_hang_lasts_until_the_client_gives_up(server: LeaseApiServer, admin: Client) -> None:
    server.faults.add(Hang(verb="get"))
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            await admin.call("GET", f"{LEASES}/x")
    assert (await admin.call("GET", LEASES))[0] == 200


async def test_partition_hangs_only_that_users_requests(
    server: LeaseApiServer, admin: Client, elector: Client
) -> None:
    handle = server.faults.add(partition("elector"))
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            await elector.call("GET", f"{LEASES}/x")
    assert (await admin.call("GET", f"{LEASES}/x"))[0] == 404
    handle.remove()
    assert (await elector.call("GET", f"{LEASES}/x"))[0] == 404


async def test_partition_in_drop_mode_refuses_without_handling(
    server: LeaseApiServer, elector: Client
) -> None:
    server.faults.add(partition("elector", mode="drop"))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await elector.create("refused")
    assert server.lease("default", "refused") is None


async def test_cut_watches_ends_the_matching_streams_now(
    server: LeaseApiServer, admin: Client, elector: Client
) -> None:
    await admin.create("w")
    path = f"{LEASES}?watch=1&fieldSelector=metadata.name%3Dw"
    async with (
        elector.session.get(elector.base + path, headers=elector.headers) as mine,
        admin.session.get(admin.base + path, headers=admin.headers) as theirs,
    ):
        assert json.loads(await mine.content.readline())["type"] == "ADDED"
        assert json.loads(await theirs.content.readline())["type"] == "ADDED"
        assert server.faults.cut_watches(user="elector") == 1
        with anyio.fail_after(5):
            assert await mine.content.readline() == b""
        await admin.create("unrelated")
        lease = server.lease("default", "w")
        assert lease is not None
        await admin.put_spec(lease, holderIdentity="still-watched")
        with anyio.fail_after(5):
            event = json.loads(await theirs.content.readline())
        assert event["type"] == "MODIFIED"


# -- users and rules --------------------------------------------------------------------------


async def test_added_user_with_resource_names_is_limited_to_them(
    server: LeaseApiServer, session: aiohttp.ClientSession, admin: Client
) -> None:
    server.add_user(
        "scoped",
        [
            Rule(
                verbs=("get",),
                resources=("leases",),
                namespaces=("default",),
                resource_names=("a",),
            )
        ],
        token="scoped-token",
    )
    assert server.token("scoped") == "scoped-token"
    await admin.create("a")
    await admin.create("b")
    scoped = Client(session, server, "scoped")
    assert (await scoped.call("GET", f"{LEASES}/a"))[0] == 200
    status, body, _ = await scoped.call("GET", f"{LEASES}/b")
    assert status == 403
    assert body["message"] == (
        'leases.coordination.k8s.io "b" is forbidden: User "scoped" cannot get resource "leases" '
        'in API group "coordination.k8s.io" in the namespace "default"'
    )
    assert (await scoped.call("GET", LEASES))[0] == 403, "a list names no object"


async def test_default_server_has_only_an_admin_allowed_everything(
    session: aiohttp.ClientSession,
) -> None:
    async with LeaseApiServer() as server:
        assert list(server.users) == ["admin"]
        admin = Client(session, server, "admin")
        assert (await admin.call("GET", "/apis/coordination.k8s.io/v1/leases"))[0] == 200
        assert (await admin.call("DELETE", LEASES))[0] == 200


async def test_a_token_used_by_two_users_is_refused() -> None:
    server = LeaseApiServer()
    with pytest.raises(ValueError, match="already used"):
        server.add_user("other", token=server.token("admin"))


# -- history and waiting ----------------------------------------------------------------------


async def test_write_history_records_each_committed_write(
    server: LeaseApiServer, admin: Client, elector: Client
) -> None:
    lease = await elector.create("hist", {"holderIdentity": "a"})
    status, updated = await elector.put_spec(lease, holderIdentity="b")
    assert status == 200
    status, _ = await elector.put_spec(lease, holderIdentity="stale")
    assert status == 409
    await admin.call("DELETE", f"{LEASES}/hist")
    writes = server.writes
    assert [(w.verb, w.user, w.holder_before, w.holder_after) for w in writes] == [
        ("create", "elector", None, "a"),
        ("update", "elector", "a", "b"),
        ("delete", "admin", "b", None),
    ]
    assert writes[0].resource_version_before is None
    assert writes[1].resource_version_before == int(lease["metadata"]["resourceVersion"])
    assert writes[1].resource_version_after == int(updated["metadata"]["resourceVersion"])
    assert writes[2].lease_after is None
    assert writes[0].time <= writes[1].time <= writes[2].time
    assert writes[2].resource_version_after == server.resource_version


async def test_wait_for_lease_wakes_on_the_commit_that_satisfies_it(
    server: LeaseApiServer, elector: Client
) -> None:
    lease = await elector.create("wait", {"holderIdentity": "a"})

    def held_by_b(current: Mapping[str, Any] | None) -> bool:
        return current is not None and current["spec"].get("holderIdentity") == "b"

    async with anyio.create_task_group() as tg:
        results: list[Mapping[str, Any] | None] = []

        async def waiter() -> None:
            results.append(await server.wait_for_lease("default", "wait", held_by_b, timeout=5))

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert results == []
        await elector.put_spec(lease, holderIdentity="b")
    assert results[0] is not None
    assert results[0]["spec"]["holderIdentity"] == "b"


async def test_wait_for_lease_times_out(server: LeaseApiServer) -> None:
    with pytest.raises(TimeoutError):
        await server.wait_for_lease(
            "default", "nobody", lambda lease: lease is not None, timeout=0.1
        )


async def test_wait_for_lease_sees_a_deletion_as_none(
    server: LeaseApiServer, admin: Client
) -> None:
    await admin.create("gone")
    async with anyio.create_task_group() as tg:
        tg.start_soon(admin.call, "DELETE", f"{LEASES}/gone")
        assert await server.wait_for_lease("default", "gone", lambda lease: lease is None) is None


async def test_only_one_of_many_concurrent_conditional_updates_wins(
    server: LeaseApiServer, elector: Client
) -> None:
    lease = await elector.create("race")
    statuses: list[int] = []

    async def attempt(holder: str) -> None:
        status, _ = await elector.put_spec(lease, holderIdentity=holder)
        statuses.append(status)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(attempt, f"c{i}")
    assert sorted(statuses) == [200] + [409] * 19
    assert [w.verb for w in server.writes] == ["create", "update"]


# -- the watch cache --------------------------------------------------------------------------


async def test_watch_from_a_version_the_bounded_cache_dropped_is_expired(
    session: aiohttp.ClientSession,
) -> None:
    async with LeaseApiServer(watch_cache_size=3) as server:
        admin = Client(session, server, "admin")
        lease = await admin.create("cache")
        start = lease["metadata"]["resourceVersion"]
        for i in range(4):
            lease = (await admin.put_spec(lease, holderIdentity=f"h{i}"))[1]
        status, _, _ = await admin.call(
            "GET", f"{LEASES}?watch=1&timeoutSeconds=5&resourceVersion={start}"
        )
        assert status == 200
        async with session.get(
            f"{server.url}{LEASES}?watch=1&timeoutSeconds=5&resourceVersion={start}",
            headers=admin.headers,
        ) as resp:
            lines = (await resp.read()).splitlines()
        assert len(lines) == 1
        event = json.loads(lines[0])
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410
        assert event["object"]["reason"] == "Expired"


async def test_compact_makes_every_older_version_too_old(
    server: LeaseApiServer, admin: Client, session: aiohttp.ClientSession
) -> None:
    lease = await admin.create("compact")
    rv = lease["metadata"]["resourceVersion"]
    await admin.put_spec(lease, holderIdentity="later")
    server.compact()
    async with session.get(
        f"{server.url}{LEASES}?watch=1&timeoutSeconds=5&resourceVersion={rv}",
        headers=admin.headers,
    ) as resp:
        event = json.loads(await resp.content.readline())
    assert event["object"]["message"] == (
        f"too old resource version: {rv} ({server.resource_version})"
    )


# -- lifecycle --------------------------------------------------------------------------------


async def test_exit_is_prompt_with_an_open_watch_and_a_hung_request(
    session: aiohttp.ClientSession,
) -> None:
    async with anyio.create_task_group() as tg:
        server = LeaseApiServer()
        await server.start()
        admin = Client(session, server, "admin")
        await admin.create("open")
        hang = server.faults.add(Hang(verb="get"))
        watching = anyio.Event()
        ended = anyio.Event()

        async def hung() -> None:
            with pytest.raises(aiohttp.ClientError):
                await admin.call("GET", f"{LEASES}/x")
            ended.set()

        async def watch() -> None:
            async with session.get(server.url + LEASES + "?watch=1", headers=admin.headers) as r:
                assert json.loads(await r.content.readline())["type"] == "ADDED"
                watching.set()
                assert await r.content.read() == b""

        tg.start_soon(hung)
        tg.start_soon(watch)
        with anyio.fail_after(5):
            await hang.wait_hits(1)
            await watching.wait()
        with anyio.fail_after(3):
            await server.stop()
            await ended.wait()
    with pytest.raises(RuntimeError, match="not started"):
        server.kubeconfig()


async def test_kubeconfig_is_loaded_by_kubernetes_asyncio_and_removed_on_exit() -> None:
    async with LeaseApiServer(users=standard_users()) as server:
        path = server.kubeconfig("elector", namespace="default")
        configuration = k8s_client.Configuration()
        await k8s_config.load_kube_config(
            config_file=str(path), client_configuration=configuration, persist_config=False
        )
        async with k8s_client.ApiClient(configuration) as api:
            coordination = k8s_client.CoordinationV1Api(api)
            body = k8s_client.V1Lease(
                metadata=k8s_client.V1ObjectMeta(name="from-kubeconfig"),
                spec=k8s_client.V1LeaseSpec(),
            )
            created = await coordination.create_namespaced_lease("default", body)
            assert created.metadata.name == "from-kubeconfig"
        assert server.writes[-1].user == "elector"
        assert await anyio.Path(path).exists()
    assert not await anyio.Path(path).exists()


async def test_a_server_cannot_start_twice() -> None:
    async with LeaseApiServer() as server:
        with pytest.raises(RuntimeError, match="cannot start"):
            await server.start()


async def test_fixed_port_is_used(unused_tcp_port: int) -> None:
    async with LeaseApiServer(port=unused_tcp_port) as server:
        assert server.url == f"http://127.0.0.1:{unused_tcp_port}"


async def test_pytest_plugin_fixtures_give_a_running_server(
    leaderelect_server: LeaseApiServer, leaderelect_kubeconfig: Path
) -> None:
    text = await anyio.Path(leaderelect_kubeconfig).read_text()
    assert f'server: "{leaderelect_server.url}/' in text


async def test_module_runs_standalone_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "leaderelect.testing",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            first = (await process.stdout.readline()).decode()
            admin_line = (await process.stdout.readline()).decode()
        assert first.startswith("serving http://127.0.0.1:")
        url = first.split()[1]
        kubeconfig = anyio.Path(admin_line.rsplit(" ", 1)[1].strip())
        assert await kubeconfig.exists()
        async with aiohttp.ClientSession() as http, http.get(url + "/version") as resp:
            assert (await resp.json())["gitVersion"] == "v1.36.2"
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
        assert not await kubeconfig.exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_refused_watch_leaves_no_watcher_behind(
    server: LeaseApiServer, admin: Client, session: aiohttp.ClientSession
) -> None:
    headers = {**admin.headers, "Accept": "text/html"}
    async with session.get(f"{server.url}{LEASES}?watch=1", headers=headers) as resp:
        assert resp.status == 406
    async with session.get(
        f"{server.url}{LEASES}?watch=1&fieldSelector=bogus", headers=admin.headers
    ) as resp:
        assert resp.status == 400
    assert server.faults.cut_watches() == 0
