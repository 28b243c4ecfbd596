"""Watches: the event stream, selectors, resuming, timeouts, bookmarks and expiry.

Watch timeouts are the only sleeps here, kept as short as the behaviour allows. Watches that need
no initial events start from an explicit resourceVersion: on kube-apiserver 1.36 a watch without
one is a consistent read from the watch cache (see ``test_watch_without_resource_version...``).
"""

from __future__ import annotations

import asyncio

import pytest
from _kube import (
    GROUP,
    RV,
    Json,
    KubeTarget,
    RawClient,
    WatchEvent,
    assert_json,
    leases_path,
    mask_numbers,
    normalise,
    status_body,
)
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

MERGE = "application/merge-patch+json"


def _selector(name: str) -> str:
    return f"metadata.name={name}"


async def _merge(raw: RawClient, name: str, spec: Json) -> Json:
    resp = await raw.request("PATCH", leases_path(name=name), {"spec": spec}, content_type=MERGE)
    assert resp.status == 200, resp.body
    return resp.json()


async def _create(raw: RawClient, name: str, spec: Json | None = None) -> Json:
    resp = await raw.create_lease(name, spec)
    assert resp.status == 201, resp.body
    return resp.json()


def _rv(obj: Json) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def _client_watch(api: k8s.CoordinationV1Api, name: str, rv: str) -> list[Json]:
    """The events of a kubernetes_asyncio watch on one lease from ``rv``, until its timeout."""
    events = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            api.list_namespaced_lease,
            "default",
            field_selector=_selector(name),
            resource_version=rv,
            timeout_seconds=5,
        ):
            events.append(event)
    return events


async def test_watch_without_resource_version_starts_with_added_for_existing_leases(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name, {"holderIdentity": "a"})
    params = {"fieldSelector": _selector(lease_name), "timeoutSeconds": "10"}
    async with raw.watch(leases_path(), params) as stream:
        assert stream.status == 200
        assert stream.headers.get("Content-Type") == "application/json"
        assert "Content-Length" not in stream.headers
        (event,) = await stream.take(1)
    assert event.type == "ADDED"
    # Objects in events carry kind and apiVersion, unlike list items.
    assert event.object == created


async def test_watch_line_is_one_compact_json_event(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name, {"holderIdentity": "a"})
    params = {"resourceVersion": "0", "fieldSelector": _selector(lease_name)}
    async with raw.watch(leases_path(), params) as stream:
        line = await asyncio.wait_for(stream.response.content.readline(), 10)
    assert line.endswith(b"}\n")
    assert b"\n" not in line[:-1]
    assert line.startswith(b'{"type":"ADDED","object":{"kind":"Lease","apiVersion":')
    assert line.count(created["metadata"]["uid"].encode()) == 1


async def test_watch_delivers_modified_and_deleted_of_the_selected_lease_only(
    kube: KubeTarget,
) -> None:
    raw = kube.raw()
    watched, other = kube.lease_name("w"), kube.lease_name("o")
    await _create(raw, watched, {"holderIdentity": "a"})
    start = await _create(raw, other, {"holderIdentity": "a"})
    params = {
        "resourceVersion": start["metadata"]["resourceVersion"],
        "fieldSelector": _selector(watched),
        "timeoutSeconds": "10",
    }
    async with raw.watch(leases_path(), params) as stream:
        await _merge(raw, other, {"holderIdentity": "b"})  # filtered out by the selector
        modified = await _merge(raw, watched, {"holderIdentity": "b"})
        deleted = await raw.request("DELETE", leases_path(name=watched))
        assert deleted.status == 200
        events = await stream.take(2)
    assert [e.type for e in events] == ["MODIFIED", "DELETED"]
    assert events[0].object == modified
    # DELETED carries the last state, at a new resourceVersion: the deletion's revision.
    assert_json(events[1].object, normalise(modified))
    assert int(events[1].object["metadata"]["resourceVersion"]) > _rv(modified)


async def test_watch_of_the_namespace_sees_every_lease(kube: KubeTarget) -> None:
    raw = kube.raw()
    first, second = kube.lease_name("a"), kube.lease_name("b")
    start = await _create(raw, first)
    params = {"resourceVersion": start["metadata"]["resourceVersion"], "timeoutSeconds": "10"}
    async with raw.watch(leases_path(), params) as stream:
        created = await _create(raw, second)
        modified = await _merge(raw, first, {"holderIdentity": "x"})
        seen: list[WatchEvent] = []
        while len(seen) < 2:
            event = await stream.next()
            assert event is not None
            if event.object["metadata"]["name"] in (first, second):
                seen.append(event)
    assert [(e.type, e.object) for e in seen] == [("ADDED", created), ("MODIFIED", modified)]


