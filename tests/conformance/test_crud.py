"""Create, read, list, replace and delete: status codes and bodies, key order included."""

from __future__ import annotations

from _kube import (
    GROUP,
    NAMESPACE,
    RV,
    UID,
    KubeTarget,
    assert_json,
    lease_body,
    lease_details,
    leases_path,
    status_body,
)

FULL_SPEC = {
    "holderIdentity": "pod-a",
    "leaseDurationSeconds": 15,
    "acquireTime": "2024-05-06T07:08:09.123456Z",
    "renewTime": "2024-05-06T07:08:10.654321Z",
    "leaseTransitions": 3,
}


async def test_create_returns_201_and_the_lease_in_the_servers_key_order(
    kube: KubeTarget, lease_name: str
) -> None:
    # The client's key order is irrelevant: the server answers in the Go struct's order.
    spec = dict(reversed(FULL_SPEC.items()))
    body = {"spec": spec, "metadata": {"name": lease_name}, "apiVersion": f"{GROUP}/v1"}
    resp = await kube.raw().request("POST", leases_path(), body)
    assert resp.status == 201
    assert resp.content_type == "application/json"
    assert resp.warnings == []
    assert resp.body.endswith(b"}\n")
    assert b"\n" not in resp.body[:-1], "compact one-line JSON"
    assert_json(resp.json(), lease_body(lease_name, FULL_SPEC))


async def test_create_assigns_uid_numeric_resource_version_and_second_precision_timestamp(
    kube: KubeTarget, lease_name: str
) -> None:
    resp = await kube.raw().create_lease(lease_name, {"holderIdentity": "a"})
    metadata = resp.json()["metadata"]
    assert len(metadata["uid"]) == 36
    assert metadata["uid"].count("-") == 4
    assert metadata["resourceVersion"].isdigit()
    assert len(metadata["creationTimestamp"]) == len("2026-11-26T18:26:04Z")
    assert metadata["creationTimestamp"].endswith("Z")
    assert len(metadata["managedFields"][0]["time"]) == len("2026-11-26T18:26:04Z")


