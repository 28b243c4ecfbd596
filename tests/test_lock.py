"""LeaseLock against real HTTP servers, always through a kubeconfig; the client is never patched.

Three kinds of server answer these tests:

* ``kube`` (``tests/conftest.py``): :class:`leaderelect.testing.LeaseApiServer` and a real
  kube-apiserver, for everything both must answer alike (CRUD, conflicts, 403/404 messages,
  watch events, 410);
* ``scripted``: a small aiohttp server in this module whose every answer the test writes, for
  what no well-behaved server sends (non-JSON bodies, split and overlong watch lines, stalls);
* ``leaderelect_server`` faults, for latency and errors injected into a working Lease API.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from _kube import KubeTarget, leases_path, write_kubeconfig
from aiohttp import web

import leaderelect
from leaderelect._errors import (
    ApiUnavailable,
    ConfigError,
    LeaseConflict,
    LeaseError,
    LeaseForbidden,
    LeaseInvalid,
    LeaseNotFound,
    WatchExpired,
)
from leaderelect._lock import (
    LeaseClient,
    LeaseLock,
    LeaseSnapshot,
    WatchEvent,
    WatchEventType,
)
from leaderelect._record import LeaseRecord
from leaderelect.testing import (
    DropConnection,
    ErrorResponse,
    Fault,
    Hang,
    Latency,
    LeaseApiServer,
)

UTC = timezone.utc
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)  # microsecond 0: the case isoformat() gets wrong
T1 = datetime(2024, 5, 6, 7, 8, 11, 654321, tzinfo=UTC)
T2 = datetime(2024, 5, 6, 7, 8, 13, 5, tzinfo=UTC)

HELD = LeaseRecord(
    holder_identity="pod-a", lease_duration_seconds=15, acquire_time=T0, renew_time=T0
)
RENEWED = LeaseRecord(
    holder_identity="pod-a", lease_duration_seconds=15, acquire_time=T0, renew_time=T1
)
TAKEN = LeaseRecord(
    holder_identity="pod-b",
    lease_duration_seconds=20,
    acquire_time=T2,
    renew_time=T2,
    lease_transitions=1,
)

LockFactory = Callable[..., Awaitable[LeaseLock]]


@pytest.fixture
async def make_lock() -> AsyncIterator[LockFactory]:
    """``await make_lock(kubeconfig, name, namespace=None)``: a lock closed at teardown."""
    async with AsyncExitStack() as stack:

        async def make(kubeconfig: Path, name: str, namespace: str | None = None) -> LeaseLock:
            lock = await LeaseLock.from_kubeconfig(name, namespace, config_file=kubeconfig)
            stack.push_async_callback(lock.aclose)
            return lock

        yield make


# ============================================================================================
# Both servers: what LeaseApiServer and kube-apiserver must answer alike
# ============================================================================================


async def test_get_of_a_missing_lease_returns_none(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    assert await lock.get(timeout=5) is None


async def test_create_then_get_round_trips_the_record(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await lock.create(HELD, timeout=5)
    assert created.record == HELD
    assert created.resource_version
    assert created.uid

    got = await lock.get(timeout=5)
    assert got is not None
    assert got.record == HELD
    assert (got.resource_version, got.uid) == (created.resource_version, created.uid)
    assert got.obj["metadata"]["name"] == lease_name
    assert got.obj["metadata"]["namespace"] == kube.namespace

    stored = (await kube.raw("admin").get(leases_path(kube.namespace, lease_name))).json()
    assert stored["spec"] == {
        "holderIdentity": "pod-a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2024-05-06T07:08:09.000000Z",
        "renewTime": "2024-05-06T07:08:09.000000Z",
        "leaseTransitions": 0,
    }


async def test_update_replaces_the_record_and_returns_the_new_version(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await lock.create(HELD, timeout=5)
    renewed = await lock.update(RENEWED, base=created, timeout=5)
    assert renewed.record == RENEWED
    assert renewed.uid == created.uid
    assert renewed.resource_version != created.resource_version
    taken = await lock.update(TAKEN, base=renewed, timeout=5)
    assert taken.record == TAKEN
    got = await lock.get(timeout=5)
    assert got is not None
    assert (got.record, got.resource_version) == (TAKEN, taken.resource_version)


async def test_update_with_a_stale_base_raises_conflict(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await lock.create(HELD, timeout=5)
    await lock.update(RENEWED, base=created, timeout=5)
    with pytest.raises(LeaseConflict) as caught:
        await lock.update(TAKEN, base=created, timeout=5)
    error = caught.value
    assert str(error) == (
        f"update lease default/{lease_name}: resourceVersion {created.resource_version} "
        "is stale (409 Conflict): Operation cannot be fulfilled on leases.coordination.k8s.io "
        f'"{lease_name}": the object has been modified; please apply your changes to the '
        "latest version and try again"
    )
    assert (error.lease, error.verb, error.status, error.reason) == (
        f"default/{lease_name}",
        "update",
        409,
        "Conflict",
    )
    got = await lock.get(timeout=5)
    assert got is not None
    assert got.record == RENEWED


async def test_update_keeps_labels_annotations_and_other_spec_readers_metadata(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    admin = kube.raw("admin")
    response = await admin.request(
        "POST",
        leases_path(kube.namespace),
        {
            "metadata": {
                "name": lease_name,
                "labels": {"app": "billing", "tier": "control"},
                "annotations": {"example.com/owner": "team-a"},
            },
            "spec": {},
        },
    )
    assert response.status == 201, response.body
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    base = await lock.get(timeout=5)
    assert base is not None
    assert base.record == LeaseRecord()

    updated = await lock.update(HELD, base=base, timeout=5)
    stored = (await admin.get(leases_path(kube.namespace, lease_name))).json()
    for obj in (updated.obj, stored):
        assert obj["metadata"]["labels"] == {"app": "billing", "tier": "control"}
        assert obj["metadata"]["annotations"] == {"example.com/owner": "team-a"}
        assert obj["metadata"]["uid"] == base.uid
        assert obj["spec"]["holderIdentity"] == "pod-a"
    assert updated.record == HELD


async def test_create_of_an_existing_lease_raises_conflict(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    await lock.create(HELD, timeout=5)
    with pytest.raises(LeaseConflict) as caught:
        await lock.create(TAKEN, timeout=5)
    assert str(caught.value) == (
        f"create lease default/{lease_name}: the lease already exists (409 AlreadyExists)"
    )
    assert (caught.value.status, caught.value.reason, caught.value.verb) == (
        409,
        "AlreadyExists",
        "create",
    )


async def test_update_of_a_deleted_lease_raises_conflict_and_does_not_recreate_it(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await lock.create(HELD, timeout=5)
    deleted = await kube.raw("admin").request("DELETE", leases_path(kube.namespace, lease_name))
    assert deleted.status == 200, deleted.body
    # A PUT may create a Lease; sending back the uid makes it a precondition instead.
    with pytest.raises(LeaseConflict, match="the lease was deleted"):
        await lock.update(RENEWED, base=created, timeout=5)
    assert await lock.get(timeout=5) is None


async def test_update_of_a_recreated_lease_raises_conflict(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    first = await lock.create(HELD, timeout=5)
    admin = kube.raw("admin")
    await admin.request("DELETE", leases_path(kube.namespace, lease_name))
    second = await lock.create(TAKEN, timeout=5)
    assert second.uid != first.uid
    with pytest.raises(LeaseConflict):
        await lock.update(RENEWED, base=first, timeout=5)
    got = await lock.get(timeout=5)
    assert got is not None
    assert (got.record, got.uid) == (TAKEN, second.uid)


@pytest.mark.parametrize(
    ("verb", "user"),
    [
        pytest.param("update", "reader", id="reader may not update"),
        pytest.param("create", "reader", id="reader may not create"),
    ],
)
async def test_forbidden_names_the_missing_rbac_verb_and_resource(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory, verb: str, user: str
) -> None:
    writer = await make_lock(kube.kubeconfig("elector"), lease_name)
    base = await writer.create(HELD, timeout=5)
    lock = await make_lock(kube.kubeconfig(user), lease_name)
    assert await lock.get(timeout=5) is not None, f"{user} may get"
    with pytest.raises(LeaseForbidden) as caught:
        await write(lock, verb, RENEWED, base)
    message = str(caught.value)
    assert message.startswith(
        f'{verb} lease default/{lease_name} forbidden: User "{user}" lacks RBAC verb "{verb}" '
        'on resource "leases" (API group "coordination.k8s.io") in namespace "default"; '
        "the API server said: leases.coordination.k8s.io"
    ), message
    assert f'User "{user}" cannot {verb} resource "leases"' in message
    assert (caught.value.status, caught.value.reason, caught.value.verb) == (
        403,
        "Forbidden",
        verb,
    )


async def test_get_outside_the_granted_namespace_is_forbidden(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name, "kube-system")
    with pytest.raises(LeaseForbidden) as caught:
        await lock.get(timeout=5)
    assert str(caught.value).startswith(
        f'get lease kube-system/{lease_name} forbidden: User "elector" lacks RBAC verb "get" '
        'on resource "leases" (API group "coordination.k8s.io") in namespace "kube-system"'
    )


async def test_bad_credentials_are_unauthorized(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "bad.kubeconfig",
        url=kube.url,
        token="not-a-token",
        user="intruder",
        ca_file=kube.ca_file,
    )
    lock = await make_lock(kubeconfig, lease_name)
    with pytest.raises(LeaseForbidden) as caught:
        await lock.get(timeout=5)
    assert str(caught.value) == (
        f"get lease default/{lease_name} unauthorized: "
        "the API server rejected the credentials (401)"
    )
    assert caught.value.status == 401


async def test_create_in_a_missing_namespace_raises_not_found_naming_the_namespace(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("admin"), lease_name, "no-such-namespace")
    # kube-apiserver answers a GET there with a plain "lease not found" (details.kind leases).
    assert await lock.get(timeout=5) is None
    with pytest.raises(LeaseNotFound) as caught:
        await lock.create(HELD, timeout=5)
    assert str(caught.value) == (
        f'create lease no-such-namespace/{lease_name}: namespace "no-such-namespace" '
        "does not exist (404 NotFound)"
    )


@pytest.mark.parametrize(
    ("record", "server_says"),
    [
        pytest.param(
            LeaseRecord(holder_identity="a", lease_duration_seconds=0),
            "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            id="zero leaseDurationSeconds is rejected with the server's message",
        ),
        pytest.param(
            LeaseRecord(holder_identity="a", lease_duration_seconds=5, lease_transitions=-1),
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            id="negative leaseTransitions is rejected with the server's message",
        ),
    ],
)
async def test_a_record_the_server_rejects_raises_invalid(
    kube: KubeTarget,
    lease_name: str,
    make_lock: LockFactory,
    record: LeaseRecord,
    server_says: str,
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    with pytest.raises(LeaseInvalid) as caught:
        await lock.create(record, timeout=5)
    assert str(caught.value).startswith(
        f"create lease default/{lease_name}: the API server rejected the request "
        "(422 Invalid): Lease.coordination.k8s.io"
    )
    assert server_says in str(caught.value)
    base = await lock.create(HELD, timeout=5)
    with pytest.raises(LeaseInvalid, match="422 Invalid"):
        await lock.update(record, base=base, timeout=5)


@pytest.mark.parametrize(
    ("spec", "holder", "problems"),
    [
        pytest.param({}, "", (), id="an empty spec is a free lease"),
        pytest.param(
            {"holderIdentity": "pod-x", "renewTime": "2024-05-06T07:08:09.000001Z"},
            "pod-x",
            ("leaseDurationSeconds is missing",),
            id="a held spec without leaseDurationSeconds is read with a problem",
        ),
        pytest.param(
            None,
            "",
            (),
            id="a lease created without spec reads as an empty spec",
        ),
    ],
)
async def test_a_malformed_lease_reads_as_a_record_with_problems(
    kube: KubeTarget,
    lease_name: str,
    make_lock: LockFactory,
    spec: dict[str, Any] | None,
    holder: str,
    problems: tuple[str, ...],
) -> None:
    body: dict[str, Any] = {"metadata": {"name": lease_name}}
    if spec is not None:
        body["spec"] = spec
    response = await kube.raw("admin").request("POST", leases_path(kube.namespace), body)
    assert response.status == 201, response.body
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    got = await lock.get(timeout=5)
    assert got is not None
    assert got.record.holder_identity == holder
    assert got.record.problems == problems
    # and it can be taken over
    taken = await lock.update(TAKEN, base=got, timeout=5)
    assert taken.record == TAKEN


# --------------------------------------------------------------------------------------------
# Watch, on both servers
# --------------------------------------------------------------------------------------------


async def collect(
    lock: LeaseLock,
    *,
    resource_version: str | None,
    until: Callable[[WatchEvent], bool],
    timeout_seconds: int = 10,
) -> list[WatchEvent]:
    """Watch events until ``until`` holds for one (BOOKMARKs dropped); bounded by fail_after."""
    events: list[WatchEvent] = []
    with anyio.fail_after(timeout_seconds + 5):
        async with lock.watch(
            resource_version=resource_version, timeout_seconds=timeout_seconds
        ) as stream:
            async for event in stream:
                if event.type is WatchEventType.BOOKMARK:
                    continue
                events.append(event)
                if until(event):
                    return events
    raise AssertionError(f"the watch ended before the expected event; got {events}")


async def test_watch_resumes_from_a_resource_version_with_this_leases_events_only(
    kube: KubeTarget, make_lock: LockFactory
) -> None:
    ours_name, other_name = kube.lease_name("ours"), kube.lease_name("other")
    ours = await make_lock(kube.kubeconfig("elector"), ours_name)
    other = await make_lock(kube.kubeconfig("elector"), other_name)
    start = await ours.create(HELD, timeout=5)
    other_start = await other.create(HELD, timeout=5)
    renewed = await ours.update(RENEWED, base=start, timeout=5)
    await other.update(RENEWED, base=other_start, timeout=5)
    taken = await ours.update(TAKEN, base=renewed, timeout=5)

    events = await collect(
        ours,
        resource_version=start.resource_version,
        until=lambda e: e.resource_version == taken.resource_version,
    )
    assert [(e.type, e.resource_version) for e in events] == [
        (WatchEventType.MODIFIED, renewed.resource_version),
        (WatchEventType.MODIFIED, taken.resource_version),
    ]
    snapshots = [e.snapshot for e in events]
    assert all(s is not None and s.obj["metadata"]["name"] == ours_name for s in snapshots)
    assert [s.record for s in snapshots if s is not None] == [RENEWED, TAKEN]
    assert all(s is not None and s.uid == start.uid for s in snapshots)


async def test_watch_without_a_resource_version_starts_with_the_current_lease(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await lock.create(HELD, timeout=5)
    events = await collect(lock, resource_version=None, until=lambda e: True)
    assert events[0].type is WatchEventType.ADDED
    assert events[0].snapshot is not None
    assert events[0].snapshot.record == HELD
    assert events[0].resource_version == created.resource_version


async def test_watch_reports_a_deletion_with_the_last_state(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await lock.create(HELD, timeout=5)
    await kube.raw("admin").request("DELETE", leases_path(kube.namespace, lease_name))
    events = await collect(
        lock,
        resource_version=created.resource_version,
        until=lambda e: e.type is WatchEventType.DELETED,
    )
    deleted = events[-1]
    assert deleted.snapshot is not None
    assert deleted.snapshot.record == HELD
    assert deleted.snapshot.uid == created.uid
    assert deleted.resource_version != created.resource_version


async def test_watch_delivers_bookmarks_and_ends_when_the_server_closes_it_at_its_timeout(
    kube: KubeTarget, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), kube.lease_name("ours"))
    other = await make_lock(kube.kubeconfig("elector"), kube.lease_name("other"))
    created = await lock.create(HELD, timeout=5)
    started = anyio.current_time()
    kinds: list[WatchEventType] = []
    versions: list[str] = []
    with anyio.fail_after(10):
        async with lock.watch(
            resource_version=created.resource_version, timeout_seconds=3
        ) as stream:
            # A write the watch filters out: the server now has a newer revision to bookmark.
            newer = await other.create(HELD, timeout=5)
            async for event in stream:
                kinds.append(event.type)
                versions.append(event.resource_version)
    elapsed = anyio.current_time() - started
    assert kinds, "a bookmark arrives before the server's timeout"
    assert set(kinds) == {WatchEventType.BOOKMARK}
    assert int(versions[0]) >= int(newer.resource_version)
    assert 2.5 < elapsed < 5, "ended by the server at timeoutSeconds, not by the client's bound"


async def test_watch_from_an_expired_resource_version_raises_watch_expired(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    first = await make_lock(kube.kubeconfig("elector"), lease_name)
    created = await first.create(HELD, timeout=5)
    await first.update(RENEWED, base=created, timeout=5)
    await kube.expire_watch_history()
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)  # the port may have moved
    with pytest.raises(WatchExpired) as caught:
        await collect(lock, resource_version=created.resource_version, until=lambda e: False)
    assert str(caught.value).startswith(
        f"watch lease default/{lease_name}: the watch expired "
        f"(resourceVersion {created.resource_version}) (410 Expired)"
    )
    assert (caught.value.status, caught.value.verb) == (410, "watch")


async def write(
    lock: LeaseLock, verb: str, record: LeaseRecord, base: LeaseSnapshot
) -> LeaseSnapshot:
    """``lock.create(record)`` or ``lock.update(record, base=base)``."""
    if verb == "create":
        return await lock.create(record, timeout=5)
    return await lock.update(record, base=base, timeout=5)


async def drain(
    lock: LeaseLock,
    seen: list[WatchEvent],
    *,
    resource_version: str | None = None,
    timeout_seconds: int = 5,
) -> None:
    """Watch until the stream ends, appending every event to ``seen``."""
    async with lock.watch(
        resource_version=resource_version, timeout_seconds=timeout_seconds
    ) as stream:
        async for event in stream:
            seen.append(event)


async def test_lease_lock_is_a_lease_client(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    client: LeaseClient = lock
    assert client.lease == f"default/{lease_name}"


# ============================================================================================
# A scripted server: answers no well-behaved server gives
# ============================================================================================

NAME = "scripted"
LEASE = f"default/{NAME}"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{NAME}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """One request the scripted server received."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    """A plain-HTTP server answering every request with ``self.handler``, recording requests."""

    def __init__(self) -> None:
        self.handler: Handler = self._unscripted
        self.requests: list[Seen] = []
        self.release = asyncio.Event()
        """Set at teardown: hung handlers return."""
        self.disconnected = asyncio.Event()
        """Set when a hung or streaming handler sees its client go away."""
        self.url = ""

    async def _unscripted(self, request: web.Request) -> web.StreamResponse:
        raise AssertionError(f"unexpected request {request.method} {request.path_qs}")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            self.disconnected.set()
            raise

    async def hang(self) -> None:
        """Never answer (until teardown)."""
        await self.release.wait()

    def answer(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Answer every request with ``status`` and ``body`` (JSON unless bytes)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(
                status=status,
                body=raw,
                headers={"Content-Type": "application/json", **(headers or {})},
            )

        self.handler = handler

    def stream(self, *pieces: bytes, then_hang: bool = False) -> None:
        """Answer with a 200 chunked stream of ``pieces``, then end it (or hang)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for piece in pieces:
                await response.write(piece)
            if then_hang:
                await self.hang()
            await response.write_eof()
            return response

        self.handler = handler


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._dispatch)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def scripted_lock(
    scripted: ScriptedServer, tmp_path: Path, make_lock: LockFactory
) -> LeaseLock:
    kubeconfig = write_kubeconfig(
        tmp_path / "scripted.kubeconfig", url=scripted.url, token="scripted-token", user="test"
    )
    return await make_lock(kubeconfig, NAME)


