"""Bad input of every kind: settings, malformed Leases, broken bodies and every API error.

For each: a clear error or log line, no crash of the candidate or its loop, and no lease
written wrongly. The server validates writes as kube-apiserver does, so malformed Leases are
served with ``RawResponse`` (the bytes as given) to one follower's reads and watches while a
healthy leader holds the real Lease: the follower must never displace it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _chaos import CHAOS_TIMINGS, ChaosCandidate

from leaderelect import ConfigError, LeaderElector, LeaseLock, LossReason, Timings
from leaderelect.testing import (
    ErrorResponse,
    Fault,
    FaultHandle,
    Latency,
    LeadershipLog,
    LeaseApiServer,
    RawResponse,
    check_lease_history,
    check_safety,
)
from leaderelect.testing._apiserver.status import status_body

LEASE = "default/chaos"
LD = CHAOS_TIMINGS.lease_duration

# -- settings (what tests/unit/test_config.py does not cover yet) ---------------------------------


class _NoLock:
    lease = "default/unused"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lease_duration": math.inf}, r"lease_duration must be greater than 0 seconds, got inf"),
        ({"renew_deadline": -math.inf}, r"renew_deadline must be greater than 0 seconds"),
        ({"retry_period": None}, r"retry_period must be a number of seconds, got None"),
        ({"lease_duration": "15s"}, r"lease_duration must be a number of seconds, got '15s'"),
        ({"retry_period": -0.1}, r"retry_period must be greater than 0 seconds, got -0.1"),
        (
            {"lease_duration": 1.0, "renew_deadline": 0.9, "retry_period": 0.1},
            r"lease_duration \(1s\) must be greater than renew_deadline \+ retry_period",
        ),
    ],
    ids=["infinite", "minus infinite", "None", "a string with a unit", "negative", "no margin"],
)
def test_more_invalid_timings_are_refused_naming_the_setting(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Timings(**settings)
    if None in settings.values():
        return  # for LeaderElector, None means "not given": the default
    with pytest.raises(ConfigError, match=message):
        LeaderElector(_NoLock(), identity="x", **settings)  # type: ignore[arg-type]


def test_timings_are_given_one_way_or_the_other() -> None:
    elector = LeaderElector(_NoLock(), identity="x", retry_period=None)  # type: ignore[arg-type]
    assert elector.timings == Timings()
    short = Timings(lease_duration=4, renew_deadline=2.5, retry_period=0.5)
    assert LeaderElector(_NoLock(), identity="x", timings=short).timings is short  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"either timings or renew_deadline, not both"):
        LeaderElector(_NoLock(), identity="x", timings=short, renew_deadline=2.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"timings must be a leaderelect.Timings"):
        LeaderElector(_NoLock(), identity="x", timings=(15, 10, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "namespace", "message"),
    [
        ("Billing", "default", "name"),
        ("", "default", "name"),
        ("a" * 254, "default", "name"),
        ("billing", "Kube_System", "namespace"),
        ("billing", "a.b", "namespace"),
    ],
    ids=["upper case", "empty", "too long", "underscore", "dotted namespace"],
)
def test_invalid_lease_names_are_refused_naming_the_field(
    name: str, namespace: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        LeaseLock(object(), name, namespace)  # type: ignore[arg-type]


# -- malformed Leases ------------------------------------------------------------------------------


def _lease(**spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "holderIdentity": "someone",
        "leaseDurationSeconds": 1,
        "acquireTime": "2026-01-01T00:00:00.000000Z",
        "renewTime": "2026-01-01T00:00:00.000000Z",
        "leaseTransitions": 3,
    }
    for key, value in spec_changes.items():
        if value is _MISSING:
            spec.pop(key, None)
        else:
            spec[key] = value
    return {
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        # resourceVersion "1" is never the stored Lease's: a write based on it must fail.
        "metadata": {"name": "chaos", "namespace": "default", "uid": "u-1", "resourceVersion": "1"},
        "spec": spec,
    }


_MISSING = object()

NOT_TRUSTED = "is malformed, not trusting it: "

MALFORMED: list[Any] = [
    # (id, the Lease served, what the follower logs)
    ("spec missing", {**_lease(), "spec": _MISSING}, NOT_TRUSTED + "spec is missing"),
    ("spec null", {**_lease(), "spec": None}, NOT_TRUSTED + "spec is missing"),
    ("spec a list", {**_lease(), "spec": [1, 2]}, NOT_TRUSTED + "spec is not an object"),
    ("holder a number", _lease(holderIdentity=7), "holderIdentity is not a string: 7"),
    ("holder an object", _lease(holderIdentity={"a": 1}), "holderIdentity is not a string"),
    ("duration missing", _lease(leaseDurationSeconds=_MISSING), "leaseDurationSeconds is missing"),
    ("duration null", _lease(leaseDurationSeconds=None), "leaseDurationSeconds is missing"),
    ("duration zero", _lease(leaseDurationSeconds=0), "not a positive integer: 0"),
    ("duration negative", _lease(leaseDurationSeconds=-5), "not a positive integer: -5"),
    ("duration a string", _lease(leaseDurationSeconds="15"), "not a positive integer: '15'"),
    ("duration a float", _lease(leaseDurationSeconds=1.5), "not a positive integer: 1.5"),
    ("duration a bool", _lease(leaseDurationSeconds=True), "not a positive integer: True"),
    ("renewTime garbage", _lease(renewTime="yesterday"), "renewTime is not a MicroTime"),
    ("renewTime a number", _lease(renewTime=12), "renewTime is not a MicroTime: 12"),
    (
        "acquireTime out of range",
        _lease(acquireTime="2026-13-45T25:61:00.000000Z"),
        "acquireTime is not a MicroTime",
    ),
    (
        "renewTime without fraction",
        _lease(renewTime="2026-01-01T00:00:00Z"),
        "renewTime is not a MicroTime",
    ),
    ("transitions negative", _lease(leaseTransitions=-1), "not a non-negative integer: -1"),
    ("transitions a string", _lease(leaseTransitions="x"), "not a non-negative integer: 'x'"),
    # Absent optional fields are legal: nothing to warn about, and nothing done wrong.
    ("holder missing", _lease(holderIdentity=_MISSING), None),  # a free lease
    ("holder null", _lease(holderIdentity=None), None),
    ("acquireTime missing", _lease(acquireTime=_MISSING), None),
    ("renewTime null", _lease(renewTime=None), None),
    ("transitions missing", _lease(leaseTransitions=_MISSING), None),
    ("transitions null", _lease(leaseTransitions=None), None),
    ("transitions beyond int32", _lease(leaseTransitions=2**40), None),
    (
        "unknown strategy",
        _lease(strategy="NewestEmulationVersion", preferredHolder="someone-else"),
        None,
    ),
    # Unusable as a Lease at all: the read fails and is retried.
    ("uid missing", {**_lease(), "metadata": {"resourceVersion": "1"}}, "metadata.uid is missing"),
    (
        "resourceVersion missing",
        {**_lease(), "metadata": {"uid": "u-1"}},
        "metadata.resourceVersion is missing",
    ),
    ("metadata null", {**_lease(), "metadata": None}, "metadata is missing"),
    ("kind wrong", {**_lease(), "kind": "ConfigMap"}, "kind is 'ConfigMap'"),
    ("a JSON array", [1, 2, 3], "expected a JSON object, got list"),
    ("JSON null", None, "expected a JSON object, got NoneType"),
]

# Records with problems but a holder: the follower must wait a lease duration before trying.
HELD = {
    "acquireTime missing",
    "renewTime null",
    "transitions missing",
    "transitions null",
    "transitions beyond int32",
    "unknown strategy",
    "holder a number",
    "holder an object",
    "duration missing",
    "duration null",
    "duration zero",
    "duration negative",
    "duration a string",
    "duration a float",
    "duration a bool",
    "renewTime garbage",
    "renewTime a number",
    "acquireTime out of range",
    "renewTime without fraction",
    "transitions negative",
    "transitions a string",
}


def _clean(lease: Any) -> Any:
    if isinstance(lease, dict):
        return {k: v for k, v in lease.items() if v is not _MISSING}
    return lease


def _body(lease: Any) -> bytes:
    return json.dumps(_clean(lease)).encode() + b"\n"


def _event(lease: Any) -> bytes:
    return json.dumps({"type": "ADDED", "object": _clean(lease)}).encode() + b"\n"


class Scene:
    """A healthy leader holding the real Lease, and a follower fed bad answers."""

    def __init__(self, server: LeaseApiServer, log: LeadershipLog) -> None:
        self.server = server
        self.log = log
        self.leader: ChaosCandidate
        self.victim: ChaosCandidate
        self.watching = server.faults.add(Latency(user="victim", verb="watch", seconds=0))

    def victim_writes(self) -> list[Any]:
        return [w for w in self.server.writes if w.user == "victim"]


@contextlib.asynccontextmanager
async def scene(*faults: Fault) -> AsyncIterator[Scene]:
    server = LeaseApiServer()
    async with server, anyio.create_task_group() as tg:
        log = LeadershipLog()
        run = Scene(server, log)
        run.leader = ChaosCandidate(server, "leader", log)
        tg.start_soon(run.leader.run)
        leads = anyio.Event()
        log.add_listener(leads.set)
        await leads.wait()
        for fault in faults:
            server.faults.add(fault)
        run.victim = ChaosCandidate(server, "victim", log)
        tg.start_soon(run.victim.run)
        try:
            yield run
        finally:
            server.faults.clear()
            server.faults.release()
            run.leader.stop()
            run.victim.stop()


def _found(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize(
    ("lease", "logged"), [pytest.param(m[1], m[2], id=m[0]) for m in MALFORMED]
)
async def test_a_malformed_lease_is_logged_and_never_displaces_the_holder(
    lease: Any, logged: str | None, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.WARNING, logger="leaderelect")
    reads = Latency(user="victim", verb="get", seconds=0)  # only to time the requests
    writes = Latency(user="victim", verb="update", seconds=0)
    moments: dict[str, float] = {}

    async def first(name: str, handle: FaultHandle) -> None:
        await handle.wait_hits(1)
        moments[name] = anyio.current_time()

    async with (
        scene(
            reads,
            writes,
            RawResponse(user="victim", verb="get", body=_body(lease)),
            RawResponse(user="victim", verb="watch", body=_event(lease)),
        ) as run,
        anyio.create_task_group() as tg,
    ):
        for name, fault in (("read", reads), ("write", writes)):
            handle = next(h for h in run.server.faults.active if h.fault is fault)
            tg.start_soon(first, name, handle)
        await anyio.sleep(1.4 * LD)  # long enough for the victim to act on what it read
        tg.cancel_scope.cancel()
    if logged is not None:
        assert _found(caplog, logged), f"no log line with {logged!r}"
    else:
        assert not _found(caplog, "malformed"), "a legal Lease was called malformed"
    assert "read" in moments
    assert run.victim.error is None and run.leader.error is None  # nothing crashed
    assert run.victim.terms == 0 and not run.victim_writes()  # it never wrote the Lease
    assert run.leader.losses == []  # the holder was never disturbed
    if request.node.callspec.id in HELD:
        # Held by someone (its claim unreadable or not): the follower waited a full lease
        # duration before trying; its writes, based on the bad read, were refused (409).
        assert "write" in moments
        assert moments["write"] - moments["read"] >= LD - 0.05
    check_lease_history(run.server.writes, lease=LEASE, fallback_duration=LD)


@pytest.mark.parametrize(
    ("duration", "expect_write"),
    [(2**31, False), (10**12, False)],
    ids=["int32 overflow", "far beyond int32"],
)
async def test_a_huge_lease_duration_makes_a_follower_wait_not_crash(
    duration: int, expect_write: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lease = _lease(leaseDurationSeconds=duration)
    async with scene(
        RawResponse(user="victim", verb="get", body=_body(lease)),
        RawResponse(user="victim", verb="watch", body=_event(lease)),
    ) as run:
        await anyio.sleep(1.25 * LD)
        updates = run.server.requests.count(verb="update", user="victim")
    assert (updates > 0) is expect_write
    assert run.victim.error is None and run.leader.losses == []


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        pytest.param(
            RawResponse(verb="get", body=b"<html><body>Bad Gateway</body></html>"),
            "the answer (HTTP 200) is not JSON: '<html>",
            id="non-JSON 200",
        ),
        pytest.param(
            RawResponse(verb="get", body=_body(_lease()), truncate=True),
            "cannot reach the API server",
            id="truncated body",
        ),
        pytest.param(
            RawResponse(verb="get", body=_body(_lease()), pause=CHAOS_TIMINGS.renew_deadline),
            "no answer within 0.30s",
            id="slow body",
        ),
        pytest.param(
            RawResponse(verb="get", body=b""),
            "is not JSON",
            id="empty 200",
        ),
    ],
)
async def test_a_broken_body_is_logged_and_retried(
    fault: RawResponse, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="leaderelect")
    fault = RawResponse(
        user="victim",
        verb=fault.verb,
        body=fault.body,
        truncate=fault.truncate,
        pause=fault.pause,
    )
    watch = RawResponse(user="victim", verb="watch", body=b"")
    async with scene(fault, watch) as run:
        await anyio.sleep(0.8)
    assert _found(caplog, logged), f"no log line with {logged!r}"
    assert run.victim.error is None and run.victim.terms == 0 and not run.victim_writes()
    assert run.leader.losses == []


async def test_a_watch_stream_of_garbage_is_logged_and_the_follower_polls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="leaderelect")
    garbage = b'{"type": "ADDED", "object": {"kind": "Lease"\n{not json}\n'
    async with scene(RawResponse(user="victim", verb="watch", body=garbage)) as run:
        await anyio.sleep(1.0)
        reads = run.server.requests.count(verb="get", user="victim")
    assert _found(caplog, "watch on lease default/chaos")
    assert reads >= 2  # it fell back to reading the Lease
    assert run.victim.error is None and not run.victim_writes()


# -- every API error -------------------------------------------------------------------------------


def _status(code: int, reason: str, message: str, **details: Any) -> bytes:
    return json.dumps(status_body(code, message, reason, details=details or None)).encode()


API_ERRORS: list[Any] = [
    ("400", ErrorResponse(status=400), r"rejected the request \(400 BadRequest\)"),
    ("401", ErrorResponse(status=401), r"unauthorized: the API server rejected the credentials"),
    ("403 rbac", ErrorResponse(status=403, message='User "x" cannot update resource "leases"'),
     r'forbidden: User "x" lacks RBAC verb'),
    ("403 admission", ErrorResponse(status=403, message="admission webhook denied it"),
     r"forbidden by the API server \(403 Forbidden\): admission webhook denied it"),
    ("404 namespace", RawResponse(status=404, body=_status(
        404, "NotFound", 'namespaces "default" not found', name="default", kind="namespaces")),
     r'namespace "default" does not exist'),
    ("405", RawResponse(status=405, body=_status(405, "MethodNotAllowed", "not allowed")),
     r"rejected the request \(405 MethodNotAllowed\)"),
    ("409", ErrorResponse(status=409), r"conflicted; re-reading"),
    ("410", ErrorResponse(status=410), r"expired"),
    ("422", ErrorResponse(status=422), r"rejected the request \(422 Invalid\)"),
    ("429", ErrorResponse(status=429, retry_after=1),
     r"unavailable \(429 TooManyRequests\).*retry after 1s"),
    ("500", ErrorResponse(status=500), r"unavailable \(500 InternalError\)"),
    ("503", ErrorResponse(status=503), r"unavailable \(503 ServiceUnavailable\)"),
    ("502 html",
     RawResponse(status=502, body=b"<html>bad gateway</html>", content_type="text/html"),
     r"the body is not a Kubernetes Status: '<html>bad gateway</html>'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "logged"), [pytest.param(e[1], e[2], id=e[0]) for e in API_ERRORS]
)
async def test_an_api_error_is_logged_and_never_yields_two_leaders_or_a_clobbered_lease(
    fault: ErrorResponse | RawResponse, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The error answers the leader's renewals and the follower's reads for 0.4 s."""
    caplog.set_level(logging.DEBUG, logger="leaderelect")
    renewals = dataclasses.replace(fault, user="leader", verb="update")
    reads = dataclasses.replace(fault, user="victim", verb=("get", "watch"))
    async with scene() as run:
        await run.watching.wait_hits(1)  # the victim is following
        handles = [run.server.faults.add(renewals), run.server.faults.add(reads)]
        run.server.faults.cut_watches(user="victim")
        await anyio.sleep(0.4)
        for handle in handles:
            handle.remove()
        await anyio.sleep(1.5 * LD)  # time to recover, or to take over if it was lost
        hits = sum(handle.hits for handle in handles)
        leading = run.log.running()
    lines = [r.getMessage() for r in caplog.records]
    assert hits >= 1
    assert any(re.search(logged, line) for line in lines), f"no log line matching {logged!r}"
    assert run.leader.error is None and run.victim.error is None
    check_safety(run.log.intervals)
    check_lease_history(run.server.writes, lease=LEASE, fallback_duration=LD)
    assert leading, "nobody leads after the errors stopped"
    for lost in run.leader.losses:
        # Only a definite answer ends a term early; transient errors run to the deadline.
        assert lost.reason in (LossReason.RENEW_DEADLINE, LossReason.LEASE_DELETED)
