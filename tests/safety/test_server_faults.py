"""The fault kinds added for fault schedules, each doing exactly what it says on the wire."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest

from leaderelect.testing import ErrorResponse, Hang
from leaderelect.testing._chaos import (
    CandidateSpec,
    ChaosApiServer,
    CutWatches,
    FaultWindow,
    Schedule,
    play_faults,
    run_schedule,
)
from leaderelect.testing._faults import ExpireWatch, RawResponse, StallWatch, deny_writes

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@pytest.fixture
async def server() -> AsyncIterator[ChaosApiServer]:
    chaos = ChaosApiServer()
    async with chaos:
        chaos.add_user("alice")
        chaos.add_user("bob")
        yield chaos


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _auth(server: ChaosApiServer, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user)}"}


async def _create(
    server: ChaosApiServer, http: aiohttp.ClientSession, name: str = "lease"
) -> dict[str, Any]:
    body = {"metadata": {"name": name}, "spec": {"holderIdentity": "alice"}}
    async with http.post(server.url + LEASES, json=body, headers=_auth(server, "alice")) as r:
        assert r.status == 201
        created: dict[str, Any] = await r.json()
        return created


async def _next_line(response: aiohttp.ClientResponse, within: float) -> bytes | None:
    """The next line of a stream, or None when nothing came within ``within`` seconds."""
    with anyio.move_on_after(within):
        return await response.content.readline()
    return None


async def test_raw_response_is_served_byte_for_byte(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    body = b'{"kind": "Lease", "spec": {"holderIdentity": 7}'  # truncated JSON, on purpose
    server.faults.add(
        RawResponse(
            verb="get", status=299, body=body, content_type="text/x-odd", headers=(("X-A", "b"),)
        )
    )
    async with http.get(server.url + LEASES + "/lease", headers=_auth(server, "alice")) as r:
        assert r.status == 299
        assert r.headers["Content-Type"] == "text/x-odd"
        assert r.headers["X-A"] == "b"
        assert await r.read() == body
    assert server.requests.count(verb="get", code=299) == 1


async def test_raw_response_can_be_slow(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(RawResponse(verb="get", body=b"0123456789", pause=0.3))
    async with http.get(server.url + LEASES + "/lease", headers=_auth(server, "alice")) as r:
        assert r.status == 200
        first = anyio.current_time()
        assert await r.read() == b"0123456789"
        assert anyio.current_time() - first >= 0.25


async def test_raw_response_can_be_truncated(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(RawResponse(verb="get", body=b"0123456789", truncate=True))
    async with http.get(server.url + LEASES + "/lease", headers=_auth(server, "alice")) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


async def test_stall_watch_opens_the_stream_and_sends_nothing_then_ends(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    await _create(server, http)
    server.faults.add(StallWatch(user="alice", seconds=0.4))
    params = {"watch": "true", "fieldSelector": "metadata.name=lease"}
    async with http.get(server.url + LEASES, params=params, headers=_auth(server, "alice")) as r:
        assert r.status == 200
        assert await _next_line(r, 0.2) is None  # not even the initial ADDED event
        assert await _next_line(r, 1.0) == b""  # then the stream ends


async def test_stall_watches_silences_open_streams_until_resumed(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    created = await _create(server, http)
    version = created["metadata"]["resourceVersion"]
    params = {
        "watch": "true",
        "fieldSelector": "metadata.name=lease",
        "resourceVersion": version,
    }
    async with http.get(server.url + LEASES, params=params, headers=_auth(server, "bob")) as r:
        assert r.status == 200
        assert server.stall_watches(user="bob") == 1
        created["spec"]["holderIdentity"] = "bob"
        path = server.url + LEASES + "/lease"
        async with http.put(path, json=created, headers=_auth(server, "alice")) as put:
            assert put.status == 200
        assert await _next_line(r, 0.3) is None  # the change never arrives
        assert server.resume_watches(user="bob") == 1
        assert await _next_line(r, 1.0) == b""  # the stream ends...
    # ... and a watch resumed from the last version seen gets what was missed.
    async with http.get(server.url + LEASES, params=params, headers=_auth(server, "bob")) as r:
        line = await _next_line(r, 1.0)
        assert line is not None
        event = json.loads(line)
        assert (event["type"], event["object"]["spec"]["holderIdentity"]) == ("MODIFIED", "bob")


async def test_expire_watch_answers_a_resume_with_410_in_the_stream(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    created = await _create(server, http)
    server.faults.add(ExpireWatch(user="alice"))
    resume = {
        "watch": "true",
        "fieldSelector": "metadata.name=lease",
        "resourceVersion": created["metadata"]["resourceVersion"],
    }
    async with http.get(server.url + LEASES, params=resume, headers=_auth(server, "alice")) as r:
        assert r.status == 200
        event = json.loads(await r.content.readline())
        assert event["type"] == "ERROR"
        assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    fresh = {**resume, "resourceVersion": "0"}  # a fresh watch is not affected
    async with http.get(server.url + LEASES, params=fresh, headers=_auth(server, "alice")) as r:
        event = json.loads(await r.content.readline())
        assert event["type"] == "ADDED"


async def test_a_released_hang_drops_the_connection(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    fault = Hang(user="alice", verb="create")
    handle = server.faults.add(fault)
    outcome: list[BaseException] = []

    async def request() -> None:
        # A POST: aiohttp would send a GET again on a fresh connection by itself.
        body = {"metadata": {"name": "x"}, "spec": {}}
        try:
            async with http.post(server.url + LEASES, json=body, headers=_auth(server, "alice")):
                pass
        except aiohttp.ClientError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await handle.wait_hits(1)
        handle.remove()
        server.release(fault)
    assert outcome and isinstance(outcome[0], aiohttp.ClientError)


async def test_deny_writes_refuses_one_users_writes_like_admission(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    created = await _create(server, http)
    server.faults.add(deny_writes("bob"))
    server.faults.add(deny_writes("alice", status=422, times=1))
    path = server.url + LEASES + "/lease"
    async with http.put(path, json=created, headers=_auth(server, "bob")) as r:
        assert r.status == 403
        assert "denied the request" in (await r.json())["message"]
    async with http.get(path, headers=_auth(server, "bob")) as r:
        assert r.status == 200  # reads still work
    async with http.put(path, json=created, headers=_auth(server, "alice")) as r:
        assert r.status == 422
        assert (await r.json())["reason"] == "Invalid"
    async with http.put(path, json=created, headers=_auth(server, "alice")) as r:
        assert r.status == 200  # times=1: used up


async def test_a_fault_window_applies_only_within_its_window() -> None:
    fault = ErrorResponse(user="c0", verb="update", status=500)
    schedule = Schedule(
        seed=0,
        candidates=(CandidateSpec("c0"), CandidateSpec("c1", start=0.1)),
        events=(FaultWindow(0.4, 0.55, fault),),
        duration=2.5,
    )
    seen: list[ChaosApiServer] = []
    result = await run_schedule(schedule, on_log=lambda _, server: seen.append(server))
    # Renewals run every 0.1 s: the window caught a few, and the leader kept its lease
    # (0.15 s of failures is well within its renew deadline).
    assert 1 <= result.fault_hits["ErrorResponse 500"] <= 5
    assert (
        seen[0].requests.count(verb="update", user="c0", code=500)
        == (result.fault_hits["ErrorResponse 500"])
    )
    assert result.report.handovers == 1  # the creation only: c0 led throughout


async def test_play_faults_opens_and_closes_windows_on_time(
    server: ChaosApiServer, http: aiohttp.ClientSession
) -> None:
    await _create(server, http)
    path = server.url + LEASES + "/lease"
    seen: list[tuple[float, int]] = []

    async def probe() -> None:
        started = anyio.current_time()
        while anyio.current_time() - started < 0.7:
            sent = anyio.current_time() - started
            async with http.get(path, headers=_auth(server, "alice")) as r:
                seen.append((sent, r.status))
            await anyio.sleep(0.02)

    windows: list[FaultWindow | CutWatches] = [
        FaultWindow(0.2, 0.4, ErrorResponse(user="alice", status=503)),
        CutWatches(0.1),
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        applied = await play_faults(server, windows)
    ((_, handle),) = applied
    assert handle.hits >= 3 and not handle.active
    # Sent well before, inside and after the window (0.05 s either side for scheduling).
    assert {status for at, status in seen if at < 0.15} == {200}
    assert {status for at, status in seen if 0.25 < at < 0.35} == {503}
    assert {status for at, status in seen if at > 0.5} == {200}