def lease_json(
    spec: Any = None, *, rv: str = "7", uid: str = "uid-1", name: str = NAME, **metadata: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": rv}
        | metadata,
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def status_json(
    code: int, reason: str | None, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason is not None:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def event_line(kind: str, obj: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


BASE = LeaseSnapshot(
    record=HELD,
    resource_version="7",
    uid="uid-1",
    obj=lease_json({"holderIdentity": "pod-a"}, labels={"app": "x"}),
)


async def call(lock: LeaseLock, verb: str, seconds: float, base: LeaseSnapshot = BASE) -> object:
    """``get``, ``create(HELD)`` or ``update(RENEWED, base=base)`` with ``timeout=seconds``."""
    if verb == "get":
        return await lock.get(timeout=seconds)
    if verb == "create":
        return await lock.create(HELD, timeout=seconds)
    return await lock.update(RENEWED, base=base, timeout=seconds)


VERBS = [pytest.param(verb, id=verb) for verb in ("get", "create", "update")]


# --------------------------------------------------------------------------------------------
# What goes on the wire
# --------------------------------------------------------------------------------------------


async def test_requests_carry_our_user_agent_and_plain_json_bodies(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.answer(201, lease_json({"holderIdentity": "pod-a"}))
    await scripted_lock.create(HELD, timeout=5)
    await scripted_lock.update(RENEWED, base=BASE, timeout=5)
    create, update = scripted.requests
    for seen in (create, update):
        assert seen.headers["User-Agent"] == f"leaderelect/{leaderelect.__version__}"
        assert seen.headers["Authorization"] == "Bearer scripted-token"
        assert seen.headers["Content-Type"] == "application/json"
    assert (create.method, create.path) == (
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
    )
    assert create.json() == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-05-06T07:08:09.000000Z",
            "renewTime": "2024-05-06T07:08:09.000000Z",
            "leaseTransitions": 0,
        },
    }
    assert (update.method, update.path) == ("PUT", LEASE_PATH)
    assert update.json() == {
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        "metadata": {
            "name": NAME,
            "namespace": "default",
            "uid": "uid-1",
            "resourceVersion": "7",
            "labels": {"app": "x"},
        },
        "spec": {
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-05-06T07:08:09.000000Z",
            "renewTime": "2024-05-06T07:08:11.654321Z",
            "leaseTransitions": 0,
        },
    }
    assert BASE.obj["metadata"]["resourceVersion"] == "7", "the base snapshot is not mutated"


async def test_watch_asks_for_this_lease_only_with_bookmarks_resumed_from_its_version(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream()
    async with scripted_lock.watch(resource_version="41", timeout_seconds=9) as stream:
        assert [e async for e in stream] == []
    async with scripted_lock.watch(resource_version=None, timeout_seconds=3) as stream:
        assert [e async for e in stream] == []
    resumed, fresh = scripted.requests
    assert resumed.path == "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    assert resumed.query == {
        "watch": "true",
        "fieldSelector": f"metadata.name={NAME}",
        "timeoutSeconds": "9",
        "resourceVersion": "41",
        "allowWatchBookmarks": "true",
    }
    # From the current state: resourceVersion "0" (served by the watch cache; with none at
    # all kube-apiserver may wait 3 s and answer 504), and no allowWatchBookmarks, which would
    # turn it into a watch-list request (a 500 ERROR event where etcd lacks progress
    # notifications).
    assert fresh.query == {
        "watch": "true",
        "fieldSelector": f"metadata.name={NAME}",
        "timeoutSeconds": "3",
        "resourceVersion": "0",
    }


# --------------------------------------------------------------------------------------------
# Timeouts, unavailability, cancellation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", VERBS)
async def test_a_hung_request_raises_api_unavailable_within_its_timeout(
    scripted: ScriptedServer, scripted_lock: LeaseLock, verb: str
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await scripted.hang()
        raise AssertionError("released")

    scripted.handler = hang
    started = anyio.current_time()
    with pytest.raises(ApiUnavailable) as caught:
        await call(scripted_lock, verb, 0.3)
    assert anyio.current_time() - started < 1.0
    assert str(caught.value) == f"{verb} lease {LEASE}: no answer within 0.30s"
    assert (caught.value.status, caught.value.verb, caught.value.lease) == (None, verb, LEASE)
    assert isinstance(caught.value.__cause__, TimeoutError | asyncio.TimeoutError)
    with anyio.fail_after(5):
        await scripted.disconnected.wait()  # the HTTP request was torn down


async def test_a_body_that_never_completes_raises_api_unavailable(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream(b'{"kind":"Lease","metadata":', then_hang=True)
    with pytest.raises(ApiUnavailable, match=r"^get lease default/scripted: no answer within"):
        await scripted_lock.get(timeout=0.3)


async def test_cancellation_is_never_turned_into_an_error(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await scripted.hang()
        raise AssertionError("released")

    scripted.handler = hang
    with anyio.move_on_after(0.2) as scope:
        await scripted_lock.get(timeout=30)
    assert scope.cancelled_caught


async def test_a_refused_connection_raises_api_unavailable(
    tmp_path: Path, make_lock: LockFactory
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = write_kubeconfig(
        tmp_path / "closed.kubeconfig", url=f"http://127.0.0.1:{port}", token="t", user="u"
    )
    lock = await make_lock(kubeconfig, NAME)
    with pytest.raises(ApiUnavailable) as caught:
        await lock.get(timeout=5)
    assert str(caught.value).startswith(f"get lease {LEASE}: cannot reach the API server: ")
    assert caught.value.status is None
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("status", "headers", "body", "retry_after", "message"),
    [
        pytest.param(
            503,
            {"Retry-After": "7"},
            status_json(503, "ServiceUnavailable", "etcd is down"),
            7.0,
            "get lease default/scripted: the API server is unavailable "
            "(503 ServiceUnavailable): etcd is down; retry after 7s",
            id="a 503 with Retry-After",
        ),
        pytest.param(
            429,
            {"Retry-After": "2"},
            status_json(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                {"retryAfterSeconds": 5},
            ),
            2.0,
            "get lease default/scripted: the API server is unavailable (429 TooManyRequests): "
            "Too many requests, please try again later.; retry after 2s",
            id="a 429 prefers the Retry-After header",
        ),
        pytest.param(
            429,
            {},
            status_json(429, "TooManyRequests", "slow down", {"retryAfterSeconds": 3}),
            3.0,
            "get lease default/scripted: the API server is unavailable (429 TooManyRequests): "
            "slow down; retry after 3s",
            id="a 429 without header uses details.retryAfterSeconds",
        ),
        pytest.param(
            504,
            {},
            status_json(
                504,
                "Timeout",
                "Timeout: Too large resource version: 99999999, current: 344",
                {
                    "causes": [{"reason": "ResourceVersionTooLarge"}],
                    "retryAfterSeconds": 1,
                },
            ),
            1.0,
            "get lease default/scripted: the API server is unavailable (504 Timeout): "
            "Timeout: Too large resource version: 99999999, current: 344; retry after 1s",
            id="the real server's too large resource version 504",
        ),
        pytest.param(
            500,
            {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
            status_json(500, None, "internal error"),
            None,
            "get lease default/scripted: the API server is unavailable (HTTP 500): internal error",
            id="an http-date Retry-After is not a delay we read",
        ),
        pytest.param(
            502,
            {"Content-Type": "text/html"},
            b"<html><body>Bad Gateway</body></html>",
            None,
            "get lease default/scripted: the API server is unavailable (HTTP 502): the body "
            "is not a Kubernetes Status: '<html><body>Bad Gateway</body></html>'",
            id="a proxy's html 502 is quoted",
        ),
    ],
)
async def test_unavailability_carries_retry_after(
    scripted: ScriptedServer,
    scripted_lock: LeaseLock,
    status: int,
    headers: dict[str, str],
    body: Any,
    retry_after: float | None,
    message: str,
) -> None:
    scripted.answer(status, body, headers)
    with pytest.raises(ApiUnavailable) as caught:
        await scripted_lock.get(timeout=5)
    assert str(caught.value) == message
    assert caught.value.retry_after == retry_after
    assert caught.value.status == status


# --------------------------------------------------------------------------------------------
# Bodies that are not what they should be
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        pytest.param(
            400,
            b"plain text, not JSON " + b"x" * 500,
            LeaseInvalid,
            "update lease default/scripted: the API server rejected the request (HTTP 400): "
            "the body is not a Kubernetes Status: 'plain text, not JSON " + "x" * 179 + "'",
            id="a non-json 400 quotes the first 200 characters",
        ),
        pytest.param(
            409,
            b'{"kind":"Status","message":"Operation cannot',
            LeaseConflict,
            "update lease default/scripted: resourceVersion 7 is stale (HTTP 409): the body "
            'is not a Kubernetes Status: \'{"kind":"Status","message":"Operation cannot\'',
            id="a truncated 409 body still says conflict",
        ),
        pytest.param(
            403,
            b"",
            LeaseForbidden,
            'update lease default/scripted forbidden: the caller lacks RBAC verb "update" on '
            'resource "leases" (API group "coordination.k8s.io") in namespace "default"',
            id="an empty 403 still names verb and resource",
        ),
        pytest.param(
            403,
            status_json(
                403,
                "Forbidden",
                'leases.coordination.k8s.io "scripted" is forbidden: ValidatingAdmissionPolicy '
                "'deny-a' with binding 'deny-a' denied request: no",
            ),
            LeaseForbidden,
            "update lease default/scripted forbidden by the API server (403 Forbidden): "
            'leases.coordination.k8s.io "scripted" is forbidden: ValidatingAdmissionPolicy '
            "'deny-a' with binding 'deny-a' denied request: no",
            id="an admission denial is not blamed on rbac",
        ),
        pytest.param(
            404,
            status_json(404, "NotFound", 'leases.coordination.k8s.io "scripted" not found'),
            LeaseNotFound,
            "update lease default/scripted: not found (404 NotFound): "
            'leases.coordination.k8s.io "scripted" not found',
            id="a 404 on update",
        ),
        pytest.param(
            415,
            status_json(415, "UnsupportedMediaType", "415: Unsupported Media Type"),
            LeaseInvalid,
            "update lease default/scripted: the API server rejected the request "
            "(415 UnsupportedMediaType): 415: Unsupported Media Type",
            id="an unexpected 4xx is invalid",
        ),
    ],
)
async def test_error_bodies_give_clear_messages(
    scripted: ScriptedServer,
    scripted_lock: LeaseLock,
    status: int,
    body: Any,
    error: type[LeaseError],
    message: str,
) -> None:
    scripted.answer(status, body)
    with pytest.raises(error) as caught:
        await scripted_lock.update(RENEWED, base=BASE, timeout=5)
    assert type(caught.value) is error
    assert str(caught.value) == message
    assert (caught.value.status, caught.value.verb, caught.value.lease) == (status, "update", LEASE)


@pytest.mark.parametrize(
    ("body", "status", "missing_ok"),
    [
        pytest.param(
            status_json(404, "NotFound", "x", {"name": NAME, "kind": "namespaces"}),
            404,
            False,
            id="a missing namespace raises",
        ),
        pytest.param(
            status_json(404, "NotFound", "the server could not find the requested resource", {}),
            404,
            False,
            id="a missing lease api raises",
        ),
        pytest.param(b"404 page not found", 404, False, id="a proxy's 404 raises"),
        pytest.param(
            status_json(
                404,
                "NotFound",
                'leases.coordination.k8s.io "scripted" not found',
                {"name": NAME, "group": "coordination.k8s.io", "kind": "leases"},
            ),
            404,
            True,
            id="a missing lease is none",
        ),
    ],
)
async def test_get_tells_a_missing_lease_from_other_404s(
    scripted: ScriptedServer, scripted_lock: LeaseLock, body: Any, status: int, missing_ok: bool
) -> None:
    scripted.answer(status, body)
    if missing_ok:
        assert await scripted_lock.get(timeout=5) is None
    else:
        with pytest.raises(LeaseNotFound):
            await scripted_lock.get(timeout=5)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(b"<html>ok</html>", "is not JSON: '<html>ok</html>'", id="html"),
        pytest.param(b'{"kind":"Lease","metadata":{', "is not JSON", id="truncated json"),
        pytest.param([1, 2], "expected a JSON object, got list", id="a json list"),
        pytest.param({"kind": "Lease"}, "metadata is missing", id="no metadata"),
        pytest.param(
            {"kind": "Lease", "metadata": {"uid": "u"}},
            "metadata.resourceVersion is missing",
            id="no resource version",
        ),
        pytest.param(
            {"kind": "Lease", "metadata": {"resourceVersion": "1"}},
            "metadata.uid is missing",
            id="no uid",
        ),
        pytest.param(
            {"kind": "Lease", "metadata": {"resourceVersion": 1, "uid": "u"}},
            "metadata.resourceVersion is missing",
            id="a numeric resource version",
        ),
        pytest.param(
            {"kind": "Status", "metadata": {}, "status": "Success"},
            "kind is 'Status'",
            id="a status instead of a lease",
        ),
    ],
)
async def test_a_2xx_that_is_not_a_usable_lease_raises_invalid(
    scripted: ScriptedServer, scripted_lock: LeaseLock, body: Any, problem: str
) -> None:
    scripted.answer(200, body)
    with pytest.raises(LeaseInvalid) as caught:
        await scripted_lock.get(timeout=5)
    assert str(caught.value).startswith("get lease default/scripted: the answer ")
    assert problem in str(caught.value)
    assert caught.value.status == 200


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(None, "spec is missing", id="no spec at all"),
        pytest.param("held", "spec is not an object", id="a string spec"),
        pytest.param(
            {"holderIdentity": "a", "leaseDurationSeconds": 5, "renewTime": "soon"},
            "renewTime is not a MicroTime: 'soon'",
            id="a garbage renew time",
        ),
        pytest.param(
            {"holderIdentity": "a", "leaseDurationSeconds": "5"},
            "leaseDurationSeconds is not a positive integer: '5'",
            id="a string duration",
        ),
    ],
)
async def test_a_lease_the_real_server_would_refuse_still_reads_with_problems(
    scripted: ScriptedServer, scripted_lock: LeaseLock, spec: Any, problem: str
) -> None:
    scripted.answer(200, lease_json(spec))
    got = await scripted_lock.get(timeout=5)
    assert got is not None
    assert problem in " ".join(got.record.problems)
    assert (got.resource_version, got.uid) == ("7", "uid-1")


