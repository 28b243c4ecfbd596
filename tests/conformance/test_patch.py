"""PATCH in its three JSON flavours: merge, JSON patch and strategic merge."""

from __future__ import annotations

import json

import pytest
from _kube import (
    GROUP,
    Json,
    KubeTarget,
    RawClient,
    RawResponse,
    assert_json,
    lease_body,
    lease_details,
    leases_path,
    status_body,
)

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

SPEC = {
    "holderIdentity": "a",
    "leaseDurationSeconds": 15,
    "renewTime": "2024-05-06T07:08:09.123456Z",
    "leaseTransitions": 0,
}


async def _patch(raw: RawClient, name: str, body: Json, content_type: str) -> RawResponse:
    return await raw.request("PATCH", leases_path(name=name), body, content_type=content_type)


async def _created(raw: RawClient, name: str) -> Json:
    resp = await raw.create_lease(name, SPEC)
    assert resp.status == 201
    return resp.json()


@pytest.mark.parametrize("content_type", [MERGE, STRATEGIC])
async def test_merge_patches_change_fields_and_null_removes_one(
    kube: KubeTarget, lease_name: str, content_type: str
) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    patch = {"spec": {"holderIdentity": None, "leaseDurationSeconds": 20}}
    resp = await _patch(raw, lease_name, patch, content_type)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    expected_spec = {
        "leaseDurationSeconds": 20,
        "renewTime": "2024-05-06T07:08:09.123456Z",
        "leaseTransitions": 0,
    }
    # The removed field leaves managedFields too.
    assert_json(resp.json(), lease_body(lease_name, expected_spec))
    patched_rv = int(resp.json()["metadata"]["resourceVersion"])
    assert patched_rv > int(created["metadata"]["resourceVersion"])


async def test_json_patch_applies_operations_in_order(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    await _created(raw, lease_name)
    operations = [
        {"op": "test", "path": "/spec/holderIdentity", "value": "a"},
        {"op": "replace", "path": "/spec/leaseDurationSeconds", "value": 30},
        {"op": "add", "path": "/spec/holderIdentity", "value": "j"},
        {"op": "remove", "path": "/spec/renewTime"},
    ]
    resp = await _patch(raw, lease_name, operations, JSON_PATCH)
    assert resp.status == 200
    assert_json(
        resp.json(),
        lease_body(
            lease_name, {"holderIdentity": "j", "leaseDurationSeconds": 30, "leaseTransitions": 0}
        ),
    )


async def test_failing_json_patch_test_operation_is_422_without_details(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    operations = [
        {"op": "test", "path": "/spec/holderIdentity", "value": "zz"},
        {"op": "replace", "path": "/spec/holderIdentity", "value": "j"},
    ]
    resp = await _patch(raw, lease_name, operations, JSON_PATCH)
    assert resp.status == 422
    assert resp.json() == status_body(
        422, "Invalid", "the server rejected our request due to an error in our request", {}
    )
    after = (await raw.get(leases_path(name=lease_name))).json()
    assert after == created


@pytest.mark.parametrize("content_type", [MERGE, STRATEGIC])
async def test_merge_patch_with_a_stale_resource_version_is_409_conflict(
    kube: KubeTarget, lease_name: str, content_type: str
) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    stale = created["metadata"]["resourceVersion"]
    first = {"metadata": {"resourceVersion": stale}, "spec": {"holderIdentity": "b"}}
    assert (await _patch(raw, lease_name, first, content_type)).status == 200
    # The same precondition again is stale now.
    second = {"metadata": {"resourceVersion": stale}, "spec": {"holderIdentity": "c"}}
    resp = await _patch(raw, lease_name, second, content_type)
    assert resp.status == 409
    assert resp.json() == status_body(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{lease_name}": the object '
        "has been modified; please apply your changes to the latest version and try again",
        lease_details(lease_name),
    )


@pytest.mark.parametrize("content_type", [MERGE, JSON_PATCH, STRATEGIC])
async def test_patch_of_a_missing_lease_is_404(
    kube: KubeTarget, lease_name: str, content_type: str
) -> None:
    body: Json = (
        [{"op": "replace", "path": "/spec/leaseDurationSeconds", "value": 1}]
        if content_type == JSON_PATCH
        else {"spec": {"leaseDurationSeconds": 1}}
    )
    resp = await _patch(kube.raw(), lease_name, body, content_type)
    assert resp.status == 404
    assert resp.json() == status_body(
        404,
        "NotFound",
        f'leases.coordination.k8s.io "{lease_name}" not found',
        lease_details(lease_name),
    )


@pytest.mark.parametrize("content_type", [MERGE, JSON_PATCH, STRATEGIC])
async def test_patch_producing_an_invalid_lease_is_422_of_kind_lease(
    kube: KubeTarget, lease_name: str, content_type: str
) -> None:
    raw = kube.raw()
    await _created(raw, lease_name)
    body: Json = (
        [{"op": "replace", "path": "/spec/leaseDurationSeconds", "value": -1}]
        if content_type == JSON_PATCH
        else {"spec": {"leaseDurationSeconds": -1}}
    )
    resp = await _patch(raw, lease_name, body, content_type)
    assert resp.status == 422
    message = "Invalid value: -1: must be greater than 0"
    assert resp.json() == status_body(
        422,
        "Invalid",
        f'Lease.coordination.k8s.io "{lease_name}" is invalid: '
        f"spec.leaseDurationSeconds: {message}",
        {
            "name": lease_name,
            "group": GROUP,
            "kind": "Lease",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": message,
                    "field": "spec.leaseDurationSeconds",
                }
            ],
        },
    )


