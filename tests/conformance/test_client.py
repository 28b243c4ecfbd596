"""The Lease API through kubernetes_asyncio configured from kubeconfigs, as the elector uses it."""

from __future__ import annotations

import datetime
import json

import pytest
from _kube import Json, KubeTarget
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

NS = "default"
UTC = datetime.timezone.utc


def _lease(name: str, spec: k8s.V1LeaseSpec | None = None) -> k8s.V1Lease:
    return k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=name), spec=spec or k8s.V1LeaseSpec())


def _holder(name: str, holder: str) -> k8s.V1Lease:
    return _lease(name, k8s.V1LeaseSpec(holder_identity=holder))


def _status(error: ApiException) -> Json:
    """The Status body of an ApiException."""
    assert error.body is not None
    return json.loads(error.body)


async def test_create_read_replace_delete_round_trip(kube: KubeTarget, lease_name: str) -> None:
    api = await kube.coordination("elector")
    admin = await kube.coordination("admin")
    renew = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    created = await api.create_namespaced_lease(
        NS,
        _lease(
            lease_name,
            k8s.V1LeaseSpec(
                holder_identity="me",
                lease_duration_seconds=15,
                acquire_time=renew,
                renew_time=renew,
                lease_transitions=0,
            ),
        ),
    )
    assert isinstance(created, k8s.V1Lease)
    assert created.kind == "Lease"
    assert created.api_version == "coordination.k8s.io/v1"
    assert created.spec.renew_time == renew
    assert created.spec.lease_transitions == 0
    assert created.metadata.managed_fields[0].manager == "OpenAPI-Generator"

    read = await api.read_namespaced_lease(lease_name, NS)
    assert read.to_dict() == created.to_dict()

    read.spec.holder_identity = "you"
    replaced = await api.replace_namespaced_lease(lease_name, NS, read)
    assert replaced.spec.holder_identity == "you"
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    status = await admin.delete_namespaced_lease(lease_name, NS)
    assert isinstance(status, k8s.V1Status)
    assert status.status == "Success"
    assert status.details.name == lease_name
    assert status.details.uid == created.metadata.uid


async def test_patch_types_through_the_client(kube: KubeTarget, lease_name: str) -> None:
    api = await kube.coordination("elector")
    await api.create_namespaced_lease(NS, _holder(lease_name, "a"))
    # A dict goes as a strategic merge patch, a list as a JSON patch; merge needs _content_type.
    strategic = await api.patch_namespaced_lease(lease_name, NS, {"spec": {"holderIdentity": "s"}})
    assert strategic.spec.holder_identity == "s"
    json_patch = await api.patch_namespaced_lease(
        lease_name, NS, [{"op": "replace", "path": "/spec/holderIdentity", "value": "j"}]
    )
    assert json_patch.spec.holder_identity == "j"
    merge = await api.patch_namespaced_lease(
        lease_name,
        NS,
        {"spec": {"holderIdentity": None, "leaseDurationSeconds": 7}},
        _content_type="application/merge-patch+json",  # type: ignore[call-arg]  # not in the stub
    )
    assert merge.spec.to_dict()["holder_identity"] is None
    assert merge.spec.lease_duration_seconds == 7


async def test_list_returns_items_and_a_resource_version(kube: KubeTarget, lease_name: str) -> None:
    api = await kube.coordination("reader")
    admin = await kube.coordination("admin")
    created = await admin.create_namespaced_lease(NS, _holder(lease_name, "a"))
    listed = await api.list_namespaced_lease(NS, field_selector=f"metadata.name={lease_name}")
    assert isinstance(listed, k8s.V1LeaseList)
    assert [item.metadata.uid for item in listed.items] == [created.metadata.uid]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)


