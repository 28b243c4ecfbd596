"""How failures reach a caller of LeaseLock (``leaderelect/_kube/_errors.py``).

Every kubernetes_asyncio, aiohttp and timeout failure, and every answer that is not a success,
must become one :class:`~leaderelect.LeaseError` with a message saying what failed and why.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from _kube import KubeTarget, status_body, write_kubeconfig
from aiohttp import web

from leaderelect._errors import (
    ApiUnavailable,
    LeaseConflict,
    LeaseError,
    LeaseForbidden,
    LeaseInvalid,
    LeaseNotFound,
)
from leaderelect._kube import LeaseLock
from leaderelect._record import LeaseRecord
from leaderelect.testing import ErrorResponse, Hang, LeaseApiServer

from ._support import (
    BASE,
    HELD,
    LEASE,
    NAME,
    RENEWED,
    TAKEN,
    VERBS,
    LockFactory,
    ScriptedServer,
    call,
    write,
)

# ============================================================================================
# Both servers: the messages for conflicts, denials and rejections
# ============================================================================================


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


# ============================================================================================
# A scripted server: timeouts, unavailability, cancellation
# ============================================================================================


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
            status_body(503, "ServiceUnavailable", "etcd is down"),
            7.0,
            "get lease default/scripted: the API server is unavailable "
            "(503 ServiceUnavailable): etcd is down; retry after 7s",
            id="a 503 with Retry-After",
        ),
        pytest.param(
            429,
            {"Retry-After": "2"},
            status_body(
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
            status_body(429, "TooManyRequests", "slow down", {"retryAfterSeconds": 3}),
            3.0,
            "get lease default/scripted: the API server is unavailable (429 TooManyRequests): "
            "slow down; retry after 3s",
            id="a 429 without header uses details.retryAfterSeconds",
        ),
        pytest.param(
            504,
            {},
            status_body(
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
            status_body(500, None, "internal error"),
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
# A scripted server: error bodies that are not what they should be
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
            status_body(
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
            status_body(404, "NotFound", 'leases.coordination.k8s.io "scripted" not found'),
            LeaseNotFound,
            "update lease default/scripted: not found (404 NotFound): "
            'leases.coordination.k8s.io "scripted" not found',
            id="a 404 on update",
        ),
        pytest.param(
            415,
            status_body(415, "UnsupportedMediaType", "415: Unsupported Media Type"),
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
            status_body(404, "NotFound", "x", {"name": NAME, "kind": "namespaces"}),
            404,
            False,
            id="a missing namespace raises",
        ),
        pytest.param(
            status_body(404, "NotFound", "the server could not find the requested resource", {}),
            404,
            False,
            id="a missing lease api raises",
        ),
        pytest.param(b"404 page not found", 404, False, id="a proxy's 404 raises"),
        pytest.param(
            status_body(
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


# ============================================================================================
# Faults injected into LeaseApiServer
# ============================================================================================


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
