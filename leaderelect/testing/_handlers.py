"""The Lease and Namespace endpoints: each request's checks in the real server's order.

Handlers take a :class:`Call` (the parsed request) and return a :class:`Reply`, or raise
:class:`~leaderelect.testing._status.ApiError`. The order of checks follows kube-apiserver's
(decode, name checks, namespace admission, preconditions, resourceVersion, validation, storage),
because which error a client sees when several apply is part of the behaviour. Reads never
await between looking at the store and answering; writes commit through ``Store.commit``
without awaiting in between.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import datetime
import logging
import random
import string
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from aiohttp import web

from . import _discovery
from ._fieldmanager import managed_fields_for_create, managed_fields_for_update
from ._gojson import JsonSyntaxError, dumps, go_quote, parse
from ._gotime import Instant
from ._patch import (
    JsonPatchError,
    PatchType,
    apply_patch,
    conversion_error,
    go_format,
    parse_patch,
    unsupported_media_type,
)
from ._requests import RequestInfo
from ._schema import DecodeFailure, decode, normalize
from ._selectors import parse_field_selector, parse_label_selector
from ._status import (
    GROUP,
    RESOURCE,
    ApiError,
    Cause,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    internal_error,
    invalid,
    invalid_options,
    method_not_allowed,
    namespace_not_found,
    not_found,
    status_body,
    success_status,
)
from ._store import Expired, Store, Watcher
from ._validation import (
    decode_body,
    generate_name_base,
    kind_error,
    strict_outcome,
    type_meta,
    validate_create,
    validate_update,
)

__all__ = ["Call", "Handlers", "Reply", "Settings"]

logger = logging.getLogger(__name__)

API_VERSION = "coordination.k8s.io/v1"
_GATED_SPEC_FIELDS = ("strategy", "preferredHolder")
_JSON_BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FIELD_VALIDATION = ("", "Ignore", "Strict", "Warn")


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


# ---------------------------------------------------------------------------------------------
# Small helpers


def _parse_uint(text: str) -> int:
    """Go's ``strconv.ParseUint(text, 10, 64)``."""
    if not text or not text.isdigit() or not text.isascii():
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2**64:
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


def _query_resource_version(call: Call) -> int | None:
    """The ``resourceVersion`` query parameter (None when absent or empty)."""
    text = call.param("resourceVersion")
    if not text:
        return None
    try:
        return _parse_uint(text)
    except ValueError as exc:
        raise internal_error(f"resourceVersion: Invalid value: {go_quote(text)}: {exc}") from None


def _object_resource_version(obj: Mapping[str, Any]) -> int:
    """``metadata.resourceVersion`` (0 when empty), as the storage versioner reads it."""
    text = (obj.get("metadata") or {}).get("resourceVersion", "")
    if not text:
        return 0
    try:
        return _parse_uint(text)
    except ValueError as exc:
        raise internal_error(str(exc)) from None