# --------------------------------------------------------------------------------------------
# The watch stream
# --------------------------------------------------------------------------------------------


async def test_watch_reassembles_split_and_very_long_lines(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    modified = event_line("MODIFIED", lease_json({"holderIdentity": "pod-ü"}, rv="9"))
    big = event_line(
        "MODIFIED",
        lease_json({"holderIdentity": "pod-b"}, rv="10", annotations={"big": "x" * 3_000_000}),
    )
    bookmark = event_line(
        "BOOKMARK",
        {"kind": "Lease", "metadata": {"resourceVersion": "12", "creationTimestamp": None}},
    )
    deleted = event_line("DELETED", lease_json({"holderIdentity": "pod-b"}, rv="13"))
    cut = len(modified) // 2
    scripted.stream(
        modified[:cut],
        modified[cut:-5],
        modified[-5:] + b"\n" + big[:100],  # an empty line between events is skipped
        big[100:],
        bookmark + deleted[:1],
        deleted[1:],
    )
    async with scripted_lock.watch(resource_version="8", timeout_seconds=5) as stream:
        events = [event async for event in stream]
    assert [(e.type, e.resource_version) for e in events] == [
        (WatchEventType.MODIFIED, "9"),
        (WatchEventType.MODIFIED, "10"),
        (WatchEventType.BOOKMARK, "12"),
        (WatchEventType.DELETED, "13"),
    ]
    first, second, bookmark_event, last = events
    assert first.snapshot is not None and first.snapshot.record.holder_identity == "pod-ü"
    assert second.snapshot is not None
    assert len(second.snapshot.obj["metadata"]["annotations"]["big"]) == 3_000_000
    assert bookmark_event.snapshot is None
    assert last.snapshot is not None and last.snapshot.record.holder_identity == "pod-b"


async def test_watch_skips_events_about_other_leases(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream(
        event_line("MODIFIED", lease_json({}, rv="9", name="someone-else")),
        event_line("MODIFIED", lease_json({}, rv="10")),
    )
    async with scripted_lock.watch(resource_version="8", timeout_seconds=5) as stream:
        assert [e.resource_version async for e in stream] == ["10"]


async def test_watch_ends_with_a_final_line_that_has_no_newline(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream(event_line("ADDED", lease_json({}, rv="9")).rstrip(b"\n"))
    async with scripted_lock.watch(resource_version=None, timeout_seconds=5) as stream:
        assert [e.resource_version async for e in stream] == ["9"]


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        pytest.param(
            b"this is not json\n",
            LeaseInvalid,
            "watch lease default/scripted: the server sent a line that is not a watch event: "
            "'this is not json'",
            id="an unparsable line is invalid",
        ),
        pytest.param(
            b'{"type":"MODIFIED","object":{"kind":"Lease","metadata":{"name":"scr\n',
            LeaseInvalid,
            "watch lease default/scripted: the server sent a line that is not a watch event",
            id="a line cut short is invalid",
        ),
        pytest.param(
            event_line("SNOOZED", lease_json({})),
            LeaseInvalid,
            "watch lease default/scripted: unknown watch event type 'SNOOZED'",
            id="an unknown event type is invalid",
        ),
        pytest.param(
            event_line("MODIFIED", {"kind": "Lease", "metadata": {"name": NAME}}),
            LeaseInvalid,
            "watch lease default/scripted: the answer is not a usable Lease: "
            "metadata.resourceVersion is missing",
            id="an event lease without resource version is invalid",
        ),
        pytest.param(
            event_line("BOOKMARK", {"kind": "Lease", "metadata": {}}),
            LeaseInvalid,
            "watch lease default/scripted: a BOOKMARK without metadata.resourceVersion",
            id="a bookmark without resource version is invalid",
        ),
        pytest.param(
            event_line(
                "ERROR",
                status_json(410, "Expired", "too old resource version: 336 (347)"),
            ),
            WatchExpired,
            "watch lease default/scripted: the watch expired (resourceVersion 8) "
            "(410 Expired): too old resource version: 336 (347)",
            id="an error event with code 410 is watch expired",
        ),
        pytest.param(
            event_line("ERROR", status_json(410, "Gone", "too old resource version")),
            WatchExpired,
            "watch lease default/scripted: the watch expired (resourceVersion 8) (410 Gone)",
            id="older servers say gone",
        ),
        pytest.param(
            event_line("ERROR", status_json(500, "InternalError", "etcd went away")),
            ApiUnavailable,
            "watch lease default/scripted: the API server is unavailable (500 InternalError): "
            "etcd went away",
            id="an error event with code 500 is unavailable",
        ),
        pytest.param(
            event_line("ERROR", {"kind": "Status", "message": "???"}),
            ApiUnavailable,
            "watch lease default/scripted: the API server is unavailable (HTTP 500): ???",
            id="an error event without a code is unavailable",
        ),
    ],
)
async def test_watch_stream_errors(
    scripted: ScriptedServer,
    scripted_lock: LeaseLock,
    line: bytes,
    error: type[LeaseError],
    message: str,
) -> None:
    scripted.stream(event_line("ADDED", lease_json({}, rv="8")), line)
    seen: list[WatchEvent] = []
    with pytest.raises(error) as caught:
        await drain(scripted_lock, seen, resource_version="8")
    assert type(caught.value) is error
    assert str(caught.value).startswith(message)
    assert caught.value.verb == "watch"
    assert [e.resource_version for e in seen] == ["8"], "events before the error are delivered"


async def test_watch_refuses_an_event_longer_than_the_limit(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream(b'{"type":"ADDED","object":"' + b"x" * (9 * 1024 * 1024))
    with pytest.raises(LeaseInvalid, match="an event is longer than"):
        await drain(scripted_lock, [])


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        pytest.param(
            403,
            status_json(
                403,
                "Forbidden",
                'leases.coordination.k8s.io is forbidden: User "nobody" cannot watch resource '
                '"leases" in API group "coordination.k8s.io" in the namespace "default"',
            ),
            LeaseForbidden,
            'watch lease default/scripted forbidden: User "nobody" lacks RBAC verb "watch" on '
            'resource "leases"',
            id="a 403 names the watch verb",
        ),
        pytest.param(
            410,
            status_json(410, "Expired", "The resourceVersion for the provided watch is too old."),
            WatchExpired,
            "watch lease default/scripted: the watch expired (resourceVersion 8) (410 Expired)",
            id="a plain 410 answer is watch expired",
        ),
        pytest.param(
            500,
            status_json(
                500,
                None,
                'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": '
                "invalid syntax",
            ),
            ApiUnavailable,
            "watch lease default/scripted: the API server is unavailable (HTTP 500)",
            id="the real server's 500 for a bad resource version",
        ),
    ],
)
async def test_watch_that_cannot_start_raises_the_mapped_error(
    scripted: ScriptedServer,
    scripted_lock: LeaseLock,
    status: int,
    body: Any,
    error: type[LeaseError],
    message: str,
) -> None:
    scripted.answer(status, body)
    with pytest.raises(error) as caught:
        async with scripted_lock.watch(resource_version="8", timeout_seconds=5):
            raise AssertionError("the watch should not start")
    assert str(caught.value).startswith(message)
    assert caught.value.status == status


