"""LeaseLock's verbs, construction and closing (``leaderelect/_kube/_lock.py``).

Answers that are not a usable Lease are read by ``_kube/_snapshot.py`` and tested here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_asyncio.client
import kubernetes_asyncio.config
import pytest
from _kube import KubeTarget, leases_path, status_body, write_kubeconfig

import leaderelect
from leaderelect._errors import ApiUnavailable, ConfigError, LeaseConflict, LeaseInvalid
from leaderelect._kube import LeaseLock
from leaderelect._lease_client import LeaseClient
from leaderelect._record import LeaseRecord
from leaderelect.testing import DropConnection, Fault, Hang, Latency, LeaseApiServer

from ._support import (
    BASE,
    HELD,
    LEASE_PATH,
    NAME,
    RENEWED,
    TAKEN,
    LockFactory,
    ScriptedServer,
    lease_json,
)

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


async def test_lease_lock_is_a_lease_client(
    kube: KubeTarget, lease_name: str, make_lock: LockFactory
) -> None:
    lock = await make_lock(kube.kubeconfig("elector"), lease_name)
    client: LeaseClient = lock
    assert client.lease == f"default/{lease_name}"


# ============================================================================================
# A scripted server: what goes on the wire, answers that are not a Lease
# ============================================================================================


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


# ============================================================================================
# Faults injected into LeaseApiServer
# ============================================================================================


async def test_latency_below_the_timeout_is_only_slow(
    leaderelect_server: LeaseApiServer, embedded_lock: LeaseLock
) -> None:
    with leaderelect_server.faults.add(Latency(seconds=0.3, verb="get")):
        assert await embedded_lock.get(timeout=3) is None
        with pytest.raises(ApiUnavailable, match=r"no answer within 0\.10s"):
            await embedded_lock.get(timeout=0.1)


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


# ============================================================================================
# Construction and closing
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


async def test_aclose_closes_only_a_client_the_lock_owns(
    scripted: ScriptedServer, tmp_path: Path
) -> None:
    scripted.answer(
        404,
        status_body(
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


async def test_reserved_requests_never_queue_behind_the_shared_clients_pool(
    leaderelect_server: LeaseApiServer,
) -> None:
    # An application's client whose whole pool (one connection here, 100 by default) is
    # held by a long request of its own, as its watches would hold it.
    configuration = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(
        config_file=str(leaderelect_server.kubeconfig()),
        client_configuration=configuration,
        persist_config=False,
    )
    configuration.connection_pool_maxsize = 1
    async with kubernetes_asyncio.client.ApiClient(configuration) as shared:
        lock = LeaseLock(shared, NAME)
        watch = await kubernetes_asyncio.client.CoordinationV1Api(shared).list_namespaced_lease(
            "kube-system", watch=True, timeout_seconds=30, _preload_content=False
        )
        try:
            with pytest.raises(ApiUnavailable, match="no answer within"):
                await lock.get(timeout=0.5)  # queued behind the application's watch
            async with lock.reserved():
                assert await lock.get(timeout=0.5) is None  # connections of its own
                reserved = lock._api.api_client  # type: ignore[attr-defined]
                assert reserved is not shared
            assert reserved.rest_client.pool_manager.closed  # the last reservation closed it
            assert not shared.rest_client.pool_manager.closed
        finally:
            watch.close()  # type: ignore[attr-defined]
            await lock.aclose()
