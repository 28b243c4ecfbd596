"""The request as the handlers see it, the answer they give, and what all handlers share.

:class:`Call` wraps one parsed request; handlers return a :class:`Reply` (or raise
:class:`~leaderelect.testing._apiserver.status.ApiError`). Also here: resourceVersion parsing, the
``Accept`` negotiation (Lease, ``Table``, ``PartialObjectMetadata``) and list-option checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from aiohttp import web

from .._requests import RequestInfo
from .gojson import go_quote
from .selectors import parse_field_selector, parse_label_selector
from .status import ApiError, Cause, FieldError, bad_request, internal_error, invalid_options
from .store import Store

__all__ = [
    "API_VERSION",
    "Call",
    "Form",
    "Reply",
    "Settings",
    "await_resource_version",
    "include_object",
    "int_param",
    "lease_rv",
    "negotiate",
    "object_resource_version",
    "parse_uint",
    "partial",
    "query_resource_version",
    "selection",
    "strip_type_meta",
    "too_large",
    "validate_list_options",
    "with_type_meta",
]

API_VERSION = "coordination.k8s.io/v1"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Timings of the server (seconds)."""

    min_request_timeout: float = 1800.0
    resource_version_wait: float = 3.0
    bookmark_interval: float = 60.0
    bookmark_before_timeout: float = 2.0


@dataclasses.dataclass(slots=True)
class Reply:
    """An answer: status, JSON body (or raw bytes), extra headers, and the body's content type."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    content_type: str = "application/json"
    pretty: bool | None = None


@dataclasses.dataclass(slots=True)
class Call:
    """A parsed request, as the handlers see it."""

    request: web.Request
    info: RequestInfo
    user: str

    def param(self, name: str) -> str:
        """A query parameter's first value ('' when absent)."""
        return self.request.query.get(name, "")

    def has(self, name: str) -> bool:
        """True when the query has the parameter."""
        return name in self.request.query

    @property
    def manager(self) -> str:
        """The field manager: ``fieldManager`` or the User-Agent up to its first ``/``."""
        explicit = self.param("fieldManager")
        if explicit:
            return explicit
        agent = self.request.headers.get("User-Agent", "")
        manager = agent.split("/", 1)[0][:128]
        return manager or "unknown"

    @property
    def namespace(self) -> str:
        """The namespace in the path ('' for cluster scope)."""
        return self.info.namespace or ""

    @property
    def name(self) -> str:
        """The name in the path."""
        return self.info.name or ""


def parse_uint(text: str) -> int:
    """Go's ``strconv.ParseUint(text, 10, 64)``."""
    if not text or not text.isdigit() or not text.isascii():
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2**64:
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


def int_param(call: Call, name: str) -> int:
    """An integer query parameter (0 when absent or empty); 400 with Go's
    ``strconv.ParseInt`` error when it is not one."""
    text = call.param(name)
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax") from None


def query_resource_version(call: Call) -> int | None:
    """The ``resourceVersion`` query parameter (None when absent or empty)."""
    text = call.param("resourceVersion")
    if not text:
        return None
    try:
        return parse_uint(text)
    except ValueError as exc:
        raise internal_error(f"resourceVersion: Invalid value: {go_quote(text)}: {exc}") from None


def object_resource_version(obj: Mapping[str, Any]) -> int:
    """``metadata.resourceVersion`` (0 when empty), as the storage versioner reads it."""
    text = (obj.get("metadata") or {}).get("resourceVersion", "")
    if not text:
        return 0
    try:
        return parse_uint(text)
    except ValueError as exc:
        raise internal_error(str(exc)) from None