async def test_a_stalled_watch_fails_a_few_seconds_after_its_timeout(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream(event_line("ADDED", lease_json({}, rv="8")), then_hang=True)
    started = anyio.current_time()
    seen: list[WatchEvent] = []
    with anyio.fail_after(10), pytest.raises(ApiUnavailable) as caught:
        await drain(scripted_lock, seen, timeout_seconds=1)
    elapsed = anyio.current_time() - started
    assert [e.resource_version for e in seen] == ["8"]
    assert 1 <= elapsed < 6
    assert str(caught.value).startswith("watch lease default/scripted: no answer within")
    with anyio.fail_after(5):
        await scripted.disconnected.wait()


async def test_leaving_a_watch_early_closes_the_response(
    scripted: ScriptedServer, scripted_lock: LeaseLock
) -> None:
    scripted.stream(event_line("ADDED", lease_json({}, rv="8")), then_hang=True)
    async with scripted_lock.watch(resource_version=None, timeout_seconds=30) as stream:
        async for event in stream:
            assert event.resource_version == "8"
            break
    with anyio.fail_after(5):
        await scripted.disconnected.wait()


async def test_a_watch_is_entered_once(scripted: ScriptedServer, scripted_lock: LeaseLock) -> None:
    scripted.stream()
    watch = scripted_lock.watch(resource_version=None, timeout_seconds=1)
    async with watch as stream:
        assert [e async for e in stream] == []
    with pytest.raises(RuntimeError, match="entered only once"):
        async with watch:
            pass


@pytest.mark.parametrize(
    ("timeout_seconds", "error"),
    [
        pytest.param(0, ValueError, id="zero would mean the server's default"),
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(1.5, TypeError, id="not whole seconds"),
    ],
)
def test_watch_needs_whole_positive_seconds(
    scripted_lock: LeaseLock, timeout_seconds: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="timeout_seconds"):
        scripted_lock.watch(resource_version=None, timeout_seconds=timeout_seconds)


# ============================================================================================
# Faults injected into LeaseApiServer
# ============================================================================================


@pytest.fixture
async def embedded_lock(leaderelect_server: LeaseApiServer, make_lock: LockFactory) -> LeaseLock:
    return await make_lock(leaderelect_server.kubeconfig("admin"), NAME)


@pytest.mark.parametrize("verb", VERBS)
async def test_a_hung_server_raises_api_unavailable_within_the_timeout(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock, verb: str
) -> None:
    base = await embedded_lock.create(HELD, timeout=5) if verb == "update" else BASE
    leaderelect_server.faults.add(Hang(verb=verb))
    started = anyio.current_time()
    with pytest.raises(ApiUnavailable) as caught:
        await call(embedded_lock, verb, 0.3, base)
    assert anyio.current_time() - started < 1.0
    assert str(caught.value) == f"{verb} lease {LEASE}: no answer within 0.30s"


async def test_latency_below_the_timeout_is_only_slow(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock
) -> None:
    with leaderelect_server.faults.add(Latency(seconds=0.3, verb="get")):
        assert await embedded_lock.get(timeout=3) is None
        with pytest.raises(ApiUnavailable, match=r"no answer within 0\.10s"):
            await embedded_lock.get(timeout=0.1)


@pytest.mark.parametrize(
    ("fault", "retry_after", "message"),
    [
        pytest.param(
            ErrorResponse(status=503, retry_after=7, verb="get", times=1),
            7.0,
            "get lease default/scripted: the API server is unavailable (503 ServiceUnavailable): "
            "injected fault: 503 ServiceUnavailable; retry after 7s",
            id="a 503 with retry after",
        ),
        pytest.param(
            ErrorResponse(status=429, retry_after=2, verb="get", times=1),
            2.0,
            "get lease default/scripted: the API server is unavailable (429 TooManyRequests): "
            "injected fault: 429 TooManyRequests; retry after 2s",
            id="a 429 with retry after",
        ),
        pytest.param(
            ErrorResponse(status=500, verb="get", times=1),
            None,
            "get lease default/scripted: the API server is unavailable (500 InternalError): "
            "injected fault: 500 InternalError",
            id="a 500 without",
        ),
    ],
)
async def test_injected_server_errors_are_unavailable_with_retry_after(
    leaderelect_server: LeaseApiServer,
    embedded_lock: LeaseLock,
    fault: ErrorResponse,
    retry_after: float | None,
    message: str,
) -> None:
    leaderelect_server.faults.add(fault)
    with pytest.raises(ApiUnavailable) as caught:
        await embedded_lock.get(timeout=5)
    assert str(caught.value) == message
    assert caught.value.retry_after == retry_after
    assert caught.value.status == fault.status
    assert await embedded_lock.get(timeout=5) is None, "the fault fired once"


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(DropConnection(verb="update"), id="the connection drops after the commit"),
        pytest.param(Hang(verb="update", when="after"), id="the answer never comes"),
    ],
)
async def test_a_lost_answer_is_unavailable_although_the_write_committed(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock, fault: Fault
) -> None:
    base = await embedded_lock.create(HELD, timeout=5)
    leaderelect_server.faults.add(fault)
    with pytest.raises(ApiUnavailable) as caught:
        await embedded_lock.update(RENEWED, base=base, timeout=0.5)
    assert caught.value.status is None
    leaderelect_server.faults.clear()
    got = await embedded_lock.get(timeout=5)
    assert got is not None
    assert got.record == RENEWED, "ApiUnavailable does not mean the write was not applied"


