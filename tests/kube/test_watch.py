"""LeaseLock.watch and the NDJSON stream reader (``leaderelect/_kube/_watch.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from _kube import KubeTarget, leases_path, status_body

from leaderelect._errors import (
    ApiUnavailable,
    LeaseError,
    LeaseForbidden,
    LeaseInvalid,
    WatchExpired,
)
from leaderelect._kube import LeaseLock
from leaderelect._lease_client import WatchEvent, WatchEventType
from leaderelect.testing import ErrorResponse, LeaseApiServer

from ._support import (
    HELD,
    LEASE,
    NAME,
    RENEWED,
    TAKEN,
    LockFactory,
    ScriptedServer,
    event_line,
    lease_json,
)

# ============================================================================================
# Both servers
# ============================================================================================


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


# ============================================================================================
# A scripted server: the request, and streams no well-behaved server sends
# ============================================================================================


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
                status_body(410, "Expired", "too old resource version: 336 (347)"),
            ),
            WatchExpired,
            "watch lease default/scripted: the watch expired (resourceVersion 8) "
            "(410 Expired): too old resource version: 336 (347)",
            id="an error event with code 410 is watch expired",
        ),
        pytest.param(
            event_line("ERROR", status_body(410, "Gone", "too old resource version")),
            WatchExpired,
            "watch lease default/scripted: the watch expired (resourceVersion 8) (410 Gone)",
            id="older servers say gone",
        ),
        pytest.param(
            event_line("ERROR", status_body(500, "InternalError", "etcd went away")),
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
            status_body(
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
            status_body(410, "Expired", "The resourceVersion for the provided watch is too old."),
            WatchExpired,
            "watch lease default/scripted: the watch expired (resourceVersion 8) (410 Expired)",
            id="a plain 410 answer is watch expired",
        ),
        pytest.param(
            500,
            status_body(
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