def _patched_json(obj: Json) -> str:
    """The patched object as kube-apiserver quotes it in a patch error.

    The patcher keeps untouched subtrees as the raw JSON it read (``metadata`` in the server's
    order) and re-encodes what the patch touched as Go maps: the top level and ``spec`` with
    their keys sorted. Compact, like ``json.Marshal``.
    """
    top = {key: obj[key] for key in sorted(obj)}
    top["spec"] = {key: obj["spec"][key] for key in sorted(obj["spec"])}
    return json.dumps(top, separators=(",", ":"))


def _patch_invalid(quoted_value: str, error: str) -> Json:
    """The 422 for a patch whose result does not decode: no name, group or kind in details."""
    cause = f"Invalid value: {quoted_value}: {error}"
    return status_body(
        422,
        "Invalid",
        f' "" is invalid: patch: {cause}',
        {"causes": [{"reason": "FieldValueInvalid", "message": cause, "field": "patch"}]},
    )


BAD_TIME_ERROR = (
    'parsing time "2024-05-06T07:08:09Z" as "2006-01-02T15:04:05.000000Z07:00": '
    'cannot parse "Z" as ".000000"'
)


@pytest.mark.parametrize("content_type", [MERGE, JSON_PATCH])
async def test_patch_result_that_does_not_decode_is_422_quoting_the_patched_object(
    kube: KubeTarget, lease_name: str, content_type: str
) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    body: Json = (
        [{"op": "replace", "path": "/spec/renewTime", "value": "2024-05-06T07:08:09Z"}]
        if content_type == JSON_PATCH
        else {"spec": {"renewTime": "2024-05-06T07:08:09Z"}}
    )
    resp = await _patch(raw, lease_name, body, content_type)
    assert resp.status == 422
    patched = json.loads(json.dumps(created))
    patched["spec"]["renewTime"] = "2024-05-06T07:08:09Z"
    assert resp.json() == _patch_invalid(json.dumps(_patched_json(patched)), BAD_TIME_ERROR)


async def test_strategic_patch_that_does_not_decode_is_422_quoting_the_patch_as_go_map(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    await _created(raw, lease_name)
    body = {"spec": {"renewTime": "2024-05-06T07:08:09Z"}}
    resp = await _patch(raw, lease_name, body, STRATEGIC)
    assert resp.status == 422
    quoted = '"map[spec:map[renewTime:2024-05-06T07:08:09Z]]"'
    assert resp.json() == _patch_invalid(quoted, BAD_TIME_ERROR)


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (MERGE, "error decoding patch: unexpected end of JSON input"),
        (STRATEGIC, "unexpected end of JSON input"),
    ],
    ids=["merge", "strategic"],
)
async def test_malformed_merge_patch_is_400(
    kube: KubeTarget, lease_name: str, content_type: str, message: str
) -> None:
    raw = kube.raw()
    await _created(raw, lease_name)
    resp = await _patch(raw, lease_name, '{"spec":', content_type)
    assert resp.status == 400
    assert resp.json() == status_body(400, "BadRequest", message)


async def test_merge_patch_with_an_unknown_field_warns(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    await _created(raw, lease_name)
    resp = await _patch(raw, lease_name, {"spec": {"foo": 1, "holderIdentity": "b"}}, MERGE)
    assert resp.status == 200
    assert resp.warnings == ['299 - "unknown field \\"spec.foo\\""']
    assert resp.json()["spec"]["holderIdentity"] == "b"


async def test_patch_with_an_unchanged_result_keeps_the_resource_version(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    resp = await _patch(raw, lease_name, {"spec": {"holderIdentity": "a"}}, MERGE)
    assert resp.status == 200
    assert resp.json() == created


REJECTED = "the server rejected our request due to an error in our request"


@pytest.mark.parametrize(
    ("body", "status", "reason", "message", "details"),
    [
        ('[{"op":', 400, "BadRequest", "error decoding patch: unexpected end of JSON input", None),
        (
            '{"op":"add"}',
            400,
            "BadRequest",
            "error decoding patch: json: cannot unmarshal object into Go value of type "
            "[]handlers.jsonPatchOp",
            None,
        ),
        ('[{"op":"remove","path":"/spec/nope"}]', 422, "Invalid", REJECTED, {}),
        ('[{"op":"bogus","path":"/spec"}]', 422, "Invalid", REJECTED, {}),
    ],
    ids=["truncated", "not-a-list", "remove-missing-path", "unknown-op"],
)
async def test_unusable_json_patch_is_rejected(
    kube: KubeTarget,
    lease_name: str,
    body: str,
    status: int,
    reason: str,
    message: str,
    details: Json,
) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    resp = await _patch(raw, lease_name, body, JSON_PATCH)
    assert resp.status == status
    assert resp.json() == status_body(status, reason, message, details)
    assert (await raw.get(leases_path(name=lease_name))).json() == created


async def test_json_patch_add_without_value_sets_null_and_removes_the_field(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    await _created(raw, lease_name)
    resp = await _patch(
        raw, lease_name, [{"op": "add", "path": "/spec/holderIdentity"}], JSON_PATCH
    )
    assert resp.status == 200
    assert "holderIdentity" not in resp.json()["spec"]


async def test_empty_json_patch_changes_nothing(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    created = await _created(raw, lease_name)
    resp = await _patch(raw, lease_name, [], JSON_PATCH)
    assert resp.status == 200
    assert resp.json() == created