@pytest.mark.parametrize(
    ("status", "phrase", "reason"),
    [(404, "Not Found", "NotFound"), (409, "Conflict", "AlreadyExists")],
)
async def test_errors_raise_api_exception_with_status_body(
    kube: KubeTarget, lease_name: str, status: int, phrase: str, reason: str
) -> None:
    api = await kube.coordination("elector")
    if status == 409:
        await api.create_namespaced_lease(NS, _lease(lease_name))
    call = (
        api.read_namespaced_lease(lease_name, NS)
        if status == 404
        else api.create_namespaced_lease(NS, _lease(lease_name))
    )
    with pytest.raises(ApiException) as caught:
        await call
    error = caught.value
    assert error.status == status
    assert error.reason == phrase
    assert error.headers is not None
    assert error.headers["Content-Type"] == "application/json"
    body = _status(error)
    assert (body["kind"], body["reason"], body["code"]) == ("Status", reason, status)
    assert body["details"]["name"] == lease_name


async def test_replace_with_a_stale_object_raises_409_conflict(
    kube: KubeTarget, lease_name: str
) -> None:
    api = await kube.coordination("elector")
    stale = await api.create_namespaced_lease(NS, _holder(lease_name, "a"))
    fresh = await api.read_namespaced_lease(lease_name, NS)
    fresh.spec.holder_identity = "b"
    await api.replace_namespaced_lease(lease_name, NS, fresh)
    stale.spec.holder_identity = "c"
    with pytest.raises(ApiException) as caught:
        await api.replace_namespaced_lease(lease_name, NS, stale)
    assert caught.value.status == 409
    assert _status(caught.value)["reason"] == "Conflict"


async def test_forbidden_raises_403_naming_the_verb(kube: KubeTarget, lease_name: str) -> None:
    reader = await kube.coordination("reader")
    with pytest.raises(ApiException) as caught:
        await reader.create_namespaced_lease(NS, _lease(lease_name))
    assert caught.value.status == 403
    assert caught.value.reason == "Forbidden"
    assert 'User "reader" cannot create resource "leases"' in _status(caught.value)["message"]


async def test_datetime_without_microseconds_is_rejected_by_the_server(
    kube: KubeTarget, lease_name: str
) -> None:
    # The client serialises with isoformat(), which drops a zero fraction: the server needs six
    # digits. A caller must format MicroTime itself (or never send microsecond == 0).
    api = await kube.coordination("elector")
    whole_second = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    with pytest.raises(ApiException) as caught:
        await api.create_namespaced_lease(
            NS, _lease(lease_name, k8s.V1LeaseSpec(renew_time=whole_second))
        )
    assert caught.value.status == 400
    assert _status(caught.value)["message"].endswith(
        'parsing time "2024-05-06T07:08:09+00:00" as "2006-01-02T15:04:05.000000Z07:00": '
        'cannot parse "+00:00" as ".000000"'
    )


async def test_watch_streams_typed_events_from_a_resource_version(
    kube: KubeTarget, lease_name: str
) -> None:
    api = await kube.coordination("elector")
    admin = await kube.coordination("admin")
    created = await api.create_namespaced_lease(NS, _holder(lease_name, "a"))
    for holder in ("b", "c"):
        await api.patch_namespaced_lease(lease_name, NS, {"spec": {"holderIdentity": holder}})
    await admin.delete_namespaced_lease(lease_name, NS)
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            api.list_namespaced_lease,
            NS,
            field_selector=f"metadata.name={lease_name}",
            resource_version=created.metadata.resource_version,
            timeout_seconds=10,
        ):
            lease = event["object"]
            assert isinstance(lease, k8s.V1Lease)
            assert event["raw_object"]["kind"] == "Lease"
            seen.append((event["type"], lease.spec.holder_identity))
            if event["type"] == "DELETED":
                # The client keeps the last resourceVersion to resume from.
                resume_from: object = stream.resource_version  # the stub types it as None
                assert resume_from == lease.metadata.resource_version
                break
    assert seen == [("MODIFIED", "b"), ("MODIFIED", "c"), ("DELETED", "c")]