async def test_get_returns_exactly_what_create_returned(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    created = await raw.create_lease(lease_name, FULL_SPEC)
    got = await raw.get(leases_path(name=lease_name))
    assert got.status == 200
    assert got.content_type == "application/json"
    assert got.json() == created.json()
    assert got.body == created.body


async def test_list_has_resource_version_and_items_without_kind(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    resp = await raw.get(leases_path(), fieldSelector=f"metadata.name={lease_name}")
    assert resp.status == 200
    listed = resp.json()
    assert_json(
        listed,
        {
            "kind": "LeaseList",
            "apiVersion": f"{GROUP}/v1",
            "metadata": {"resourceVersion": RV},
            "items": [lease_body(lease_name, {"holderIdentity": "a"}, typed=False)],
        },
    )
    assert int(listed["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
    assert listed["items"][0]["metadata"] == created["metadata"]


async def test_list_of_an_empty_selection_has_empty_items(
    kube: KubeTarget, lease_name: str
) -> None:
    resp = await kube.raw().get(leases_path(), fieldSelector=f"metadata.name={lease_name}")
    assert resp.status == 200
    assert_json(
        resp.json(),
        {
            "kind": "LeaseList",
            "apiVersion": f"{GROUP}/v1",
            "metadata": {"resourceVersion": RV},
            "items": [],
        },
    )


async def test_list_with_limit_pages_with_continue_token(kube: KubeTarget) -> None:
    raw = kube.raw()
    label = kube.lease_name("sel")
    for _ in range(3):
        name = kube.lease_name()
        body = {"metadata": {"name": name, "labels": {"set": label}}, "spec": {}}
        assert (await raw.request("POST", leases_path(), body)).status == 201
    first = await raw.get(leases_path(), labelSelector=f"set={label}", limit="2")
    assert first.status == 200
    page = first.json()
    # With a selector the server cannot count what remains: no remainingItemCount.
    assert list(page["metadata"]) == ["resourceVersion", "continue"]
    assert len(page["items"]) == 2
    query = {
        "labelSelector": f"set={label}",
        "limit": "2",
        "continue": page["metadata"]["continue"],
    }
    rest = (await raw.request("GET", leases_path(), params=query)).json()
    assert list(rest["metadata"]) == ["resourceVersion"]
    assert len(rest["items"]) == 1
    names = [item["metadata"]["name"] for item in page["items"] + rest["items"]]
    assert names == sorted(names)


async def test_list_with_limit_and_no_selector_counts_the_remaining_items(kube: KubeTarget) -> None:
    raw = kube.raw()
    for _ in range(2):
        assert (await raw.create_lease(kube.lease_name())).status == 201
    total = len((await raw.get(leases_path())).json()["items"])
    page = (await raw.get(leases_path(), limit="1")).json()
    assert list(page["metadata"]) == ["resourceVersion", "continue", "remainingItemCount"]
    assert page["metadata"]["remainingItemCount"] == total - 1
    assert len(page["items"]) == 1


async def test_replace_with_current_resource_version_returns_200_and_a_newer_one(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    created["spec"] = {"holderIdentity": "b", "leaseDurationSeconds": 10}
    resp = await raw.request("PUT", leases_path(name=lease_name), created)
    assert resp.status == 200
    replaced = resp.json()
    assert_json(
        replaced, lease_body(lease_name, {"holderIdentity": "b", "leaseDurationSeconds": 10})
    )
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )


async def test_resource_version_is_one_counter_across_leases(kube: KubeTarget) -> None:
    raw = kube.raw()
    first, second = kube.lease_name("a"), kube.lease_name("b")
    rv_a = int((await raw.create_lease(first)).json()["metadata"]["resourceVersion"])
    rv_b = int((await raw.create_lease(second)).json()["metadata"]["resourceVersion"])
    patched = await raw.request(
        "PATCH",
        leases_path(name=first),
        {"spec": {"holderIdentity": "x"}},
        content_type="application/merge-patch+json",
    )
    rv_a2 = int(patched.json()["metadata"]["resourceVersion"])
    listed = await raw.get(leases_path())
    list_rv = int(listed.json()["metadata"]["resourceVersion"])
    # One counter, not one per object: the second lease's create moved the first one's too.
    assert rv_a < rv_b < rv_a2 <= list_rv
    assert rv_a2 - rv_a >= 2
    # The list's resourceVersion is the store's, not the highest of its items.
    own = [i for i in listed.json()["items"] if i["metadata"]["name"] in (first, second)]
    assert len(own) == 2


async def test_unchanged_replace_keeps_the_resource_version(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    resp = await raw.request("PUT", leases_path(name=lease_name), created)
    assert resp.status == 200
    assert resp.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_put_to_a_missing_name_creates_the_lease(kube: KubeTarget) -> None:
    raw = kube.raw()
    for with_rv in (False, True):
        name = kube.lease_name("rv" if with_rv else "norv")
        metadata = {"name": name, "resourceVersion": "5"} if with_rv else {"name": name}
        body = {"metadata": metadata, "spec": {"holderIdentity": "p"}}
        resp = await raw.request("PUT", leases_path(name=name), body)
        assert resp.status == 201, resp.body
        assert_json(resp.json(), lease_body(name, {"holderIdentity": "p"}))


async def test_delete_returns_a_success_status_with_the_uid(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = (await raw.create_lease(lease_name, FULL_SPEC)).json()
    resp = await raw.request("DELETE", leases_path(name=lease_name))
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert_json(
        resp.json(),
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": lease_name, "group": GROUP, "kind": "leases", "uid": UID},
        },
    )
    assert resp.json()["details"]["uid"] == created["metadata"]["uid"]
    assert (await raw.get(leases_path(name=lease_name))).status == 404


async def test_get_of_a_missing_lease_is_404_not_found(kube: KubeTarget, lease_name: str) -> None:
    resp = await kube.raw().get(leases_path(name=lease_name))
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert resp.json() == status_body(
        404,
        "NotFound",
        f'leases.coordination.k8s.io "{lease_name}" not found',
        lease_details(lease_name),
    )


async def test_get_with_an_invalid_name_is_plain_not_found(kube: KubeTarget) -> None:
    resp = await kube.raw().get(leases_path(name="Not_A_DNS_Name"))
    assert resp.status == 404
    assert resp.json() == status_body(
        404,
        "NotFound",
        'leases.coordination.k8s.io "Not_A_DNS_Name" not found',
        lease_details("Not_A_DNS_Name"),
    )


async def test_delete_of_a_missing_lease_is_404(kube: KubeTarget, lease_name: str) -> None:
    resp = await kube.raw().request("DELETE", leases_path(name=lease_name))
    assert resp.status == 404
    assert resp.json() == status_body(
        404,
        "NotFound",
        f'leases.coordination.k8s.io "{lease_name}" not found',
        lease_details(lease_name),
    )


async def test_create_of_an_existing_name_is_409_already_exists(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    assert (await raw.create_lease(lease_name)).status == 201
    resp = await raw.create_lease(lease_name, {"holderIdentity": "other"})
    assert resp.status == 409
    assert resp.json() == status_body(
        409,
        "AlreadyExists",
        f'leases.coordination.k8s.io "{lease_name}" already exists',
        lease_details(lease_name),
    )


def _conflict(name: str) -> object:
    return status_body(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        lease_details(name),
    )


async def test_put_with_a_stale_resource_version_is_409_conflict(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    stale = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    fresh = dict(stale, spec={"holderIdentity": "b"})
    assert (await raw.request("PUT", leases_path(name=lease_name), fresh)).status == 200
    stale["spec"] = {"holderIdentity": "c"}
    resp = await raw.request("PUT", leases_path(name=lease_name), stale)
    assert resp.status == 409
    assert resp.json() == _conflict(lease_name)


async def test_conflict_wins_over_validation_on_put(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    stale = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    fresh = dict(stale, spec={"holderIdentity": "b"})
    assert (await raw.request("PUT", leases_path(name=lease_name), fresh)).status == 200
    stale["spec"] = {"holderIdentity": "c", "leaseDurationSeconds": 0}
    resp = await raw.request("PUT", leases_path(name=lease_name), stale)
    assert resp.status == 409
    assert resp.json() == _conflict(lease_name)


async def test_put_with_current_resource_version_and_invalid_spec_is_422_of_kind_lease(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    current = (await raw.create_lease(lease_name, {"holderIdentity": "a"})).json()
    current["spec"] = {"holderIdentity": "a", "leaseDurationSeconds": 0}
    resp = await raw.request("PUT", leases_path(name=lease_name), current)
    assert resp.status == 422
    assert resp.json() == status_body(
        422,
        "Invalid",
        f'Lease.coordination.k8s.io "{lease_name}" is invalid: spec.leaseDurationSeconds: '
        "Invalid value: 0: must be greater than 0",
        {
            **lease_details(lease_name, kind="Lease"),
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: 0: must be greater than 0",
                    "field": "spec.leaseDurationSeconds",
                }
            ],
        },
    )


async def test_put_without_resource_version_on_an_existing_lease_is_422(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    assert (await raw.create_lease(lease_name)).status == 201
    body = {"metadata": {"name": lease_name}, "spec": {"holderIdentity": "b"}}
    resp = await raw.request("PUT", leases_path(name=lease_name), body)
    assert resp.status == 422
    message = "Invalid value: 0: must be specified for an update"
    assert resp.json() == status_body(
        422,
        "Invalid",
        f'leases.coordination.k8s.io "{lease_name}" is invalid: metadata.resourceVersion: '
        + message,
        {
            **lease_details(lease_name),
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": message,
                    "field": "metadata.resourceVersion",
                }
            ],
        },
    )


async def test_put_with_a_body_name_other_than_the_url_is_400(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    created = (await raw.create_lease(lease_name)).json()
    created["metadata"]["name"] = "gt-zzz"
    resp = await raw.request("PUT", leases_path(name=lease_name), created)
    assert resp.status == 400
    assert resp.json() == status_body(
        400,
        "BadRequest",
        f"the name of the object (gt-zzz) does not match the name on the URL ({lease_name})",
    )


async def test_put_without_any_name_is_400(kube: KubeTarget, lease_name: str) -> None:
    resp = await kube.raw().request("PUT", leases_path(name=lease_name), {"spec": {}})
    assert resp.status == 400
    assert resp.json() == status_body(
        400,
        "BadRequest",
        f"the name of the object ({lease_name} based on URL) was undeterminable: "
        "name must be provided",
    )


async def test_body_namespace_other_than_the_url_is_400_on_put_and_post(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    expected = status_body(
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    )
    body = {"metadata": {"name": lease_name, "namespace": "other"}, "spec": {}}
    post = await raw.request("POST", leases_path(), body)
    assert (post.status, post.json()) == (400, expected)
    put = await raw.request("PUT", leases_path(name=lease_name), body)
    assert (put.status, put.json()) == (400, expected)
    # The body may name the namespace of the URL.
    body["metadata"]["namespace"] = NAMESPACE
    assert (await raw.request("POST", leases_path(), body)).status == 201


async def test_create_without_a_name_is_422_name_required(kube: KubeTarget) -> None:
    resp = await kube.raw().request("POST", leases_path(), {"metadata": {}, "spec": {}})
    assert resp.status == 422
    message = "Required value: name or generateName is required"
    assert resp.json() == status_body(
        422,
        "Invalid",
        f'Lease.coordination.k8s.io "" is invalid: metadata.name: {message}',
        {
            "group": GROUP,
            "kind": "Lease",
            "causes": [
                {"reason": "FieldValueRequired", "message": message, "field": "metadata.name"}
            ],
        },
    )


async def test_create_in_a_missing_namespace_is_404_namespace_not_found(
    kube: KubeTarget, lease_name: str
) -> None:
    raw = kube.raw()
    namespace = f"missing-{lease_name}"[:63].rstrip("-")
    not_found = status_body(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        {"name": namespace, "kind": "namespaces"},
    )
    post = await raw.create_lease(lease_name, namespace=namespace)
    assert (post.status, post.json()) == (404, not_found)
    body = {"metadata": {"name": lease_name}, "spec": {}}
    put = await raw.request("PUT", leases_path(namespace, lease_name), body)
    assert (put.status, put.json()) == (404, not_found)
    # Reads only miss the lease: there is no namespace check.
    get = await raw.get(leases_path(namespace, lease_name))
    assert get.status == 404
    assert get.json()["details"] == lease_details(lease_name)
    listed = await raw.get(leases_path(namespace))
    assert listed.status == 200
    assert listed.json()["items"] == []
