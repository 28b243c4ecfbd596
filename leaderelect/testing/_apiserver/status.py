"""Kubernetes ``Status`` bodies and ``field.Error`` lists, spelled as kube-apiserver spells them.

Every failure the server answers is an :class:`ApiError` carrying a ready ``Status`` body (key
order ``kind, apiVersion, metadata, status, message, reason, details, code``). The constructors
below take facts and build kube-apiserver's exact message, e.g.
``leases.coordination.k8s.io "gt-a" not found``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from .gojson import dumps, go_quote

__all__ = [
    "GROUP",
    "RESOURCE",
    "ApiError",
    "Cause",
    "FieldError",
    "FieldErrorType",
    "already_exists",
    "bad_request",
    "conflict",
    "forbidden",
    "internal_error",
    "invalid",
    "method_not_allowed",
    "not_found",
    "path_not_found",
    "status_body",
    "success_status",
    "unauthorized",
]

GROUP = "coordination.k8s.io"
RESOURCE = "leases"
QUALIFIED_RESOURCE = f"{RESOURCE}.{GROUP}"
QUALIFIED_KIND = f"Lease.{GROUP}"


@dataclasses.dataclass(frozen=True, slots=True)
class Cause:
    """One ``details.causes[]`` entry."""

    reason: str
    message: str
    field: str = ""

    def to_json(self) -> dict[str, str]:
        """The cause as JSON (empty members omitted)."""
        out = {"reason": self.reason}
        if self.message:
            out["message"] = self.message
        if self.field:
            out["field"] = self.field
        return out


def status_body(
    code: int,
    message: str,
    reason: str = "",
    *,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A failure ``Status`` object; ``details=None`` omits the member, ``{}`` keeps it empty."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = dict(details)
    body["code"] = code
    return body


def success_status(details: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Status`` a successful DELETE answers."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": dict(details),
    }


class ApiError(Exception):
    """A failure answered as a Kubernetes ``Status``: HTTP code, body and extra headers."""

    def __init__(self, body: dict[str, Any], *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body.get("message", ""))
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def code(self) -> int:
        """The HTTP status code (the body's ``code``)."""
        return int(self.body["code"])

    @classmethod
    def make(
        cls,
        code: int,
        message: str,
        reason: str = "",
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiError:
        """Build an error from its parts (see :func:`status_body`)."""
        return cls(status_body(code, message, reason, details=details), headers=headers)


def _lease_details(name: str | None, kind: str = RESOURCE) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    details["group"] = GROUP
    details["kind"] = kind
    return details


def _lease_error(code: int, name: str, what: str, reason: str) -> ApiError:
    return ApiError.make(
        code, f"{QUALIFIED_RESOURCE} {go_quote(name)} {what}", reason, details=_lease_details(name)
    )


def not_found(name: str) -> ApiError:
    """404 for a Lease that does not exist."""
    return _lease_error(404, name, "not found", "NotFound")


def namespace_not_found(namespace: str) -> ApiError:
    """404 for a write into a namespace that does not exist."""
    return ApiError.make(
        404,
        f"namespaces {go_quote(namespace)} not found",
        "NotFound",
        details={"name": namespace, "kind": "namespaces"},
    )


def already_exists(name: str) -> ApiError:
    """409 for a create of a Lease that exists."""
    return _lease_error(409, name, "already exists", "AlreadyExists")


STALE_DETAIL = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def conflict(name: str, detail: str = STALE_DETAIL, *, kind_spelling: bool = False) -> ApiError:
    """409 Conflict; ``kind_spelling`` uses ``Lease.coordination.k8s.io`` (DELETE preconditions)."""
    qualified = QUALIFIED_KIND if kind_spelling else QUALIFIED_RESOURCE
    return ApiError.make(
        409,
        f"Operation cannot be fulfilled on {qualified} {go_quote(name)}: {detail}",
        "Conflict",
        details=_lease_details(name, "Lease" if kind_spelling else RESOURCE),
    )


def bad_request(message: str) -> ApiError:
    """400 BadRequest without details."""
    return ApiError.make(400, message, "BadRequest")


def internal_error(message: str) -> ApiError:
    """500 with no reason (as kube-apiserver answers unparsable resourceVersions)."""
    return ApiError.make(500, message)


def method_not_allowed() -> ApiError:
    """405 for a method the resource path does not serve."""
    return ApiError.make(
        405,
        "the server does not allow this method on the requested resource",
        "MethodNotAllowed",
        details={},
    )


def path_not_found() -> ApiError:
    """404 for an API path that names no resource."""
    return ApiError.make(
        404, "the server could not find the requested resource", "NotFound", details={}
    )


def unauthorized() -> ApiError:
    """401 for an unknown bearer token."""
    return ApiError.make(401, "Unauthorized", "Unauthorized")


def forbidden(
    user: str,
    verb: str,
    *,
    resource: str | None,
    group: str = GROUP,
    namespace: str | None = None,
    name: str | None = None,
    path: str = "",
) -> ApiError:
    """403 with RBAC's message for a resource request, or for a non-resource ``path``."""
    if resource is None:
        message = f"forbidden: User {go_quote(user)} cannot {verb} path {go_quote(path)}"
        return ApiError.make(
            403, message, "Forbidden", details={}, headers={"X-Content-Type-Options": "nosniff"}
        )
    qualified = f"{resource}.{group}" if group else resource
    subject = f"{qualified} {go_quote(name)}" if name else qualified
    scope = f"in the namespace {go_quote(namespace)}" if namespace else "at the cluster scope"
    message = (
        f"{subject} is forbidden: User {go_quote(user)} cannot {verb} resource "
        f"{go_quote(resource)} in API group {go_quote(group)} {scope}"
    )
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = resource
    return ApiError.make(
        403, message, "Forbidden", details=details, headers={"X-Content-Type-Options": "nosniff"}
    )


class FieldErrorType(enum.Enum):
    """``field.ErrorType``: the cause reason and the words that open the message."""

    INVALID = ("FieldValueInvalid", "Invalid value")
    REQUIRED = ("FieldValueRequired", "Required value")
    FORBIDDEN = ("FieldValueForbidden", "Forbidden")
    NOT_SUPPORTED = ("FieldValueNotSupported", "Unsupported value")
    TOO_LONG = ("FieldValueTooLong", "Too long")
    DUPLICATE = ("FieldValueDuplicate", "Duplicate value")

    @property
    def reason(self) -> str:
        """The ``StatusCause.reason``."""
        return self.value[0]

    @property
    def words(self) -> str:
        """The words the message opens with."""
        return self.value[1]


_NO_VALUE = object()


def render_value(value: object) -> str:
    """How ``field.Error`` prints a bad value: ``%q`` for strings, ``%v`` for numbers."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, (Sequence, Mapping)):
        return dumps(value).rstrip("\n")  # Go renders composite values as JSON
    return str(value)


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    """A ``field.Error``: a path, a type, the bad value and a detail."""

    type: FieldErrorType
    field: str
    value: object = _NO_VALUE
    detail: str = ""

    @classmethod
    def invalid(cls, field: str, value: object, detail: str) -> FieldError:
        """``field.Invalid``."""
        return cls(FieldErrorType.INVALID, field, value, detail)

    @classmethod
    def required(cls, field: str, detail: str) -> FieldError:
        """``field.Required``."""
        return cls(FieldErrorType.REQUIRED, field, _NO_VALUE, detail)

    @classmethod
    def forbidden(cls, field: str, detail: str) -> FieldError:
        """``field.Forbidden``."""
        return cls(FieldErrorType.FORBIDDEN, field, _NO_VALUE, detail)

    @classmethod
    def not_supported(cls, field: str, value: object, supported: Sequence[str]) -> FieldError:
        """``field.NotSupported`` listing the supported values."""
        listed = ", ".join(go_quote(s) for s in supported)
        return cls(FieldErrorType.NOT_SUPPORTED, field, value, f"supported values: {listed}")

    @classmethod
    def too_long(cls, field: str, limit: int) -> FieldError:
        """``field.TooLong`` for a byte limit."""
        return cls(FieldErrorType.TOO_LONG, field, _NO_VALUE, f"may not be more than {limit} bytes")

    def body(self) -> str:
        """``ErrorBody()``: the message without the field path."""
        text = self.type.words
        if self.value is not _NO_VALUE and self.type not in (
            FieldErrorType.REQUIRED,
            FieldErrorType.FORBIDDEN,
            FieldErrorType.TOO_LONG,
        ):
            text = f"{text}: {render_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def aggregate(errors: Sequence[FieldError]) -> str:
    """``ErrorList.ToAggregate()`` text: one message, or ``[a, b]`` with duplicates dropped."""
    messages: list[str] = []
    for error in errors:
        text = str(error)
        if text not in messages:
            messages.append(text)
    if len(messages) == 1:
        return messages[0]
    return "[" + ", ".join(messages) + "]"


def invalid(
    name: str,
    errors: Sequence[FieldError],
    *,
    group: str = GROUP,
    kind: str = "Lease",
    qualified: str | None = None,
) -> ApiError:
    """422 Invalid (``errors.NewInvalid``) for ``kind.group`` named ``name``."""
    if qualified is None:
        qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    details["causes"] = [Cause(e.type.reason, e.body(), e.field).to_json() for e in errors]
    message = f"{qualified} {go_quote(name)} is invalid"
    if errors:
        message = f"{message}: {aggregate(errors)}"
    return ApiError.make(422, message, "Invalid", details=details)


def invalid_options(kind: str, errors: Sequence[FieldError]) -> ApiError:
    """422 for bad request options (``CreateOptions.meta.k8s.io "" is invalid: ...``)."""
    return invalid("", errors, group="meta.k8s.io", kind=kind)