async def test_watch_from_a_resource_version_replays_only_later_events(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name, {"holderIdentity": "a"})
    second = await _merge(raw, lease_name, {"holderIdentity": "b"})
    third = await _merge(raw, lease_name, {"holderIdentity": "c"})
    params = {
        "resourceVersion": created["metadata"]["resourceVersion"],
        "fieldSelector": _selector(lease_name),
        "timeoutSeconds": "10",
    }
    async with raw.watch(leases_path(), params) as stream:
        events = await stream.take(2)
    assert [(e.type, e.object) for e in events] == [("MODIFIED", second), ("MODIFIED", third)]


async def test_watch_ends_at_timeout_seconds_without_a_final_event(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name)
    params = {
        "resourceVersion": created["metadata"]["resourceVersion"],
        "fieldSelector": _selector(lease_name),
        "timeoutSeconds": "1",
    }
    async with raw.watch(leases_path(), params) as stream:
        assert stream.status == 200
        events = await stream.rest(timeout=5)
    assert events == []
    assert stream.ended_at is not None
    assert 0.8 <= stream.ended_at <= 2.5


@pytest.mark.parametrize("value", ["true", "1", "True", "yes", "no", ""])
async def test_watch_query_values_that_start_a_watch(
    kube: KubeTarget, lease_name: str, value: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name)
    params = {"watch": value, "resourceVersion": "0", "fieldSelector": _selector(lease_name)}
    async with raw.watch(leases_path(), params) as stream:
        assert stream.status == 200
        (event,) = await stream.take(1)
    assert (event.type, event.object) == ("ADDED", created)


@pytest.mark.parametrize("value", ["false", "0", "FALSE"])
async def test_watch_query_values_that_list(kube: KubeTarget, lease_name: str, value: str) -> None:
    raw = kube.raw()
    await _create(raw, lease_name)
    resp = await raw.get(leases_path(), watch=value, fieldSelector=_selector(lease_name))
    assert resp.status == 200
    listed = resp.json()
    assert listed["kind"] == "LeaseList"
    assert [i["metadata"]["name"] for i in listed["items"]] == [lease_name]


async def test_bookmark_arrives_about_two_seconds_before_the_timeout(kube: KubeTarget) -> None:
    raw = kube.raw()
    watched, other = kube.lease_name("w"), kube.lease_name("o")
    created = await _create(raw, watched)
    await _create(raw, other)
    params = {
        "resourceVersion": created["metadata"]["resourceVersion"],
        "fieldSelector": _selector(watched),
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "3",
    }
    async with raw.watch(leases_path(), params) as stream:
        # A bookmark goes out only with a revision newer than the one the watch started from.
        newer = await _merge(raw, other, {"holderIdentity": "x"})
        events = await stream.rest(timeout=6)
    # kube-apiserver files the watcher under the whole second of (deadline - 2 s) and checks
    # its buckets on a jittered 1 s tick: the bookmark comes up to 1 s early and may come twice.
    assert 1 <= len(events) <= 2, [(e.at, e.type) for e in events]
    for bookmark in events:
        assert bookmark.type == "BOOKMARK"
        assert_json(
            bookmark.object,
            {
                "kind": "Lease",
                "apiVersion": f"{GROUP}/v1",
                "metadata": {"resourceVersion": RV},
                "spec": {},
            },
        )
        assert int(bookmark.object["metadata"]["resourceVersion"]) >= _rv(newer)
    assert events[0].at <= 2.3
    assert stream.ended_at is not None
    assert 2.5 <= stream.ended_at <= 4.5


