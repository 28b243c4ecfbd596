"""The Events API, as far as an elector and ``kubectl get events`` use it.

``events.k8s.io/v1`` events: create (decoded, validated and answered as kube-apiserver v1.36.2
does: ``ValidateEventCreate``'s messages, 409 ``AlreadyExists``, 404 for a missing namespace),
get and list (one namespace, or all). The core ``v1`` events API serves the same objects for get
and list, converted as kube-apiserver converts them (``regarding`` → ``involvedObject``,
``note`` → ``message``, ``reportingController`` → ``reportingComponent``, the ``deprecated*``
fields → ``source``, ``firstTimestamp``, ``lastTimestamp`` and ``count``).

Events are kept apart from the Leases (no watch, no write history), but take their
resourceVersion from the same cluster-wide counter, as in etcd. Not served: updates, patches,
deletes, watches, selectors, and creates through the core API.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from .calls import Call, Reply
from .gojson import JsonSyntaxError, go_quote, parse
from .schema import (
    INT32,
    MICRO_TIME,
    OBJECT_META,
    STRING,
    TIME,
    UID,
    DecodeFailure,
    Field,
    GoType,
    Kind,
    Struct,
    decode,
)
from .status import (
    ApiError,
    FieldError,
    bad_request,
    invalid,
    method_not_allowed,
    namespace_not_found,
)
from .store import Store
from .validation import dns_subdomain_errors, generate_name_base, qualified_name_errors

__all__ = ["EVENTS_GROUP", "EventHandlers"]

EVENTS_GROUP = "events.k8s.io"
_EVENTS_VERSION = f"{EVENTS_GROUP}/v1"
_RESOURCE = "events"
_LIMIT = 128  # reportingInstance, action, reason
_NOTE_LIMIT = 1024

_OBJECT_REFERENCE = Struct(
    "ObjectReference",
    (
        Field("kind", STRING),
        Field("namespace", STRING),
        Field("name", STRING),
        Field("uid", UID),
        Field("apiVersion", STRING),
        Field("resourceVersion", STRING),
        Field("fieldPath", STRING),
    ),
)
_REFERENCE = GoType(Kind.STRUCT, "v1.ObjectReference", struct=_OBJECT_REFERENCE)
_SERIES = Struct("EventSeries", (Field("count", INT32), Field("lastObservedTime", MICRO_TIME)))
_SOURCE = Struct("EventSource", (Field("component", STRING), Field("host", STRING)))
_EVENT = Struct(
    "Event",
    (
        Field("kind", STRING),
        Field("apiVersion", STRING),
        Field("metadata", GoType(Kind.STRUCT, "v1.ObjectMeta", struct=OBJECT_META)),
        Field("eventTime", MICRO_TIME),
        Field("series", GoType(Kind.STRUCT, "v1.EventSeries", struct=_SERIES), pointer=True),
        Field("reportingController", STRING),
        Field("reportingInstance", STRING),
        Field("action", STRING),
        Field("reason", STRING),
        Field("regarding", _REFERENCE),
        Field("related", _REFERENCE, pointer=True),
        Field("note", STRING),
        Field("type", STRING),
        Field("deprecatedSource", GoType(Kind.STRUCT, "v1.EventSource", struct=_SOURCE)),
        Field("deprecatedFirstTimestamp", TIME),
        Field("deprecatedLastTimestamp", TIME),
        Field("deprecatedCount", INT32),
    ),
)
_EVENT_TYPE = GoType(Kind.STRUCT, "v1.Event", struct=_EVENT)

_META_ORDER = ("name", "generateName", "namespace", "uid", "resourceVersion", "creationTimestamp")


def _reference(value: object) -> dict[str, str]:
    ref = value if isinstance(value, Mapping) else {}
    return {f.name: ref[f.name] for f in _OBJECT_REFERENCE.fields if ref.get(f.name)}


class EventHandlers:
    """The Events endpoints over their own objects; resourceVersions come from ``store``."""

    def __init__(self, store: Store, *, now: Any) -> None:
        self._store = store
        self._now = now  # () -> Instant
        self._events: dict[tuple[str, str], dict[str, Any]] = {}

    # -- reading, for tests ---------------------------------------------------------------

    def items(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored events (``events.k8s.io/v1`` form), in key order."""
        keys = sorted(k for k in self._events if namespace is None or k[0] == namespace)
        return [self._render(self._events[k], core=False) for k in keys]

    # -- routing --------------------------------------------------------------------------

    async def serve(self, call: Call, *, core: bool, named: bool) -> Reply:
        """Serve ``/apis/events.k8s.io/v1/...events`` (``core=False``) or ``/api/v1/...events``."""
        method = call.request.method
        if named and method == "GET":
            return self._get(call, core=core)
        if not named and method == "GET":
            return self._list(call, core=core)
        if not named and method == "POST" and call.namespace and not core:
            return await self._create(call)
        raise method_not_allowed()

    # -- reads ----------------------------------------------------------------------------

    def _get(self, call: Call, *, core: bool) -> Reply:
        stored = self._events.get((call.namespace, call.name))
        if stored is None:
            raise _not_found(call.name, core=core)
        return Reply(200, self._render(stored, core=core))

    def _list(self, call: Call, *, core: bool) -> Reply:
        items = [
            {k: v for k, v in item.items() if k not in ("kind", "apiVersion")}
            for item in (
                self._render(self._events[key], core=core)
                for key in sorted(self._events)
                if not call.namespace or key[0] == call.namespace
            )
        ]
        body = {
            "kind": "EventList",
            "apiVersion": "v1" if core else _EVENTS_VERSION,
            "metadata": {"resourceVersion": str(self._store.resource_version)},
            "items": items,
        }
        return Reply(200, body)

    # -- create ---------------------------------------------------------------------------

    async def _create(self, call: Call) -> Reply:
        data = await call.request.read()
        try:
            value = parse(data)
        except JsonSyntaxError as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
        try:
            event = decode(value, _EVENT_TYPE).value
        except DecodeFailure as exc:
            raise bad_request(
                f'Event in version "v1" cannot be handled as a Event: {exc}'
            ) from None
        meta = dict(event.get("metadata") or {})
        if meta.get("namespace") and meta["namespace"] != call.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = call.namespace
        if self._store.namespace_state(call.namespace) is None:
            raise namespace_not_found(call.namespace)
        generated = False
        if meta.get("generateName") and not meta.get("name"):
            meta["name"] = generate_name_base(meta["generateName"]) + uuid.uuid4().hex[:5]
            generated = True
        name = str(meta.get("name") or "")
        event["metadata"] = meta
        errors = _meta_errors(meta, generated)
        if errors:
            raise invalid(name, errors, group="", kind="Event")
        errors = _event_errors(event, call.namespace)
        if errors:
            raise invalid(name, errors, group="", kind="Event")
        if (call.namespace, name) in self._events:
            raise _already_exists(name)
        now = self._now().format_seconds()
        stored = copy.deepcopy(event)
        stored["metadata"] = {
            **{k: v for k, v in meta.items() if k not in ("resourceVersion", "managedFields")},
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(self._store.next_resource_version()),
            "creationTimestamp": now,
            "managedFields": [_managed_fields(event, call.manager, now)],
        }
        self._events[(call.namespace, name)] = stored
        return Reply(201, self._render(stored, core=False))

    # -- rendering ------------------------------------------------------------------------

    def _render(self, event: Mapping[str, Any], *, core: bool) -> dict[str, Any]:
        meta = event["metadata"]
        ordered_meta = {k: meta[k] for k in _META_ORDER if meta.get(k)}
        ordered_meta.update({k: v for k, v in meta.items() if k not in _META_ORDER and v})
        source = _source(event.get("deprecatedSource"))
        first = event.get("deprecatedFirstTimestamp") or None
        last = event.get("deprecatedLastTimestamp") or None
        optional = {k: event[k] for k in ("series", "related") if event.get(k)}
        if core:
            out: dict[str, Any] = {
                "kind": "Event",
                "apiVersion": "v1",
                "metadata": ordered_meta,
                "involvedObject": _reference(event.get("regarding")),
            }
            out.update(_present(event, ("reason",)))
            if event.get("note"):
                out["message"] = event["note"]
            out.update({"source": source, "firstTimestamp": first, "lastTimestamp": last})
            if event.get("deprecatedCount"):
                out["count"] = event["deprecatedCount"]
            out.update(_present(event, ("type",)))
            out["eventTime"] = event.get("eventTime") or None
            if "series" in optional:
                out["series"] = optional["series"]
            out.update(_present(event, ("action",)))
            if "related" in optional:
                out["related"] = _reference(optional["related"])
            out["reportingComponent"] = event.get("reportingController") or ""
            out["reportingInstance"] = event.get("reportingInstance") or ""
            return copy.deepcopy(out)
        out = {"kind": "Event", "apiVersion": _EVENTS_VERSION, "metadata": ordered_meta}
        out["eventTime"] = event.get("eventTime") or None
        if "series" in optional:
            out["series"] = optional["series"]
        out.update(_present(event, ("reportingController", "reportingInstance", "action")))
        out.update(_present(event, ("reason",)))
        out["regarding"] = _reference(event.get("regarding"))
        if "related" in optional:
            out["related"] = _reference(optional["related"])
        out.update(_present(event, ("note", "type")))
        out["deprecatedSource"] = source
        out["deprecatedFirstTimestamp"] = first
        out["deprecatedLastTimestamp"] = last
        if event.get("deprecatedCount"):
            out["deprecatedCount"] = event["deprecatedCount"]
        return copy.deepcopy(out)