def _lease_rv(obj: Mapping[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def _strip_type_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _with_type_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "Lease", "apiVersion": API_VERSION, **_strip_type_meta(obj)}


def _content_type(call: Call) -> str:
    return call.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _options_errors(call: Call, kind: str, *, dry_run_only: bool = False) -> None:
    """``{Create,Update,Patch,Delete}Options`` validation (422)."""
    errors: list[FieldError] = []
    dry_run = call.request.query.getall("dryRun", [])
    if any(v != "All" for v in dry_run):
        errors.append(FieldError.not_supported("dryRun", list(dry_run), ["All"]))
    if not dry_run_only:
        validation = call.param("fieldValidation")
        if validation not in _FIELD_VALIDATION:
            errors.append(
                FieldError.not_supported("fieldValidation", validation, _FIELD_VALIDATION)
            )
        if len(call.param("fieldManager").encode()) > 128:
            errors.append(FieldError.too_long("fieldManager", 128))
    if errors:
        raise invalid_options(kind, errors)


def _is_dry_run(call: Call) -> bool:
    return bool(call.request.query.getall("dryRun", []))


def _generate_name(prefix: str) -> str:
    suffix = "".join(random.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
    return generate_name_base(prefix) + suffix


def _too_large(requested: int, current: int) -> ApiError:
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


def _expired(message: str) -> ApiError:
    return ApiError.make(410, message, "Expired")


def _drop_gated(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _GATED_SPEC_FIELDS}


# ---------------------------------------------------------------------------------------------
# Output negotiation


@dataclasses.dataclass(frozen=True, slots=True)
class _Form:
    kind: str  # "object", "table", "partial"
    api_version: str = "meta.k8s.io/v1"


def _negotiate(call: Call) -> _Form:
    """What ``Accept`` asks for; protobuf and YAML are answered as JSON."""
    accept = call.request.headers.get("Accept", "")
    if not accept.strip():
        return _Form("object")
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
            return _Form("object")
        if media == "application/vnd.kubernetes.protobuf":
            continue  # transformed forms are served as JSON only here
        if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue
        version = f"meta.k8s.io/{params['v']}"
        if shape == "Table":
            return _Form("table", version)
        if shape in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return _Form("partial", version)
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


def _partial(lease: Mapping[str, Any], api_version: str) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": lease["metadata"],
    }


# ---------------------------------------------------------------------------------------------
# Continue tokens


def _encode_continue(resource_version: int, start: str) -> str:
    payload = dumps({"v": "meta.k8s.io/v1", "rv": resource_version, "start": start}).rstrip("\n")
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    def bad(detail: str) -> ApiError:
        return bad_request(f"invalid continue token: continue key is not valid: {detail}")

    alphabet = string.ascii_letters + string.digits + "-_"
    for index, char in enumerate(token):
        if char not in alphabet:
            raise bad(f"illegal base64 data at input byte {index}")
    if len(token) % 4 == 1:
        raise bad(f"illegal base64 data at input byte {len(token) - 1}")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise bad("illegal base64 data at input byte 0") from None
    try:
        value = parse(raw)
    except JsonSyntaxError as exc:
        raise bad(str(exc)) from None
    if not isinstance(value, dict):
        raise bad(
            "json: cannot unmarshal "
            f"{'array' if isinstance(value, list) else 'value'} into Go value of type "
            "storage.continueToken"
        )
    if value.get("v") != "meta.k8s.io/v1":
        raise bad(f"server does not recognize this encoded version {value.get('v') or ''}")
    start = value.get("start")
    rv = value.get("rv")
    from ._gojson import GoNumber

    number = rv.as_int() if isinstance(rv, GoNumber) else None
    if not isinstance(start, str) or not start:
        raise bad("encoded start key empty")
    if number is None or number <= 0:
        raise bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    return number, start


# ---------------------------------------------------------------------------------------------
# The handlers


class Handlers:
    """Lease and Namespace endpoints over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        wall_clock: Callable[[], datetime.datetime],
        closing: asyncio.Event,
    ) -> None:
        self.store = store
        self.settings = settings
        self._wall_clock = wall_clock
        self._closing = closing

    # -- shared -----------------------------------------------------------------------------

    def _now(self) -> Instant:
        return Instant.from_datetime(self._wall_clock())

    async def _await_resource_version(self, wanted: int) -> None:
        """Wait (up to ``resource_version_wait``) until the store reaches ``wanted``; else 504."""
        if wanted <= self.store.resource_version:
            return
        with anyio.move_on_after(self.settings.resource_version_wait):
            while self.store.resource_version < wanted:
                await self.store.wait_changed()
        if self.store.resource_version < wanted:
            raise _too_large(wanted, self.store.resource_version)

    def _reply_object(self, call: Call, lease: Mapping[str, Any], status: int = 200) -> Reply:
        form = _negotiate(call)
        if form.kind == "table":
            meta = {"resourceVersion": lease["metadata"]["resourceVersion"]}
            body: Any = _discovery.lease_table(
                [lease], meta, self._now(), form.api_version, include=_include(call)
            )
        elif form.kind == "partial":
            body = _partial(lease, form.api_version)
        else:
            body = _with_type_meta(lease)
        return Reply(status, body)

    def _check_namespace_for_create(self, namespace: str, name: str) -> None:
        state = self.store.namespace_state(namespace)
        if state is None:
            raise namespace_not_found(namespace)
        if state == "Terminating":
            raise ApiError.make(
                403,
                f"{RESOURCE}.{GROUP} {go_quote(name)} is forbidden: unable to create new content "
                f"in namespace {namespace} because it is being terminated",
                "Forbidden",
                details={
                    "name": name,
                    "group": GROUP,
                    "kind": RESOURCE,
                    "causes": [
                        Cause(
                            "NamespaceTerminating",
                            f"namespace {namespace} is being terminated",
                            "metadata.namespace",
                        ).to_json()
                    ],
                },
            )

    @staticmethod
    def _check_name(lease: Mapping[str, Any], call: Call) -> None:
        meta = lease.get("metadata") or {}
        name = meta.get("name", "")
        if not name:
            raise bad_request(
                f"the name of the object ({call.name} based on URL) was undeterminable: "
                "name must be provided"
            )
        if name != call.name:
            raise bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({call.name})"
            )
        Handlers._check_namespace_match(lease, call)

    @staticmethod
    def _check_namespace_match(lease: Mapping[str, Any], call: Call) -> None:
        body_namespace = (lease.get("metadata") or {}).get("namespace", "")
        if body_namespace and body_namespace != call.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )

    async def _read_lease_body(
        self, call: Call, options_kind: str
    ) -> tuple[dict[str, Any], list[str]]:
        if _content_type(call) not in _JSON_BODY_TYPES:
            raise ApiError.make(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml, application/vnd.kubernetes.protobuf",
                "UnsupportedMediaType",
            )
        data = await call.request.read()
        _options_errors(call, options_kind)
        if _content_type(call) == "application/yaml":
            data = _yaml_to_json(data)
        decoded = decode_body(data, call.param("fieldValidation"))
        return decoded.lease, decoded.warnings

    # -- GET --------------------------------------------------------------------------------

    async def get(self, call: Call) -> Reply:
        """GET one Lease."""
        wanted = _query_resource_version(call)
        if wanted:
            await self._await_resource_version(wanted)
        lease = self.store.get(call.namespace, call.name)
        if lease is None:
            raise not_found(call.name)
        return self._reply_object(call, lease)

    # -- LIST -------------------------------------------------------------------------------

    def _selection(self, call: Call) -> Callable[[Mapping[str, Any]], bool]:
        fields = parse_field_selector(call.param("fieldSelector"))
        labels = parse_label_selector(call.param("labelSelector"))
        namespace = call.namespace

        def selected(lease: Mapping[str, Any]) -> bool:
            if namespace and lease["metadata"]["namespace"] != namespace:
                return False
            return fields.matches(lease) and labels.matches(lease)

        return selected

    async def list(self, call: Call) -> Reply:
        """LIST Leases (a namespace, or all namespaces)."""
        _validate_list_options(call, watch=False)
        try:
            wanted = _query_resource_version(call)
        except ApiError as exc:
            raise bad_request(f"invalid resource version: {exc}") from None
        match = call.param("resourceVersionMatch")
        limit_text = call.param("limit")
        limit = 0
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise bad_request(
                    f"strconv.ParseInt: parsing {go_quote(limit_text)}: invalid syntax"
                ) from None
        selected = self._selection(call)
        continue_token = call.param("continue")
        start = ""
        namespace = call.namespace or None
        if continue_token:
            if call.param("resourceVersion") and call.param("resourceVersion") != "0":
                raise bad_request("specifying resource version is not allowed when using continue")
            list_rv, start = _decode_continue(continue_token)
            try:
                items = self.store.items_at(list_rv, namespace)
            except Expired:
                raise _expired(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use the "
                    "continue token in this response to retrieve the remainder of the results. "
                    "Continuing with the provided token results in an inconsistent list - objects "
                    "that were created, modified, or deleted between the time the first chunk was "
                    "returned and now may show up in the list."
                ) from None
        elif wanted and match == "Exact":
            await self._await_resource_version(wanted)
            try:
                items = self.store.items_at(wanted, namespace)
            except Expired:
                raise _expired("The resourceVersion for the provided list is too old.") from None
            list_rv = wanted
        else:
            if wanted:
                await self._await_resource_version(wanted)
            items = self.store.items(namespace)
            list_rv = self.store.resource_version
        items = [i for i in items if selected(i)]

        def key(lease: Mapping[str, Any]) -> str:
            meta = lease["metadata"]
            return meta["name"] + "\x00" if namespace else f"{meta['namespace']}/{meta['name']}\x00"

        if start:
            items = [i for i in items if key(i) > start]
        list_meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if call.param("resourceVersion") == "0" and not continue_token:
            limit = 0  # served from the watch cache, which does not paginate
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            list_meta["continue"] = _encode_continue(list_rv, key(items[-1]))
            if not call.param("labelSelector") and not call.param("fieldSelector"):
                list_meta["remainingItemCount"] = rest
        form = _negotiate(call)
        if form.kind == "table":
            return Reply(
                200,
                _discovery.lease_table(
                    items, list_meta, self._now(), form.api_version, include=_include(call)
                ),
            )
        if form.kind == "partial":
            body: dict[str, Any] = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": form.api_version,
                "metadata": list_meta,
                "items": [_partial(i, form.api_version) for i in items],
            }
            return Reply(200, body)
        body = {
            "kind": "LeaseList",
            "apiVersion": API_VERSION,
            "metadata": list_meta,
            "items": [_strip_type_meta(i) for i in items],
        }
        return Reply(200, body)

    # -- WATCH ------------------------------------------------------------------------------

    async def watch(self, call: Call) -> web.StreamResponse:
        """A watch stream (newline-delimited JSON events)."""
        _validate_list_options(call, watch=True)
        wanted = _query_resource_version(call)
        selected = self._selection(call)
        if call.name:
            by_selector = selected
            name = call.name

            def selected(lease: Mapping[str, Any]) -> bool:
                return lease["metadata"]["name"] == name and by_selector(lease)

        timeout = self._watch_timeout(call)
        bookmarks = call.param("allowWatchBookmarks").lower() in ("true", "1", "t")
        initial: bool | None = None
        if call.has("sendInitialEvents"):
            initial = call.param("sendInitialEvents").lower() in ("true", "1", "t")
        deadline = anyio.current_time() + timeout
        store = self.store
        # Snapshot and registration happen together, so no change falls between them.
        failure: dict[str, Any] | None = None
        if initial and bookmarks:
            # The real server runs on etcd 3.4, which lacks what streaming lists need.
            failure = status_body(
                500,
                "a watch stream was requested by the client but the required storage feature "
                "RequestWatchProgress is disabled",
                "InternalError",
            )
            start_rv, backlog = store.resource_version, []
        elif initial is not None:
            start_rv = max(store.resource_version, wanted or 0)
            items = store.items(call.namespace or None) if initial else []
            backlog = [("ADDED", i) for i in items if selected(i)]
        elif not wanted:
            start_rv = store.resource_version
            backlog = [("ADDED", i) for i in store.items(call.namespace or None) if selected(i)]
        elif wanted > store.resource_version:
            start_rv = wanted
            backlog = []
        else:
            start_rv = store.resource_version
            try:
                changes = store.changes_since(wanted)
            except Expired as exc:
                failure = status_body(410, str(exc), "Expired")
                changes = []
            probe = Watcher(selected, call.info, wanted)
            backlog = [e for e in (probe.translate(c) for c in changes) if e is not None]
        watcher = Watcher(selected, call.info, start_rv)
        if failure is None:
            store.add_watcher(watcher)
        form = _negotiate(call)
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.headers["Cache-Control"] = "no-cache, private"
        response.enable_chunked_encoding()
        try:
            await response.prepare(call.request)
            if failure is not None:
                await response.write(dumps({"type": "ERROR", "object": failure}).encode())
                return response
            events = _EventWriter(response, form, _include(call), self._now)
            for event_type, obj in backlog:
                await events.send(event_type, obj)
            await self._stream(watcher, events, deadline, bookmarks)
        except (ConnectionResetError, ConnectionError):
            logger.debug("watch client went away", extra={"user": call.user})
        finally:
            store.remove_watcher(watcher)
        return response

    def _watch_timeout(self, call: Call) -> float:
        text = call.param("timeoutSeconds")
        seconds = 0
        if text:
            try:
                seconds = int(text)
            except ValueError:
                raise bad_request(
                    f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax"
                ) from None
        if seconds > 0:
            return float(seconds)
        base = self.settings.min_request_timeout
        return base * (1.0 + random.random())

    def _next_bookmark(self, now: float, deadline: float) -> float | None:
        pre_timeout = deadline - self.settings.bookmark_before_timeout
        candidate = min(now + self.settings.bookmark_interval, pre_timeout)
        return candidate if candidate > now else None

    async def _stream(
        self, watcher: Watcher, events: _EventWriter, deadline: float, bookmarks: bool
    ) -> None:
        bookmark_at = self._next_bookmark(anyio.current_time(), deadline) if bookmarks else None
        while True:
            while watcher.queue:
                event_type, obj = watcher.queue.popleft()
                watcher.resource_version = _lease_rv(obj)
                await events.send(event_type, obj)
            if watcher.closed or self._closing.is_set():
                return
            now = anyio.current_time()
            if now >= deadline:
                return
            if bookmark_at is not None and now >= bookmark_at:
                current = self.store.resource_version
                if current > watcher.resource_version:
                    watcher.resource_version = current
                    await events.response.write(_bookmark(current))
                bookmark_at = self._next_bookmark(now, deadline)
                continue
            wake = deadline if bookmark_at is None else min(deadline, bookmark_at)
            with anyio.move_on_after(max(wake - now, 0.0)):
                await watcher.wait()

    # -- CREATE -----------------------------------------------------------------------------

    async def create(self, call: Call) -> Reply:
        """POST a Lease."""
        lease, warnings = await self._read_lease_body(call, "CreateOptions")
        self._check_namespace_match(lease, call)
        name = (lease.get("metadata") or {}).get("name", "")
        self._check_namespace_for_create(call.namespace, name)
        stored = self._prepare_create(lease, call)
        if _object_resource_version(lease) != 0:
            raise internal_error("resourceVersion should not be set on objects to be created")
        return self._commit_create(call, stored, warnings)

    def _prepare_create(self, lease: Mapping[str, Any], call: Call) -> dict[str, Any]:
        """``BeforeCreate``: system fields, generated name, managedFields, validation (422)."""
        obj = copy.deepcopy(dict(lease))
        meta = dict(obj.get("metadata") or {})
        meta["namespace"] = call.namespace
        for key in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "resourceVersion",
        ):
            meta.pop(key, None)
        if meta.get("generateName") and not meta.get("name"):
            meta["name"] = _generate_name(meta["generateName"])
        now = self._now()
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now.format_seconds()
        meta.pop("managedFields", None)
        obj["metadata"] = meta
        obj["kind"], obj["apiVersion"] = "Lease", API_VERSION
        as_sent = normalize(obj)
        managed = managed_fields_for_create(as_sent, call.manager, now.format_seconds())
        stored = dict(as_sent)
        stored["spec"] = _drop_gated(as_sent["spec"])
        errors = validate_create(stored)
        if errors:
            raise invalid(meta.get("name", ""), errors)
        if managed:
            stored["metadata"] = {**stored["metadata"], "managedFields": managed}
        return normalize(stored)

    def _commit_create(self, call: Call, stored: dict[str, Any], warnings: Sequence[str]) -> Reply:
        meta = stored["metadata"]
        if self.store.get(call.namespace, meta["name"]) is not None:
            raise already_exists(meta["name"])
        if _is_dry_run(call):
            result = stored
        else:
            committed = self.store.commit(
                call.namespace, meta["name"], stored, user=call.user, verb=call.info.verb
            )
            assert committed is not None
            result = committed
        reply = self._reply_object(call, result, 201)
        reply.headers.extend(("Warning", _warning(w)) for w in warnings)
        return reply

    # -- UPDATE -----------------------------------------------------------------------------

    async def update(self, call: Call) -> Reply:
        """PUT a Lease (creates it when missing)."""
        lease, warnings = await self._read_lease_body(call, "UpdateOptions")
        self._check_name(lease, call)
        existing = self.store.get(call.namespace, call.name)
        body_uid = (lease.get("metadata") or {}).get("uid", "")
        if existing is None:
            self._check_namespace_for_create(call.namespace, call.name)
            if body_uid:
                raise _uid_precondition(call, body_uid, "")
            _object_resource_version(lease)
            stored = self._prepare_create(lease, call)
            return self._commit_create(call, stored, warnings)
        if body_uid and body_uid != existing["metadata"]["uid"]:
            raise _uid_precondition(call, body_uid, existing["metadata"]["uid"])
        return self._apply_update(call, existing, lease, warnings)

    def _apply_update(
        self,
        call: Call,
        existing: dict[str, Any],
        new: Mapping[str, Any],
        warnings: Sequence[str],
    ) -> Reply:
        """The storage half of update and patch: rv precondition, validation, commit."""
        rv = _object_resource_version(new)
        if rv == 0:
            raise invalid(
                call.name,
                [
                    FieldError.invalid(
                        "metadata.resourceVersion", 0, "must be specified for an update"
                    )
                ],
                kind=RESOURCE,
                qualified=f"{RESOURCE}.{GROUP}",
            )
        if rv != _lease_rv(existing):
            raise conflict(call.name)
        obj = copy.deepcopy(dict(new))
        old_meta = existing["metadata"]
        meta = dict(obj.get("metadata") or {})
        meta["namespace"] = call.namespace
        meta.pop("selfLink", None)
        if old_meta.get("generation"):
            meta["generation"] = old_meta["generation"]
        else:
            meta.pop("generation", None)
        if not meta.get("uid"):
            meta["uid"] = old_meta["uid"]
        meta["creationTimestamp"] = old_meta["creationTimestamp"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
        obj["metadata"] = meta
        obj["kind"], obj["apiVersion"] = "Lease", API_VERSION
        as_sent = normalize(obj)
        stored = dict(as_sent)
        stored["spec"] = _drop_gated(as_sent["spec"])
        errors = validate_update(stored, existing)
        if errors:
            raise invalid(call.name, errors)
        now = self._now().format_seconds()
        incoming = dict(as_sent)
        incoming["metadata"] = {
            **as_sent["metadata"],
            **({"managedFields": meta["managedFields"]} if "managedFields" in meta else {}),
        }
        managed = managed_fields_for_update(existing, incoming, call.manager, now)
        stored_meta = {k: v for k, v in stored["metadata"].items() if k != "managedFields"}
        if managed:
            stored_meta["managedFields"] = managed
        stored["metadata"] = stored_meta
        stored = normalize(stored)
        stored["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        stored = normalize(stored)
        if stored == existing:
            reply = self._reply_object(call, existing)
        else:
            reply = self._commit_update(call, stored)
        reply.headers.extend(("Warning", _warning(w)) for w in warnings)
        return reply

    def _commit_update(self, call: Call, stored: dict[str, Any]) -> Reply:
        if _is_dry_run(call):
            return self._reply_object(call, stored)
        meta = stored["metadata"]
        committed = self.store.commit(
            call.namespace, meta["name"], stored, user=call.user, verb=call.info.verb
        )
        assert committed is not None
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.store.commit(
                call.namespace, meta["name"], None, user=call.user, verb=call.info.verb
            )
        return self._reply_object(call, committed)

    # -- PATCH ------------------------------------------------------------------------------

    async def patch(self, call: Call) -> Reply:
        """PATCH a Lease (merge, JSON or strategic merge patch)."""
        patch_type = PatchType.from_content_type(call.request.headers.get("Content-Type", ""))
        if patch_type is None:
            raise unsupported_media_type()
        data = await call.request.read()
        if patch_type in (PatchType.APPLY_YAML, PatchType.APPLY_CBOR):
            if not call.param("fieldManager"):
                raise invalid_options(
                    "PatchOptions",
                    [FieldError.required("fieldManager", "is required for apply patch")],
                )
            raise unsupported_media_type()
        _options_errors(call, "PatchOptions")
        patch = parse_patch(patch_type, data)
        existing = self.store.get(call.namespace, call.name)
        if existing is None:
            raise not_found(call.name)
        document = _with_type_meta(existing)
        try:
            patched = apply_patch(patch_type, document, patch)
        except JsonPatchError:
            raise ApiError.make(
                422,
                "the server rejected our request due to an error in our request",
                "Invalid",
                details={},
            ) from None
        if isinstance(patched, dict):
            problem = kind_error(*type_meta(patched))
            if problem is not None:
                raise _patch_invalid(dumps(patched).rstrip("\n"), problem)
        if patch_type is PatchType.STRATEGIC:
            problem = conversion_error(patched)
            if problem is not None:
                raise _patch_invalid(go_format(patch), problem)
        try:
            decoded = decode(patched)
        except DecodeFailure as exc:
            raise _patch_invalid(dumps(patched).rstrip("\n"), str(exc)) from None
        try:
            warnings = strict_outcome(decoded.strict_errors, call.param("fieldValidation"))
        except ApiError:
            raise _patch_invalid(
                dumps(patched).rstrip("\n"),
                "strict decoding error: " + ", ".join(decoded.strict_errors),
            ) from None
        self._check_name(decoded.value, call)
        return self._apply_update(call, existing, decoded.value, warnings)

    # -- DELETE -----------------------------------------------------------------------------

    async def _delete_options(self, call: Call) -> dict[str, Any]:
        data = await call.request.read()
        options: dict[str, Any] = {}
        if data.strip():
            try:
                value = parse(data)
            except JsonSyntaxError as exc:
                raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
            if isinstance(value, dict):
                options = dict(value)
        errors: list[FieldError] = []
        policy = options.get("propagationPolicy") or call.param("propagationPolicy") or None
        if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
            errors.append(
                FieldError.not_supported(
                    "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"]
                )
            )
        dry_run = options.get("dryRun") or call.request.query.getall("dryRun", [])
        if isinstance(dry_run, list) and any(v != "All" for v in dry_run):
            errors.append(FieldError.not_supported("dryRun", list(dry_run), ["All"]))
        if errors:
            raise invalid_options("DeleteOptions", errors)
        options["propagationPolicy"] = policy
        options["dryRun"] = bool(dry_run)
        return options

    async def delete(self, call: Call) -> Reply:
        """DELETE a Lease."""
        options = await self._delete_options(call)
        existing = self.store.get(call.namespace, call.name)
        if existing is None:
            raise not_found(call.name)
        preconditions = options.get("preconditions")
        if isinstance(preconditions, dict):
            uid = preconditions.get("uid")
            rv = preconditions.get("resourceVersion")
            meta = existing["metadata"]
            if isinstance(uid, str) and uid and uid != meta["uid"]:
                raise conflict(
                    call.name,
                    f"the UID in the precondition ({uid}) does not match the UID in record "
                    f"({meta['uid']}). The object might have been deleted and then recreated",
                    kind_spelling=True,
                )
            if isinstance(rv, str) and rv and rv != meta["resourceVersion"]:
                raise conflict(
                    call.name,
                    f"the ResourceVersion in the precondition ({rv}) does not match the "
                    f"ResourceVersion in record ({meta['resourceVersion']}). The object might "
                    "have been modified",
                    kind_spelling=True,
                )
        return self._delete_one(call, existing, options)

    def _delete_one(
        self, call: Call, existing: dict[str, Any], options: Mapping[str, Any]
    ) -> Reply:
        meta = existing["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        policy = options.get("propagationPolicy")
        extra = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy or "")
        if extra and extra not in finalizers:
            finalizers.append(extra)
        dry_run = bool(options.get("dryRun"))
        if finalizers:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return self._reply_object(call, existing)
            new_meta = dict(meta)
            new_meta.setdefault("deletionTimestamp", self._now().format_seconds())
            new_meta.setdefault("deletionGracePeriodSeconds", 0)
            new_meta["finalizers"] = finalizers
            updated = normalize({**existing, "metadata": new_meta})
            if dry_run:
                return self._reply_object(call, updated)
            committed = self.store.commit(
                call.namespace, call.name, updated, user=call.user, verb=call.info.verb
            )
            assert committed is not None
            return self._reply_object(call, committed)
        if not dry_run:
            self.store.commit(call.namespace, call.name, None, user=call.user, verb=call.info.verb)
        details = {"name": call.name, "group": GROUP, "kind": RESOURCE, "uid": meta["uid"]}
        return Reply(200, success_status(details))

    async def delete_collection(self, call: Call) -> Reply:
        """DELETE every selected Lease of a namespace."""
        options = await self._delete_options(call)
        selected = self._selection(call)
        list_rv = self.store.resource_version
        items = [i for i in self.store.items(call.namespace or None) if selected(i)]
        for item in items:
            meta = item["metadata"]
            sub = dataclasses.replace(
                call,
                info=dataclasses.replace(call.info, name=meta["name"], namespace=meta["namespace"]),
            )
            self._delete_one(sub, item, options)
        body = {
            "kind": "LeaseList",
            "apiVersion": API_VERSION,
            "metadata": {"resourceVersion": str(list_rv)},
            "items": [_strip_type_meta(i) for i in items],
        }
        return Reply(200, body)

    # -- namespaces -------------------------------------------------------------------------

    async def namespaces(self, call: Call) -> Reply:
        """``/api/v1/namespaces[/{name}]``: get, list, create, delete."""
        method = call.request.method
        name = call.info.name
        if name is None and method == "GET":
            items = [self.store.namespace_object(n) for n in sorted(self.store.namespace_names())]
            return Reply(
                200,
                {
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.store.resource_version)},
                    "items": [_strip_type_meta(i) for i in items],
                },
            )
        if name is None and method == "POST":
            return await self._create_namespace(call)
        if name is not None and method in ("GET", "DELETE"):
            if self.store.namespace_state(name) is None:
                raise ApiError.make(
                    404,
                    f"namespaces {go_quote(name)} not found",
                    "NotFound",
                    details={"name": name, "kind": "namespaces"},
                )
            if method == "DELETE":
                self.store.terminate_namespace(name, self._now().format_seconds())
            return Reply(200, self.store.namespace_object(name))
        raise method_not_allowed()

    async def _create_namespace(self, call: Call) -> Reply:
        data = await call.request.read()
        try:
            value = parse(data)
        except JsonSyntaxError as exc:
            raise bad_request(
                "the object provided is unrecognized (must be of type Namespace): couldn't get "
                f"version/kind; json parse error: {exc}"
            ) from None
        meta = value.get("metadata") if isinstance(value, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            raise invalid(
                "",
                [FieldError.required("metadata.name", "name or generateName is required")],
                group="",
                kind="Namespace",
            )
        label_errors = _dns_label_errors(name)
        if label_errors:
            raise invalid(
                name,
                [FieldError.invalid("metadata.name", name, m) for m in label_errors],
                group="",
                kind="Namespace",
            )
        if self.store.namespace_state(name) is not None:
            raise ApiError.make(
                409,
                f"namespaces {go_quote(name)} already exists",
                "AlreadyExists",
                details={"name": name, "kind": "namespaces"},
            )
        self.store.create_namespace(name, self._now().format_seconds(), manager=call.manager)
        return Reply(201, self.store.namespace_object(name))


def _dns_label_errors(value: str) -> list[str]:
    import re

    fmt = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(fmt, value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{fmt}')"
        )
    return errors


def _validate_list_options(call: Call, *, watch: bool) -> None:
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


def _uid_precondition(call: Call, wanted: str, actual: str) -> ApiError:
    return conflict(
        call.name,
        f"StorageError: invalid object, Code: 4, Key: /registry/leases/{call.namespace}/"
        f"{call.name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in "
        f"precondition: {wanted}, UID in object meta: {actual}",
    )


def _patch_invalid(shown: str, error: str) -> ApiError:
    return invalid("", [FieldError.invalid("patch", shown, error)], group="", kind="", qualified="")


def _warning(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def _include(call: Call) -> str:
    """``includeObject`` for Table answers: ``Metadata`` (default), ``Object`` or ``None``."""
    return call.param("includeObject") or "Metadata"


class _EventWriter:
    """Writes watch events in the negotiated form (Lease, Table, PartialObjectMetadata)."""

    __slots__ = ("_first", "_form", "_include", "_now", "response")

    def __init__(
        self,
        response: web.StreamResponse,
        form: _Form,
        include: str,
        now: Callable[[], Instant],
    ) -> None:
        self.response = response
        self._form = form
        self._include = include
        self._now = now
        self._first = True

    async def send(self, event_type: str, obj: Mapping[str, Any]) -> None:
        body: Any
        if self._form.kind == "table":
            meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            body = _discovery.lease_table(
                [obj],
                meta,
                self._now(),
                self._form.api_version,
                include=self._include,
                headers=self._first,
            )
        elif self._form.kind == "partial":
            body = _partial(obj, self._form.api_version)
        else:
            body = _with_type_meta(obj)
        self._first = False
        await self.response.write(dumps({"type": event_type, "object": body}).encode())


def _bookmark(resource_version: int) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(resource_version)}
    obj = {"kind": "Lease", "apiVersion": API_VERSION, "metadata": meta, "spec": {}}
    return dumps({"type": "BOOKMARK", "object": obj}).encode()


def _yaml_to_json(data: bytes) -> bytes:
    """YAML bodies are converted to JSON first, as kube-apiserver does."""
    import yaml

    try:
        value = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise bad_request(f"error converting YAML to JSON: {exc}") from None
    return dumps(_jsonable(value)).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value