async def test_watch_from_a_compacted_resource_version_raises_watch_expired(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock
) -> None:
    created = await embedded_lock.create(HELD, timeout=5)
    await embedded_lock.update(RENEWED, base=created, timeout=5)
    leaderelect_server.compact()
    with pytest.raises(WatchExpired) as caught:
        await drain(embedded_lock, [], resource_version=created.resource_version)
    assert str(caught.value).startswith(
        f"watch lease {LEASE}: the watch expired (resourceVersion {created.resource_version}) "
        "(410 Expired): too old resource version"
    )


async def test_a_refused_watch_raises_the_mapped_error(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock
) -> None:
    leaderelect_server.faults.add(ErrorResponse(status=410, verb="watch", times=1))
    with pytest.raises(WatchExpired):
        await drain(embedded_lock, [], resource_version="1")
    leaderelect_server.faults.add(ErrorResponse(status=503, retry_after=1, verb="watch"))
    with pytest.raises(ApiUnavailable) as caught:
        await drain(embedded_lock, [], resource_version="1")
    assert caught.value.retry_after == 1.0


async def test_a_cut_watch_ends_the_iteration(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock
) -> None:
    created = await embedded_lock.create(HELD, timeout=5)
    seen: list[str] = []
    with anyio.fail_after(5):
        async with embedded_lock.watch(resource_version=None, timeout_seconds=30) as stream:
            async for event in stream:
                seen.append(event.resource_version)
                assert leaderelect_server.faults.cut_watches(name=NAME) == 1
    assert seen == [created.resource_version]


