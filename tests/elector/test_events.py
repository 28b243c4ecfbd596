"""Kubernetes Events on leadership changes (``LeaderElector(..., events=True)``), on both servers.

As client-go's resource locks record them: reason ``LeaderElection``, type ``Normal``, message
``"<identity> became leader"`` / ``"<identity> stopped leading"``, about the Lease (with its
uid); written through ``events.k8s.io/v1`` and listed by the core ``v1`` API as ``kubectl get
events`` lists them. Best-effort: a 403 is logged once, and an Events API that hangs never holds
up a takeover or a release.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from _fleet import FAST
from _kube import KubeTarget

from leaderelect import LeaderElector, LeaseLock
from leaderelect.testing import Hang

EVENTS = "/apis/events.k8s.io/v1/namespaces/default/events"
CORE_EVENTS = "/api/v1/namespaces/default/events"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self, needle: str) -> list[str]:
        return [
            r.getMessage()
            for r in self.records
            if r.levelno >= logging.WARNING and needle in r.getMessage()
        ]


async def _events_about(kube: KubeTarget, lease: str, *, core: bool) -> list[dict[str, Any]]:
    reply = await kube.raw("admin").get(CORE_EVENTS if core else EVENTS)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["kind"] == "EventList"
    assert body["apiVersion"] == ("v1" if core else "events.k8s.io/v1")
    key = "involvedObject" if core else "regarding"
    return [item for item in body["items"] if item[key].get("name") == lease]


async def _wait_for_events(
    kube: KubeTarget, lease: str, count: int, *, core: bool = False
) -> list[dict[str, Any]]:
    with anyio.fail_after(10):
        while True:
            found = await _events_about(kube, lease, core=core)
            if len(found) >= count:
                return found
            await anyio.sleep(0.05)


def _elector(lock: LeaseLock, identity: str, *, events: bool = False) -> LeaderElector:
    return LeaderElector(
        lock,
        identity=identity,
        lease_duration=FAST["lease_duration"],
        renew_deadline=FAST["renew_deadline"],
        retry_period=FAST["retry_period"],
        events=events,
    )


async def test_a_term_is_recorded_as_client_go_records_it(
    kube: KubeTarget, lease_name: str
) -> None:
    async with await LeaseLock.from_kubeconfig(
        lease_name, kube.namespace, config_file=kube.kubeconfig("admin")
    ) as lock:
        elector = _elector(lock, "pod-a", events=True)
        async with elector.leading() as leadership:
            uid = leadership.token.lease_uid
            (started,) = await _wait_for_events(kube, lease_name, 1)
        # leading() has returned: the lease is released, and the last Event was written.
        found = await _events_about(kube, lease_name, core=False)

    assert started["note"] == "pod-a became leader"
    notes = sorted(event["note"] for event in found)
    assert notes == ["pod-a became leader", "pod-a stopped leading"]
    for event in found:
        assert event["reason"] == "LeaderElection"
        assert event["type"] == "Normal"
        assert event["reportingController"] == "leaderelect"
        assert event["reportingInstance"].startswith("leaderelect-")
        assert event["action"] in ("BecameLeader", "StoppedLeading")
        assert event["metadata"]["name"].startswith(f"{lease_name}.")
        assert event["eventTime"].endswith("Z")
        regarding = event["regarding"]
        assert regarding["kind"] == "Lease"
        assert regarding["apiVersion"] == "coordination.k8s.io/v1"
        assert regarding["namespace"] == kube.namespace
        assert regarding["name"] == lease_name
        assert regarding["uid"] == uid

    # ``kubectl get events`` reads the core v1 API: the same Events, about the Lease.
    core = await _events_about(kube, lease_name, core=True)
    assert sorted(event["message"] for event in core) == notes
    for event in core:
        assert event["reason"] == "LeaderElection"
        assert event["type"] == "Normal"
        assert event["involvedObject"]["kind"] == "Lease"
        assert event["involvedObject"]["uid"] == uid
        assert event["reportingComponent"] == "leaderelect"
        assert event["source"] == {}
        assert event["firstTimestamp"] is None
        assert event["eventTime"] is not None
        single = await kube.raw("admin").get(f"{CORE_EVENTS}/{event['metadata']['name']}")
        assert single.status == 200
        assert single.json()["kind"] == "Event"
        assert single.json()["apiVersion"] == "v1"


async def test_a_term_cancelled_from_outside_still_records_its_end(
    kube: KubeTarget, lease_name: str
) -> None:
    async with await LeaseLock.from_kubeconfig(
        lease_name, kube.namespace, config_file=kube.kubeconfig("admin")
    ) as lock:
        elector = _elector(lock, "pod-a", events=True)
        with anyio.move_on_after(10) as scope:
            async with elector.leading():
                await _wait_for_events(kube, lease_name, 1)
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
    found = await _events_about(kube, lease_name, core=False)
    assert sorted(event["note"] for event in found) == [
        "pod-a became leader",
        "pod-a stopped leading",
    ]


async def test_events_are_off_by_default(kube: KubeTarget, lease_name: str) -> None:
    async with (
        await LeaseLock.from_kubeconfig(
            lease_name, kube.namespace, config_file=kube.kubeconfig("admin")
        ) as lock,
        _elector(lock, "pod-a").leading(),
    ):
        pass
    assert await _events_about(kube, lease_name, core=False) == []


async def test_a_forbidden_events_api_is_logged_once_and_the_election_goes_on(
    kube: KubeTarget, lease_name: str
) -> None:
    # The elector user may write leases but not events, on both servers.
    records = _Records()
    logger = logging.getLogger("leaderelect")
    logger.addHandler(records)
    try:
        async with await LeaseLock.from_kubeconfig(
            lease_name, kube.namespace, config_file=kube.kubeconfig("elector")
        ) as lock:
            elector = _elector(lock, "pod-a", events=True)
            for _ in range(2):
                with anyio.fail_after(10):
                    async with elector.leading() as leadership:
                        assert leadership.is_valid
    finally:
        logger.removeHandler(records)
    denied = records.warnings("cannot record Events")
    assert len(denied) == 1, denied
    assert '"create"' in denied[0]
    assert '"events"' in denied[0]
    assert "events.k8s.io" in denied[0]
    assert "is forbidden" in denied[0]  # the server's own words follow
    assert await _events_about(kube, lease_name, core=False) == []


async def test_a_hung_events_api_holds_up_neither_takeover_nor_release(
    kube: KubeTarget, lease_name: str
) -> None:
    if kube.server is None:
        pytest.skip("needs the embedded server's fault injector")
    kube.server.faults.add(Hang(resource="events"))
    async with await LeaseLock.from_kubeconfig(
        lease_name, kube.namespace, config_file=kube.kubeconfig("admin")
    ) as lock:
        elector = _elector(lock, "pod-a", events=True)
        with anyio.fail_after(FAST["renew_deadline"]):
            # won at once: the Event write hangs in the background
            async with elector.leading() as leadership:
                assert leadership.is_valid
        # leading() returned within the events' own timeout (renew_deadline / 2)
        released = kube.server.lease(kube.namespace, lease_name)
        assert released is not None
        assert released["spec"]["holderIdentity"] == ""
    assert kube.server.events(kube.namespace) == []


_VALID: dict[str, Any] = {
    "apiVersion": "events.k8s.io/v1",
    "kind": "Event",
    "eventTime": "2026-01-02T03:04:05.123456Z",
    "reportingController": "leaderelect",
    "reportingInstance": "leaderelect-host",
    "action": "BecameLeader",
    "reason": "LeaderElection",
    "regarding": {"kind": "Lease", "namespace": "default", "name": "x"},
    "note": "x became leader",
    "type": "Normal",
}


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        (
            {"eventTime": None, "type": "Info"},
            422,
            'Event "{name}" is invalid: [eventTime: Required value, type: Invalid value: "": '
            "has invalid value: Info]",
        ),
        (
            {"reportingController": "", "action": "", "deprecatedCount": 2},
            422,
            'Event "{name}" is invalid: [reportingController: Required value, '
            'reportingController: Invalid value: "": name part must be non-empty, '
            'reportingController: Invalid value: "": name part must consist of alphanumeric '
            "characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
            "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), action: Required value, count: "
            'Invalid value: "": needs to be unset]',
        ),
        (
            {"eventTime": "2026-01-02T03:04:05Z"},
            400,
            'Event in version "v1" cannot be handled as a Event: parsing time '
            '"2026-01-02T03:04:05Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" '
            'as ".000000"',
        ),
    ],
)
async def test_the_events_api_rejects_what_kube_apiserver_rejects(
    kube: KubeTarget, lease_name: str, changes: dict[str, Any], status: int, message: str
) -> None:
    name = f"{lease_name}.17f0a1b2c3d4e5f6"
    body = {**_VALID, "metadata": {"name": name}, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    reply = await kube.raw("admin").request("POST", EVENTS, body)
    assert reply.status == status, reply.body
    assert reply.json()["message"] == message.format(name=name)


async def test_the_events_api_answers_a_create_as_kube_apiserver_does(
    kube: KubeTarget, lease_name: str
) -> None:
    name = f"{lease_name}.17f0a1b2c3d4e5f6"
    admin = kube.raw("admin")
    body = {**_VALID, "metadata": {"name": name}}
    created = await admin.request("POST", EVENTS, body)
    assert created.status == 201, created.body
    event = created.json()
    assert list(event) == [
        "kind",
        "apiVersion",
        "metadata",
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "regarding",
        "note",
        "type",
        "deprecatedSource",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
    ]
    assert event["deprecatedSource"] == {}
    assert event["metadata"]["managedFields"][0]["fieldsV1"] == {
        f"f:{key}": {}
        for key in (
            "action",
            "eventTime",
            "note",
            "reason",
            "regarding",
            "reportingController",
            "reportingInstance",
            "type",
        )
    }
    fetched = await admin.get(f"{EVENTS}/{name}")
    assert fetched.json() == event

    again = await admin.request("POST", EVENTS, body)
    assert again.status == 409
    assert again.json()["message"] == f'events.events.k8s.io "{name}" already exists'
    assert again.json()["details"] == {"name": name, "group": "events.k8s.io", "kind": "events"}

    denied = await kube.raw("elector").request("POST", EVENTS, body)
    assert denied.status == 403
    assert denied.json()["message"] == (
        'events.events.k8s.io is forbidden: User "elector" cannot create resource "events" in '
        'API group "events.k8s.io" in the namespace "default"'
    )

    missing = await admin.get(f"{EVENTS}/{lease_name}.0")
    assert missing.status == 404
    assert missing.json()["message"] == f'events.events.k8s.io "{lease_name}.0" not found'