def _present(event: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: event[k] for k in keys if event.get(k)}


def _source(value: object) -> dict[str, str]:
    source = value if isinstance(value, Mapping) else {}
    return {k: source[k] for k in ("component", "host") if source.get(k)}


def _meta_errors(meta: Mapping[str, Any], generated: bool) -> list[FieldError]:
    name = str(meta.get("name") or "")
    if not name:
        return [FieldError.required("metadata.name", "name or generateName is required")]
    field, value = (
        ("metadata.generateName", meta["generateName"])
        if generated
        else (
            "metadata.name",
            name,
        )
    )
    return [FieldError.invalid(field, value, m) for m in dns_subdomain_errors(value)]


def _event_errors(event: Mapping[str, Any], namespace: str) -> list[FieldError]:
    """``ValidateEventCreate`` for ``events.k8s.io/v1`` (its legacy half, then its own);
    field paths are the internal type's, as the server prints them."""
    errors: list[FieldError] = []
    regarding = event.get("regarding") or {}
    event_time = event.get("eventTime")
    if not event_time:
        involved = regarding.get("namespace", "")
        if (not involved and namespace not in ("", "default")) or (
            involved and involved != namespace
        ):
            errors.append(
                FieldError.invalid(
                    "involvedObject.namespace", involved, "does not match event.namespace"
                )
            )
    else:
        if not regarding.get("namespace") and namespace not in ("default", "kube-system"):
            errors.append(
                FieldError.invalid("involvedObject.namespace", "", "does not match event.namespace")
            )
        controller = event.get("reportingController", "")
        if not controller:
            errors.append(FieldError.required("reportingController", ""))
        errors.extend(
            FieldError.invalid("reportingController", controller, m)
            for m in qualified_name_errors(controller)
        )
        for key, limit, message in (
            ("reportingInstance", _LIMIT, None),
            ("action", _LIMIT, None),
            ("reason", _LIMIT, None),
        ):
            text = event.get(key, "")
            if not text:
                errors.append(FieldError.required(key, message or ""))
            if len(text) > limit:
                errors.append(FieldError.invalid(key, "", f"can have at most {limit} characters"))
        if len(event.get("note", "")) > _NOTE_LIMIT:
            errors.append(
                FieldError.invalid("message", "", f"can have at most {_NOTE_LIMIT} characters")
            )
    if not event_time:
        errors.append(FieldError.required("eventTime", ""))
    kind = event.get("type", "")
    if kind not in ("Normal", "Warning"):
        errors.append(FieldError.invalid("type", "", f"has invalid value: {kind}"))
    if event.get("deprecatedFirstTimestamp"):
        errors.append(FieldError.invalid("firstTimestamp", "", "needs to be unset"))
    if event.get("deprecatedLastTimestamp"):
        errors.append(FieldError.invalid("lastTimestamp", "", "needs to be unset"))
    if event.get("deprecatedCount"):
        errors.append(FieldError.invalid("count", "", "needs to be unset"))
    if _source(event.get("deprecatedSource")):
        errors.append(FieldError.invalid("source", "", "needs to be unset"))
    return errors


def _managed_fields(event: Mapping[str, Any], manager: str, now: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        f"f:{f.name}": {}
        for f in sorted(_EVENT.fields, key=lambda f: f.name)
        if f.name not in ("kind", "apiVersion", "metadata") and event.get(f.name)
    }
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": _EVENTS_VERSION,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


def _details(name: str, *, core: bool) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if not core:
        details["group"] = EVENTS_GROUP
    details["kind"] = _RESOURCE
    return details


def _qualified(core: bool) -> str:
    return _RESOURCE if core else f"{_RESOURCE}.{EVENTS_GROUP}"


def _not_found(name: str, *, core: bool) -> ApiError:
    return ApiError.make(
        404,
        f"{_qualified(core)} {go_quote(name)} not found",
        "NotFound",
        details=_details(name, core=core),
    )


def _already_exists(name: str) -> ApiError:
    return ApiError.make(
        409,
        f"{_qualified(False)} {go_quote(name)} already exists",
        "AlreadyExists",
        details=_details(name, core=False),
    )