# ============================================================================================
# Construction, configuration, closing
# ============================================================================================


@pytest.mark.parametrize(
    ("name", "namespace", "argument"),
    [
        pytest.param("", "default", "name", id="an empty name"),
        pytest.param("Not_A_DNS_Name", "default", "name", id="a name with capitals"),
        pytest.param("-a", "default", "name", id="a name starting with a dash"),
        pytest.param("a" * 254, "default", "name", id="a name longer than 253"),
        pytest.param("ok", "", "namespace", id="an empty namespace"),
        pytest.param("ok", "a.b", "namespace", id="a namespace with a dot"),
        pytest.param("ok", "a" * 64, "namespace", id="a namespace longer than 63"),
        pytest.param("ok", "Default", "namespace", id="a namespace with a capital"),
    ],
)
async def test_invalid_names_raise_config_error_naming_the_argument(
    scripted: ScriptedServer,
    tmp_path: Path,
    name: str,
    namespace: str,
    argument: str,
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "k", url=scripted.url, token="t", user="u")
    with pytest.raises(ConfigError, match=rf"^{argument} "):
        await LeaseLock.from_kubeconfig(name, namespace, config_file=kubeconfig)
    async with await LeaseLock.from_kubeconfig("ok", config_file=kubeconfig) as good:
        with pytest.raises(ConfigError, match=rf"^{argument} "):
            LeaseLock(good._api_client, name, namespace)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a", id="one letter"),
        pytest.param("kube-controller-manager", id="dashes"),
        pytest.param("leases.example.com", id="dots"),
        pytest.param("a" * 253, id="253 characters"),
    ],
)
def test_valid_names_are_accepted(scripted_lock: LeaseLock, name: str) -> None:
    lock = LeaseLock(scripted_lock._api_client, name, "a" * 63)
    assert lock.lease == f"{'a' * 63}/{name}"
    assert repr(lock) == f"LeaseLock(name={name!r}, namespace={'a' * 63!r})"


