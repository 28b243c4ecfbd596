"""The fault kinds a plain ``LeaseApiServer`` serves beyond latency, errors, hangs and drops.

``RawResponse``, ``StallWatch`` and ``ExpireWatch`` each do exactly what they say on the wire;
``FaultInjector.release`` ends held requests and ``stall_watches``/``resume_watches`` act on
streams already open. The older kinds are covered in ``test_server_unit.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest

import leaderelect.testing as testing
from leaderelect.testing import (
    ErrorResponse,
    ExpireWatch,
    Fault,
    Hang,
    Latency,
    LeaseApiServer,
    RawResponse,
    StallWatch,
    deny_writes,
)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
WATCH = {"watch": "true", "fieldSelector": "metadata.name=lease"}


@pytest.fixture
async def server() -> AsyncIterator[LeaseApiServer]:
    async with LeaseApiServer() as started:
        started.add_user("alice")
        started.add_user("bob")
        yield started


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _auth(server: LeaseApiServer, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user)}"}


async def _create(
    server: LeaseApiServer, http: aiohttp.ClientSession, name: str = "lease"
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


# -- RawResponse ----------------------------------------------------------------------------


async def test_raw_response_is_served_byte_for_byte(
    server: LeaseApiServer, http: aiohttp.ClientSession
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
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(RawResponse(verb="get", body=b"0123456789", pause=0.3))
    async with http.get(server.url + LEASES + "/lease", headers=_auth(server, "alice")) as r:
        assert r.status == 200
        first = anyio.current_time()
        assert await r.read() == b"0123456789"
        assert anyio.current_time() - first >= 0.25


async def test_raw_response_can_be_truncated(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(RawResponse(verb="get", body=b"0123456789", truncate=True))
    async with http.get(server.url + LEASES + "/lease", headers=_auth(server, "alice")) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


async def test_raw_response_after_handling_replaces_the_answer_of_a_committed_write(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(RawResponse(verb="create", when="after", status=500, body=b"oops"))
    body = {"metadata": {"name": "lease"}, "spec": {}}
    async with http.post(server.url + LEASES, json=body, headers=_auth(server, "alice")) as r:
        assert (r.status, await r.read()) == (500, b"oops")
    assert server.lease("default", "lease") is not None


# -- StallWatch and stalled streams -----------------------------------------------------------


async def test_stall_watch_opens_the_stream_and_sends_nothing_then_ends(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    await _create(server, http)
    server.faults.add(StallWatch(user="alice", seconds=0.4))
    async with http.get(server.url + LEASES, params=WATCH, headers=_auth(server, "alice")) as r:
        assert r.status == 200
        assert await _next_line(r, 0.2) is None  # not even the initial ADDED event
        assert await _next_line(r, 1.0) == b""  # then the stream ends
    assert server.requests.count(verb="watch", user="alice", code=200) == 1


async def test_a_stall_watch_without_seconds_lasts_until_released(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    await _create(server, http)
    fault = StallWatch(user="alice")
    handle = server.faults.add(fault)
    async with http.get(server.url + LEASES, params=WATCH, headers=_auth(server, "alice")) as r:
        assert r.status == 200
        assert await _next_line(r, 0.3) is None
        handle.remove()
        assert await _next_line(r, 0.2) is None  # removing the fault does not end the stream
        server.faults.release(fault)
        assert await _next_line(r, 1.0) == b""


async def test_stall_watches_silences_open_streams_until_resumed(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    created = await _create(server, http)
    params = {**WATCH, "resourceVersion": created["metadata"]["resourceVersion"]}
    async with http.get(server.url + LEASES, params=params, headers=_auth(server, "bob")) as r:
        assert r.status == 200
        assert server.faults.stall_watches(user="bob") == 1
        created["spec"]["holderIdentity"] = "bob"
        path = server.url + LEASES + "/lease"
        async with http.put(path, json=created, headers=_auth(server, "alice")) as put:
            assert put.status == 200
        assert await _next_line(r, 0.3) is None  # the change never arrives
        assert server.faults.resume_watches(user="bob") == 1
        assert await _next_line(r, 1.0) == b""  # the stream ends...
    # ... and a watch resumed from the last version seen gets what was missed.
    async with http.get(server.url + LEASES, params=params, headers=_auth(server, "bob")) as r:
        line = await _next_line(r, 1.0)
        assert line is not None
        event = json.loads(line)
        assert (event["type"], event["object"]["spec"]["holderIdentity"]) == ("MODIFIED", "bob")


async def test_stop_ends_stalled_and_silenced_streams_promptly(
    http: aiohttp.ClientSession,
) -> None:
    server = LeaseApiServer()
    await server.start()
    url, headers = server.url + LEASES, _auth(server, "admin")
    try:
        async with http.post(url, json={"metadata": {"name": "lease"}}, headers=headers) as r:
            assert r.status == 201
        async with http.get(url, params=WATCH, headers=headers) as silenced:
            assert await _next_line(silenced, 1.0) is not None  # ADDED
            assert server.faults.stall_watches() == 1
            server.faults.add(StallWatch())
            async with http.get(url, params=WATCH, headers=headers) as stalled:
                assert await _next_line(stalled, 0.2) is None
                with anyio.fail_after(3):
                    await server.stop()
                assert await _next_line(stalled, 1.0) == b""
            assert await _next_line(silenced, 1.0) == b""
    finally:
        await server.stop()


# -- ExpireWatch ------------------------------------------------------------------------------


async def test_expire_watch_answers_a_resume_with_410_in_the_stream(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    created = await _create(server, http)
    server.faults.add(ExpireWatch(user="alice"))
    resume = {**WATCH, "resourceVersion": created["metadata"]["resourceVersion"]}
    async with http.get(server.url + LEASES, params=resume, headers=_auth(server, "alice")) as r:
        assert r.status == 200
        event = json.loads(await r.content.readline())
        assert event["type"] == "ERROR"
        assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
        assert await r.content.read() == b""
    fresh = {**resume, "resourceVersion": "0"}  # a fresh watch is not affected
    async with http.get(server.url + LEASES, params=fresh, headers=_auth(server, "alice")) as r:
        event = json.loads(await r.content.readline())
        assert event["type"] == "ADDED"


# -- Hang, released; deny_writes ---------------------------------------------------------------


async def test_a_released_hang_drops_the_connection(
    server: LeaseApiServer, http: aiohttp.ClientSession
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

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(request)
            await handle.wait_hits(1)
            handle.remove()
            server.faults.release(fault)
    assert outcome and isinstance(outcome[0], aiohttp.ClientError)


async def test_deny_writes_refuses_one_users_writes_like_admission(
    server: LeaseApiServer, http: aiohttp.ClientSession
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


# -- the hook ---------------------------------------------------------------------------------


async def test_latencies_add_up_before_the_fault_that_decides(
    server: LeaseApiServer, http: aiohttp.ClientSession
) -> None:
    error = server.faults.add(ErrorResponse(verb="get", status=503))
    server.faults.add(Latency(verb="get", seconds=0.15))
    server.faults.add(Latency(verb="get", seconds=0.15))
    loser = server.faults.add(ErrorResponse(verb="get", status=500))
    started = anyio.current_time()
    async with http.get(server.url + LEASES + "/lease", headers=_auth(server, "alice")) as r:
        assert r.status == 503
    assert anyio.current_time() - started >= 0.3
    assert (error.hits, loser.hits) == (1, 0)  # the first terminal fault decides alone


def test_a_bare_fault_is_refused_and_does_nothing() -> None:
    server = LeaseApiServer()
    with pytest.raises(TypeError, match="bare Fault"):
        server.faults.add(Fault(user="alice"))


def test_every_fault_kind_is_exported_and_documented() -> None:
    kinds = [
        obj
        for name in testing.__all__
        if isinstance(obj := getattr(testing, name), type) and issubclass(obj, Fault)
    ]
    assert {k.__name__ for k in kinds} >= {
        "Latency",
        "ErrorResponse",
        "Hang",
        "DropConnection",
        "RawResponse",
        "StallWatch",
        "ExpireWatch",
    }
    for kind in kinds:
        assert kind.__doc__, kind
        if kind is not Fault:
            assert kind.inflict is not Fault.inflict, f"{kind.__name__} does not say what it does"
