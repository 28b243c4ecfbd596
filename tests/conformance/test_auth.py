"""Authentication (401) and RBAC authorisation (403) as the three test users see them."""

from __future__ import annotations

import pytest
from _kube import (
    KubeTarget,
    RawResponse,
    lease_details,
    leases_path,
    status_body,
)

UNAUTHORIZED = status_body(401, "Unauthorized", "Unauthorized")


def _forbidden(
    user: str, verb: str, *, name: str | None = None, namespace: str = "default"
) -> object:
    subject = "leases.coordination.k8s.io" + (f' "{name}"' if name else "")
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return status_body(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "leases" in API group '
        f'"coordination.k8s.io" {scope}',
        lease_details(name),
    )


def _assert_forbidden(resp: RawResponse, expected: object) -> None:
    assert resp.status == 403
    assert resp.content_type == "application/json"
    assert resp.json() == expected


@pytest.mark.parametrize(
    "path",
    [leases_path(name="anything"), leases_path(), "/apis/coordination.k8s.io/v1", "/version"],
    ids=["get", "list", "discovery", "version"],
)
async def test_bad_token_is_401_everywhere(kube: KubeTarget, path: str) -> None:
    resp = await kube.raw(token="not-a-valid-token").get(path)
    assert resp.status == 401
    assert resp.content_type == "application/json"
    assert resp.json() == UNAUTHORIZED


async def test_bad_token_is_401_even_for_healthz(kube: KubeTarget) -> None:
    resp = await kube.raw(token="not-a-valid-token").get("/healthz")
    assert resp.status == 401
    assert resp.json() == UNAUTHORIZED


async def test_reader_cannot_write(kube: KubeTarget, lease_name: str) -> None:
    admin, reader = kube.raw("admin"), kube.raw("reader")
    created = (await admin.create_lease(lease_name, {"holderIdentity": "a"})).json()
    item = leases_path(name=lease_name)

    put = await reader.request("PUT", item, created)
    _assert_forbidden(put, _forbidden("reader", "update", name=lease_name))
    patch = await reader.request(
        "PATCH", item, {"spec": {}}, content_type="application/merge-patch+json"
    )
    _assert_forbidden(patch, _forbidden("reader", "patch", name=lease_name))
    delete = await reader.request("DELETE", item)
    _assert_forbidden(delete, _forbidden("reader", "delete", name=lease_name))
    # A create has no name in the request path: the message and details name none.
    post = await reader.create_lease(kube.lease_name("r"))
    _assert_forbidden(post, _forbidden("reader", "create"))
    collection = await reader.request("DELETE", leases_path())
    _assert_forbidden(collection, _forbidden("reader", "deletecollection"))


async def test_authorisation_comes_before_lookup(kube: KubeTarget, lease_name: str) -> None:
    # The lease does not exist: still 403, not 404.
    resp = await kube.raw("reader").request("DELETE", leases_path(name=lease_name))
    _assert_forbidden(resp, _forbidden("reader", "delete", name=lease_name))


async def test_reader_can_get_list_and_watch(kube: KubeTarget, lease_name: str) -> None:
    admin, reader = kube.raw("admin"), kube.raw("reader")
    created = (await admin.create_lease(lease_name, {"holderIdentity": "a"})).json()
    got = await reader.get(leases_path(name=lease_name))
    assert (got.status, got.json()) == (200, created)
    listed = await reader.get(leases_path(), fieldSelector=f"metadata.name={lease_name}")
    assert listed.status == 200
    assert [i["metadata"]["uid"] for i in listed.json()["items"]] == [created["metadata"]["uid"]]
    params = {"resourceVersion": "0", "fieldSelector": f"metadata.name={lease_name}"}
    async with reader.watch(leases_path(), params) as stream:
        assert stream.status == 200
        (event,) = await stream.take(1)
    assert event.type == "ADDED"
    assert event.object["metadata"]["uid"] == created["metadata"]["uid"]


async def test_elector_can_do_everything_but_delete(kube: KubeTarget, lease_name: str) -> None:
    elector = kube.raw("elector")
    item = leases_path(name=lease_name)
    created = await elector.create_lease(lease_name, {"holderIdentity": "e"})
    assert created.status == 201
    lease = created.json()
    lease["spec"]["leaseDurationSeconds"] = 10
    assert (await elector.request("PUT", item, lease)).status == 200
    patch = {"spec": {"holderIdentity": "f"}}
    patched = await elector.request(
        "PATCH", item, patch, content_type="application/merge-patch+json"
    )
    assert patched.status == 200
    assert (await elector.get(item)).json() == patched.json()
    assert (await elector.get(leases_path())).status == 200
    _assert_forbidden(
        await elector.request("DELETE", item), _forbidden("elector", "delete", name=lease_name)
    )


async def test_elector_is_forbidden_outside_its_namespace(kube: KubeTarget) -> None:
    elector = kube.raw("elector")
    got = await elector.get(leases_path("kube-system", "foo"))
    _assert_forbidden(got, _forbidden("elector", "get", name="foo", namespace="kube-system"))
    listed = await elector.get(leases_path("kube-system"))
    _assert_forbidden(listed, _forbidden("elector", "list", namespace="kube-system"))
    created = await elector.create_lease("foo", namespace="kube-system")
    _assert_forbidden(created, _forbidden("elector", "create", namespace="kube-system"))
    # Namespaces that do not exist are no different: authorisation comes first.
    missing = await elector.get(leases_path("no-such-namespace", "foo"))
    _assert_forbidden(
        missing, _forbidden("elector", "get", name="foo", namespace="no-such-namespace")
    )


async def test_elector_cannot_list_at_cluster_scope(kube: KubeTarget) -> None:
    resp = await kube.raw("elector").get("/apis/coordination.k8s.io/v1/leases")
    _assert_forbidden(resp, _forbidden("elector", "list", namespace=""))


async def test_admin_can_list_at_cluster_scope(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw("admin")
    assert (await raw.create_lease(lease_name)).status == 201
    resp = await raw.get("/apis/coordination.k8s.io/v1/leases")
    assert resp.status == 200
    listed = resp.json()
    assert listed["kind"] == "LeaseList"
    mine = [i for i in listed["items"] if i["metadata"]["name"] == lease_name]
    assert [i["metadata"]["namespace"] for i in mine] == ["default"]


async def test_anonymous_requests_are_forbidden_as_system_anonymous(
    kube: KubeTarget, lease_name: str
) -> None:
    anonymous = kube.raw(None)
    got = await anonymous.get(leases_path(name=lease_name))
    _assert_forbidden(got, _forbidden("system:anonymous", "get", name=lease_name))
    listed = await anonymous.get(leases_path())
    _assert_forbidden(listed, _forbidden("system:anonymous", "list"))
    discovery = await anonymous.get("/apis/coordination.k8s.io/v1")
    _assert_forbidden(
        discovery,
        status_body(
            403,
            "Forbidden",
            'forbidden: User "system:anonymous" cannot get path "/apis/coordination.k8s.io/v1"',
            {},
        ),
    )


@pytest.mark.parametrize("path", ["/version", "/healthz", "/readyz", "/livez"])
async def test_anonymous_may_read_version_and_health(kube: KubeTarget, path: str) -> None:
    resp = await kube.raw(None).get(path)
    assert resp.status == 200