async def test_from_kubeconfig_defaults_the_namespace_from_the_context(
    scripted: ScriptedServer, tmp_path: Path
) -> None:
    path = tmp_path / "multi.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": scripted.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "ops", "context": {"cluster": "c", "user": "u", "namespace": "ops"}},
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "ops",
            }
        )
    )
    async with await LeaseLock.from_kubeconfig("x", config_file=path) as lock:
        assert lock.namespace == "ops"
    async with await LeaseLock.from_kubeconfig("x", config_file=str(path), context="plain") as lock:
        assert lock.namespace == "default"
    async with await LeaseLock.from_kubeconfig("x", "given", config_file=path) as lock:
        assert lock.namespace == "given"
    with pytest.raises(ConfigError, match=r"^config_file: cannot load context 'nope' of"):
        await LeaseLock.from_kubeconfig("x", config_file=path, context="nope")


async def test_from_kubeconfig_reads_kubeconfig_from_the_environment(
    scripted: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(tmp_path / "env.kubeconfig", url=scripted.url, token="t", user="u")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    async with await LeaseLock.from_kubeconfig("x") as lock:
        assert lock.namespace == "default"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(None, r"^config_file: no kubeconfig found at '.*nowhere'$", id="no file"),
        pytest.param("{}", r"^config_file: cannot load kubeconfig", id="an empty document"),
        pytest.param(": : :", r"^config_file: cannot load kubeconfig", id="not yaml"),
    ],
)
async def test_from_kubeconfig_with_an_unusable_file_raises_config_error(
    tmp_path: Path, content: str | None, match: str
) -> None:
    path = tmp_path / "nowhere"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        await LeaseLock.from_kubeconfig("x", config_file=path)