async def test_too_old_resource_version_gives_one_expired_error_event_then_the_end(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name, {"holderIdentity": "a"})
    await _merge(raw, lease_name, {"holderIdentity": "b"})
    await kube.expire_watch_history()
    old = created["metadata"]["resourceVersion"]
    params = {"resourceVersion": old, "fieldSelector": _selector(lease_name), "timeoutSeconds": "5"}
    async with kube.raw().watch(leases_path(), params) as stream:
        assert stream.status == 200
        events = await stream.rest(timeout=8)
    assert [e.type for e in events] == ["ERROR"]
    error = events[0].object
    message = error["message"]
    assert error == status_body(410, "Expired", message)
    assert mask_numbers(message) == "too old resource version: N (N)"
    requested, oldest = (
        int(n) for n in message.removeprefix("too old resource version: ").strip(")").split(" (")
    )
    assert requested == int(old)
    assert oldest > requested
    assert stream.ended_at is not None
    assert stream.ended_at < 2

    # kubernetes_asyncio turns the ERROR event into an ApiException (no retry with a timeout).
    api = await kube.coordination("admin")
    with pytest.raises(ApiException) as caught:
        await _client_watch(api, lease_name, old)
    assert caught.value.status == 410
    assert caught.value.reason == f"Expired: {message}"


async def test_watch_with_a_future_resource_version_stays_silent_until_the_timeout(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name)
    future = str(_rv(created) + 1_000_000)
    params = {
        "resourceVersion": future,
        "fieldSelector": _selector(lease_name),
        "timeoutSeconds": "1",
    }
    async with raw.watch(leases_path(), params) as stream:
        assert stream.status == 200
        events = await stream.rest(timeout=5)
    assert events == []
    assert stream.ended_at is not None
    assert 0.8 <= stream.ended_at <= 2.5


INVALID_RV = (
    'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax'
)


async def test_watch_with_a_non_numeric_resource_version_is_500_without_reason(
    kube: KubeTarget,
) -> None:
    resp = await kube.raw().get(leases_path(), watch="1", resourceVersion="abc", timeoutSeconds="1")
    assert resp.status == 500
    assert resp.json() == status_body(500, None, INVALID_RV)


async def test_get_with_a_non_numeric_resource_version_is_500(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    await _create(raw, lease_name)
    resp = await raw.get(leases_path(name=lease_name), resourceVersion="abc")
    assert resp.status == 500
    assert resp.json() == status_body(500, None, INVALID_RV)


async def test_list_with_a_non_numeric_resource_version_is_400(kube: KubeTarget) -> None:
    resp = await kube.raw().get(leases_path(), resourceVersion="abc")
    assert resp.status == 400
    assert resp.json() == status_body(400, "BadRequest", f"invalid resource version: {INVALID_RV}")


async def test_get_and_list_with_a_future_resource_version_are_504_too_large(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name)
    future = "99999999"
    get, listed = await asyncio.gather(
        raw.get(leases_path(name=lease_name), resourceVersion=future),
        raw.get(leases_path(), resourceVersion=future, resourceVersionMatch="NotOlderThan"),
    )
    for resp in (get, listed):
        assert resp.status == 504
        assert resp.headers.get("Retry-After") == "1"
        body = resp.json()
        current = int(body["message"].rpartition("current: ")[2])
        assert current >= _rv(created)
        assert body == status_body(
            504,
            "Timeout",
            f"Timeout: Too large resource version: {future}, current: {current}",
            {
                "causes": [
                    {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                ],
                "retryAfterSeconds": 1,
            },
        )


async def test_get_with_resource_version_zero_is_served(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    created = await _create(raw, lease_name, {"holderIdentity": "a"})
    resp = await raw.get(leases_path(name=lease_name), resourceVersion="0")
    assert resp.status == 200
    assert resp.json() == created


async def test_elector_cannot_watch_at_cluster_scope(kube: KubeTarget) -> None:
    resp = await kube.raw("elector").get("/apis/coordination.k8s.io/v1/leases", watch="1")
    assert resp.status == 403
    assert resp.json()["message"] == (
        'leases.coordination.k8s.io is forbidden: User "elector" cannot watch resource "leases" '
        'in API group "coordination.k8s.io" at the cluster scope'
    )


async def test_initial_added_events_come_in_name_order(kube: KubeTarget) -> None:
    raw = kube.raw()
    label = kube.lease_name("set")
    names = [kube.lease_name(hint) for hint in ("c", "a", "b")]
    for name in names:
        body = {"metadata": {"name": name, "labels": {"set": label}}, "spec": {}}
        assert (await raw.request("POST", leases_path(), body)).status == 201
    params = {"labelSelector": f"set={label}", "timeoutSeconds": "10"}
    async with raw.watch(leases_path(), params) as stream:
        events = await stream.take(3)
    assert [e.type for e in events] == ["ADDED"] * 3
    assert [e.object["metadata"]["name"] for e in events] == sorted(names)
