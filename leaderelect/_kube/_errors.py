"""Where kubernetes_asyncio, aiohttp and timeout failures become leaderelect's error tree.

This is the only place that translation is done, in two forms:

* :func:`map_errors`, a context manager around a request: an exception raised instead of an
  answer (no answer in time, a connection error, unusable credentials, an ``ApiException``) is
  re-raised as the matching :class:`~leaderelect.LeaseError`, chained with ``from``;
* :func:`status_error`, for an answer: a non-2xx status with its body, or the ``Status`` of a
  watch ERROR event, becomes the error to raise.

A message says which verb on which Lease failed and why, quoting the Kubernetes ``Status``
message (or the first characters of a body that is not one).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException, OpenApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from .._errors import (
    ApiUnavailable,
    LeaseConflict,
    LeaseError,
    LeaseForbidden,
    LeaseInvalid,
    LeaseNotFound,
    WatchExpired,
)

__all__ = ["NOT_JSON", "is_lease_404", "loads", "map_errors", "snippet", "status_error"]

_API_GROUP = "coordination.k8s.io"
_RESOURCE = "leases"
# The resources an elector touches, and how a message names one of them.
_NOUNS = {"leases": "lease", "leasecandidates": "leasecandidate"}

# How much of a body that is not a Kubernetes Status is quoted in an error message.
_SNIPPET = 200

# kube-apiserver's RBAC denial: `... is forbidden: User "reader" cannot update resource "leases"`.
_RBAC_DENIAL = re.compile(r'cannot [a-z]+ resource "')
_DENIED_USER = re.compile(r'User "((?:[^"\\]|\\.)*)"')

# What a request may raise instead of answering.
_REQUEST_FAILURES = (
    TimeoutError,
    asyncio.TimeoutError,
    aiohttp.ClientError,
    OSError,
    OpenApiException,
    ConfigException,
)


@contextmanager
def map_errors(
    verb: str, *, name: str, namespace: str, timeout: float, resource: str = _RESOURCE
) -> Iterator[None]:
    """Re-raise a failed request's exception as the matching :class:`~leaderelect.LeaseError`.

    Args:
        verb: the Kubernetes verb being done (``get``, ``create``, ``update``, ``watch``).
        name: the Lease's name.
        namespace: the Lease's namespace.
        timeout: the bound the request may hit, in seconds (named in the message).
        resource: ``leases``, or ``leasecandidates`` for a coordinated candidate's own object.

    Cancellation and any exception that is not a request failure pass through unchanged.
    """
    try:
        yield
    except _REQUEST_FAILURES as exc:
        raise _exception_error(
            exc, verb, name=name, namespace=namespace, timeout=timeout, resource=resource
        ) from exc


def _exception_error(
    cause: BaseException, verb: str, *, name: str, namespace: str, timeout: float, resource: str
) -> LeaseError:
    lease = f"{namespace}/{name}"
    what = f"{verb} {_NOUNS[resource]} {lease}"
    if isinstance(cause, ApiException) and cause.status:
        raw = cause.body.encode() if isinstance(cause.body, str) else cause.body
        return status_error(
            verb,
            cause.status,
            name=name,
            namespace=namespace,
            body=raw if isinstance(raw, bytes) else None,
            headers=cause.headers,
            resource=resource,
        )
    if isinstance(cause, (TimeoutError, asyncio.TimeoutError)):
        return ApiUnavailable(f"{what}: no answer within {timeout:.2f}s", lease=lease, verb=verb)
    if isinstance(cause, ConfigException):
        return ApiUnavailable(
            f"{what}: cannot load the credentials: {cause}", lease=lease, verb=verb
        )
    return ApiUnavailable(
        f"{what}: cannot reach the API server: {type(cause).__name__}: {cause}",
        lease=lease,
        verb=verb,
    )


def status_error(
    verb: str,
    status: int,
    *,
    name: str,
    namespace: str,
    body: bytes | Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    resource_version: str | None = None,
    resource: str = _RESOURCE,
) -> LeaseError:
    """The error for an answer that is not a success.

    Args:
        verb: the Kubernetes verb being done (``get``, ``create``, ``update``, ``watch``).
        status: the HTTP status of the answer, or the ``code`` of a watch ERROR event.
        name: the Lease's name.
        namespace: the Lease's namespace.
        body: the raw answer, or the ``Status`` object of a watch ERROR event.
        headers: the answer's headers (``Retry-After``).
        resource_version: the resourceVersion the request was based on, if any.
        resource: ``leases``, or ``leasecandidates`` for a coordinated candidate's own object.

    Returns:
        The error to raise: 401/403 :class:`~leaderelect.LeaseForbidden`, 404
        :class:`~leaderelect.LeaseNotFound`, 409 :class:`~leaderelect.LeaseConflict`, 410
        :class:`~leaderelect.WatchExpired`, 408/429/5xx :class:`~leaderelect.ApiUnavailable`,
        and anything else :class:`~leaderelect.LeaseInvalid`.
    """
    lease = f"{namespace}/{name}"
    noun = _NOUNS[resource]
    what = f"{verb} {noun} {lease}"
    parsed: object = body if isinstance(body, Mapping) else loads(body or b"")
    kube_status = parsed if isinstance(parsed, Mapping) and _looks_like_status(parsed) else None
    message: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = {}
    if kube_status is not None:
        if isinstance(kube_status.get("message"), str) and kube_status["message"]:
            message = kube_status["message"]
        if isinstance(kube_status.get("reason"), str) and kube_status["reason"]:
            reason = kube_status["reason"]
        if isinstance(kube_status.get("details"), Mapping):
            details = kube_status["details"]
        said = f": {message}" if message else ""
    elif isinstance(body, bytes) and body:
        said = f": the body is not a Kubernetes Status: {snippet(body)!r}"
    else:
        said = ""
    label = f"{status} {reason}" if reason else f"HTTP {status}" if status else "no status"

    def fail(kind: type[LeaseError], text: str) -> LeaseError:
        return kind(text, lease=lease, verb=verb, status=status, reason=reason)

    if status == 401:
        return fail(
            LeaseForbidden,
            f"{what} unauthorized: the API server rejected the credentials (401)",
        )
    if status == 403:
        if message is not None and not _RBAC_DENIAL.search(message):
            # Admission (webhook, ValidatingAdmissionPolicy), quota, or a terminating
            # namespace: not a missing permission, so do not send anyone to fix RBAC.
            return fail(LeaseForbidden, f"{what} forbidden by the API server ({label}){said}")
        user_match = _DENIED_USER.search(message or "")
        who = f'User "{user_match.group(1)}"' if user_match else "the caller"
        return fail(
            LeaseForbidden,
            f'{what} forbidden: {who} lacks RBAC verb "{verb}" on resource "{resource}" '
            f'(API group "{_API_GROUP}") in namespace "{namespace}"'
            + (f"; the API server said: {message}" if message else said),
        )
    if status == 404:
        if details.get("kind") == "namespaces":
            return fail(LeaseNotFound, f'{what}: namespace "{namespace}" does not exist ({label})')
        return fail(LeaseNotFound, f"{what}: not found ({label}){said}")
    if status == 409:
        if verb == "create":
            return fail(LeaseConflict, f"{what}: the {noun} already exists ({label})")
        if message is not None and "Precondition failed: UID" in message:
            return fail(
                LeaseConflict,
                f"{what}: the {noun} was deleted (or replaced) since it was read ({label})",
            )
        stale = f"resourceVersion {resource_version} is stale" if resource_version else ""
        return fail(LeaseConflict, f"{what}: {stale or 'conflict'} ({label}){said}")
    if status == 410:
        since = f" (resourceVersion {resource_version})" if resource_version else ""
        return fail(WatchExpired, f"{what}: the watch expired{since} ({label}){said}")
    if status in (408, 429) or status >= 500 or status == 0:
        retry_after = _retry_after(headers, details)
        hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        return ApiUnavailable(
            f"{what}: the API server is unavailable ({label}){said}{hint}",
            lease=lease,
            verb=verb,
            status=status,
            reason=reason,
            retry_after=retry_after,
        )
    # 400 and 422 (the request was rejected), and anything unexpected (3xx, 405, 415...).
    return fail(LeaseInvalid, f"{what}: the API server rejected the request ({label}){said}")


# --------------------------------------------------------------------------------------------
# Reading bodies
# --------------------------------------------------------------------------------------------


class _NotJson:
    pass


NOT_JSON: Any = _NotJson()
"""What :func:`loads` returns for a body that is not JSON."""


def loads(raw: bytes) -> Any:
    """Decode JSON, or return :data:`NOT_JSON`."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return NOT_JSON


def snippet(raw: bytes) -> str:
    """The start of a body, to quote in an error message."""
    return raw[: _SNIPPET * 4].decode("utf-8", "replace")[:_SNIPPET]


def is_lease_404(body: bytes, resource: str = _RESOURCE) -> bool:
    """True when a 404 says this Lease (or LeaseCandidate, by ``resource``) is missing, not
    its namespace, nor the API."""
    parsed = loads(body)
    if not isinstance(parsed, Mapping):
        return False
    details = parsed.get("details")
    return isinstance(details, Mapping) and details.get("kind") == resource


def _looks_like_status(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Status" or (
        "kind" not in obj and ("message" in obj or "reason" in obj or "code" in obj)
    )


def _retry_after(headers: Mapping[str, str] | None, details: Mapping[str, Any]) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds) or the Status's ``retryAfterSeconds``."""
    candidates: list[object] = []
    if headers is not None:
        candidates.append(headers.get("Retry-After"))
    candidates.append(details.get("retryAfterSeconds"))
    for value in candidates:
        if isinstance(value, bool) or value is None:
            continue
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue  # an HTTP-date: we only read delays
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None