async def test_aclose_closes_only_a_client_the_lock_owns(
    scripted: ScriptedServer, tmp_path: Path
) -> None:
    scripted.answer(
        404,
        status_json(
            404, "NotFound", "x", {"name": NAME, "group": "coordination.k8s.io", "kind": "leases"}
        ),
    )
    kubeconfig = write_kubeconfig(tmp_path / "k", url=scripted.url, token="t", user="u")
    owned = await LeaseLock.from_kubeconfig(NAME, config_file=kubeconfig)
    try:
        borrowed = LeaseLock(owned._api_client, NAME)
        await borrowed.aclose()
        await borrowed.aclose()  # idempotent
        with pytest.raises(RuntimeError, match="is closed"):
            await borrowed.get(timeout=5)
        assert await owned.get(timeout=5) is None, "the borrowed client still works"
    finally:
        await owned.aclose()
    assert owned._api_client.rest_client.pool_manager.closed
    with pytest.raises(RuntimeError, match="is closed"):
        await owned.get(timeout=5)


async def test_in_cluster_uses_the_service_account(
    kube: KubeTarget,
    lease_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kube.ca_file is None:
        pytest.skip(f"in-cluster config needs https; the {kube.kind} server is plain http")
    from urllib.parse import urlsplit

    import leaderelect._lock as lock_module

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(kube.token("elector"))
    (account / "ca.crt").write_bytes(kube.ca_file.read_bytes())
    (account / "namespace").write_text("default\n")
    url = urlsplit(kube.url)
    monkeypatch.setattr(lock_module, "_SERVICE_ACCOUNT_DIR", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(url.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    async with await LeaseLock.in_cluster(lease_name) as lock:
        assert lock.lease == f"default/{lease_name}"
        created = await lock.create(HELD, timeout=5)
        assert created.record == HELD
    (account / "namespace").unlink()
    with pytest.raises(ConfigError, match=r"^namespace: not given"):
        await LeaseLock.in_cluster(lease_name)
    async with await LeaseLock.in_cluster(lease_name, "default") as lock:
        assert await lock.get(timeout=5) is not None


async def test_in_cluster_outside_a_pod_raises_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match=r"^in_cluster: cannot load the service-account config"):
        await LeaseLock.in_cluster("x")