def lease_rv(obj: Mapping[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def strip_type_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def with_type_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "Lease", "apiVersion": API_VERSION, **strip_type_meta(obj)}


def too_large(requested: int, current: int) -> ApiError:
    return ApiError.make(
        504,
        f"Timeout: Too large resource version: {requested}, current: {current}",
        "Timeout",
        details={
            "causes": [Cause("ResourceVersionTooLarge", "Too large resource version").to_json()],
            "retryAfterSeconds": 1,
        },
        headers={"Retry-After": "1"},
    )


async def await_resource_version(store: Store, settings: Settings, wanted: int) -> None:
    """Wait (up to ``resource_version_wait``) until the store reaches ``wanted``; else 504."""
    if wanted <= store.resource_version:
        return
    with anyio.move_on_after(settings.resource_version_wait):
        while store.resource_version < wanted:
            await store.wait_changed()
    if store.resource_version < wanted:
        raise too_large(wanted, store.resource_version)


def selection(call: Call) -> Callable[[Mapping[str, Any]], bool]:
    fields = parse_field_selector(call.param("fieldSelector"))
    labels = parse_label_selector(call.param("labelSelector"))
    namespace = call.namespace

    def selected(lease: Mapping[str, Any]) -> bool:
        if namespace and lease["metadata"]["namespace"] != namespace:
            return False
        return fields.matches(lease) and labels.matches(lease)

    return selected


@dataclasses.dataclass(frozen=True, slots=True)
class Form:
    kind: str  # "object", "table", "partial"
    api_version: str = "meta.k8s.io/v1"


def negotiate(call: Call) -> Form:
    """What ``Accept`` asks for; protobuf and YAML are answered as JSON."""
    accept = call.request.headers.get("Accept", "")
    if not accept.strip():
        return Form("object")
    known_media = False
    for entry in accept.split(","):
        parts = [p.strip() for p in entry.split(";")]
        media = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if media not in (
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/*",
            "*/*",
        ):
            continue
        known_media = True
        shape = params.get("as")
        if shape is None:
            return Form("object")
        if media == "application/vnd.kubernetes.protobuf":
            continue  # transformed forms are served as JSON only here
        if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue
        version = f"meta.k8s.io/{params['v']}"
        if shape == "Table":
            return Form("table", version)
        if shape in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Form("partial", version)
    if known_media:
        raise ApiError.make(
            406,
            "only the following media types are accepted: application/json, application/yaml, "
            "application/vnd.kubernetes.protobuf",
            "NotAcceptable",
        )
    raise ApiError.make(
        406,
        "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, "
        "application/vnd.kubernetes.protobuf",
        "NotAcceptable",
        details={},
    )


def partial(lease: Mapping[str, Any], api_version: str) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": lease["metadata"],
    }


def include_object(call: Call) -> str:
    """``includeObject`` for Table answers: ``Metadata`` (default), ``Object`` or ``None``."""
    return call.param("includeObject") or "Metadata"


def validate_list_options(call: Call, *, watch: bool) -> None:
    """``ValidateListOptions`` (422 ``ListOptions.meta.k8s.io "" is invalid``)."""
    match = call.param("resourceVersionMatch")
    initial = call.has("sendInitialEvents")
    errors: list[FieldError] = []
    forbidden = FieldError.forbidden
    if watch:
        if initial and match != "NotOlderThan":
            errors.append(
                forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            )
        if match:
            if not initial:
                errors.append(
                    forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                        "provided",
                    )
                )
            if match != "NotOlderThan":
                errors.append(
                    FieldError.not_supported("resourceVersionMatch", match, ["NotOlderThan"])
                )
            if call.param("continue"):
                errors.append(
                    forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden when continue is provided",
                    )
                )
    else:
        if match:
            if not call.param("resourceVersion"):
                errors.append(
                    forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    )
                )
            if call.param("continue"):
                errors.append(
                    forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden when continue is provided",
                    )
                )
            if match not in ("Exact", "NotOlderThan"):
                errors.append(
                    FieldError.not_supported(
                        "resourceVersionMatch", match, ["Exact", "NotOlderThan", ""]
                    )
                )
            if match == "Exact" and call.param("resourceVersion") == "0":
                errors.append(
                    forbidden(
                        "resourceVersionMatch",
                        'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                )
        if initial:
            errors.append(forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if errors:
        raise invalid_options("ListOptions", errors)
