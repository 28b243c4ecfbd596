"""The documents kube-apiserver v1.36.2 serves about itself, limited to what this server has.

``/version``, discovery (legacy and aggregated), a small OpenAPI v3 document generated from the
Lease schema (enough for ``kubectl apply``), and the ``Table`` form of Leases that
``kubectl get`` asks for.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .gojson import dumps
from .gotime import RFC3339_LAYOUT, GoTimeError, Instant, parse_go_time
from .schema import LEASE, Field, GoType, Kind, Struct

__all__ = [
    "AGGREGATED_DISCOVERY",
    "VERSION_INFO",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "core_resource_list",
    "human_duration",
    "lease_table",
    "openapi_index",
    "openapi_lease_document",
]

GROUP = "coordination.k8s.io"
GROUP_VERSION = f"{GROUP}/v1"
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "36",
    "emulationMajor": "1",
    "emulationMinor": "36",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "35",
    "gitVersion": "v1.36.2",
    "gitCommit": "98b35193b2ac7a23a673325f5e9b830ecd5ba406",
    "gitTreeState": "clean",
    "buildDate": "2026-11-26T18:49:04Z",
    "goVersion": "go1.26.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_LEASE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_NAMESPACE_VERBS = ["create", "delete", "get", "list"]


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def core_resource_list() -> dict[str, Any]:
    """``GET /api/v1``: only namespaces are served here."""
    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": _NAMESPACE_VERBS,
                "shortNames": ["ns"],
            }
        ],
    }


def _group_version() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": "v1"}


def api_group() -> dict[str, Any]:
    """``GET /apis/coordination.k8s.io``."""
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [_group_version()],
        "preferredVersion": _group_version(),
    }


def api_group_list() -> dict[str, Any]:
    """``GET /apis``."""
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list() -> dict[str, Any]:
    """``GET /apis/coordination.k8s.io/v1``."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": "leases",
                "singularName": "lease",
                "namespaced": True,
                "kind": "Lease",
                "verbs": _LEASE_VERBS,
                "storageVersionHash": "gqkMMb/YqFM=",
            }
        ],
    }


def _discovered(
    resource: str, kind: str, scope: str, verbs: list[str], **extra: Any
) -> dict[str, Any]:
    """One resource of an ``APIGroupDiscoveryList``."""
    return {
        "resource": resource,
        "responseKind": {"group": "", "version": "", "kind": kind},
        "scope": scope,
        "singularResource": kind.lower(),
        "verbs": verbs,
        **extra,
    }


def _aggregated(group: str, resource: dict[str, Any]) -> dict[str, Any]:
    """An ``APIGroupDiscoveryList`` of one group (``""``: the core group) serving one v1
    resource."""
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": group} if group else {},
                "versions": [{"version": "v1", "resources": [resource], "freshness": "Current"}],
            }
        ],
    }


def aggregated_core() -> dict[str, Any]:
    """``GET /api`` as ``APIGroupDiscoveryList``."""
    return _aggregated(
        "", _discovered("namespaces", "Namespace", "Cluster", _NAMESPACE_VERBS, shortNames=["ns"])
    )


def aggregated_groups() -> dict[str, Any]:
    """``GET /apis`` as ``APIGroupDiscoveryList``."""
    return _aggregated(GROUP, _discovered("leases", "Lease", "Namespaced", _LEASE_VERBS))


# ---------------------------------------------------------------------------------------------
# Health checks (the names v1.36.2 lists with ?verbose)

_POST_START_HOOKS = (
    "start-apiserver-admission-initializer",
    "generic-apiserver-start-informers",
    "priority-and-fairness-config-consumer",
    "priority-and-fairness-filter",
    "storage-object-count-tracker-hook",
    "start-apiextensions-informers",
    "start-apiextensions-controllers",
    "crd-informer-synced",
    "start-system-namespaces-controller",
    "peer-endpoint-reconciler-controller",
    "start-cluster-authentication-info-controller",
    "start-kube-apiserver-identity-lease-controller",
    "start-kube-apiserver-identity-lease-garbage-collector",
    "storage-readiness",
    "start-legacy-token-tracking-controller",
    "start-service-ip-repair-controllers",
    "rbac/bootstrap-roles",
    "scheduling/bootstrap-system-priority-classes",
    "priority-and-fairness-config-producer",
    "bootstrap-controller",
    "start-kubernetes-service-cidr-controller",
    "start-kube-aggregator-informers",
    "apiservice-status-local-available-controller",
    "apiservice-status-remote-available-controller",
    "apiservice-registration-controller",
    "apiservice-wait-for-first-sync",
    "apiservice-discovery-controller",
    "kube-apiserver-autoregistration",
)
_TAIL_CHECKS = (
    "autoregister-completion",
    "poststarthook/apiservice-openapi-controller",
    "poststarthook/apiservice-openapiv3-controller",
)
_HOOK_CHECKS = tuple(f"poststarthook/{hook}" for hook in _POST_START_HOOKS)
HEALTH_CHECKS: dict[str, tuple[str, ...]] = {
    "readyz": ("ping", "log", "informer-sync", *_HOOK_CHECKS, *_TAIL_CHECKS, "shutdown"),
    "livez": ("ping", "log", "loopback-serving-certificate", "etcd", *_HOOK_CHECKS, *_TAIL_CHECKS),
}
HEALTH_CHECKS["healthz"] = HEALTH_CHECKS["livez"]


def health(path: str, verbose: bool) -> str | None:
    """The body of ``/healthz``, ``/livez``, ``/readyz`` or one of their checks (None: 404)."""
    endpoint, _, check = path.strip("/").partition("/")
    checks = HEALTH_CHECKS[endpoint]
    if check:
        return "ok" if check in checks else None
    if not verbose:
        return "ok"
    lines = [f"[+]{name} ok" for name in checks]
    return "\n".join([*lines, f"{endpoint} check passed", ""])


# ---------------------------------------------------------------------------------------------
# OpenAPI v3

_PREFIX = "io.k8s.apimachinery.pkg.apis.meta.v1."
_SCHEMA_NAMES = {
    "Lease": "io.k8s.api.coordination.v1.Lease",
    "LeaseSpec": "io.k8s.api.coordination.v1.LeaseSpec",
    "ObjectMeta": _PREFIX + "ObjectMeta",
    "OwnerReference": _PREFIX + "OwnerReference",
    "ManagedFieldsEntry": _PREFIX + "ManagedFieldsEntry",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _type_schema(gotype: GoType) -> dict[str, Any]:
    kind = gotype.kind
    if kind is Kind.STRING:
        return {"type": "string", "default": ""}
    if kind in (Kind.INT32, Kind.INT64):
        return {"type": "integer", "format": "int32" if kind is Kind.INT32 else "int64"}
    if kind is Kind.BOOL:
        return {"type": "boolean"}
    if kind is Kind.MICRO_TIME:
        return {"allOf": [_ref(_PREFIX + "MicroTime")]}
    if kind is Kind.TIME:
        return {"allOf": [_ref(_PREFIX + "Time")]}
    if kind is Kind.STRING_MAP:
        return {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    if kind is Kind.LIST:
        assert gotype.elem is not None
        item = _type_schema(gotype.elem)
        if gotype.elem.struct is not None:
            item = {"default": {}, "allOf": [_ref(_SCHEMA_NAMES[gotype.elem.struct.name])]}
        return {"type": "array", "items": item}
    if kind is Kind.STRUCT:
        assert gotype.struct is not None
        return {"default": {}, "allOf": [_ref(_SCHEMA_NAMES[gotype.struct.name])]}
    return {"allOf": [_ref(_PREFIX + "FieldsV1")]}


def _field_schema(struct: Struct, field: Field) -> dict[str, Any]:
    schema = _type_schema(field.type)
    if struct.name == "ObjectMeta" and field.name in ("finalizers",):
        schema["x-kubernetes-list-type"] = "set"
        schema["x-kubernetes-patch-strategy"] = "merge"
    if struct.name == "ObjectMeta" and field.name == "ownerReferences":
        schema["x-kubernetes-list-map-keys"] = ["uid"]
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-patch-merge-key"] = "uid"
        schema["x-kubernetes-patch-strategy"] = "merge"
    if field.type.kind is Kind.LIST and "x-kubernetes-list-type" not in schema:
        schema["x-kubernetes-list-type"] = "atomic"
    return schema


def _struct_schema(struct: Struct) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: _field_schema(struct, f) for f in struct.fields},
    }
    if struct.name == "OwnerReference":
        schema["required"] = ["apiVersion", "kind", "name", "uid"]
        schema["x-kubernetes-map-type"] = "atomic"
    if struct.name == "Lease":
        schema["x-kubernetes-group-version-kind"] = [
            {"group": GROUP, "kind": "Lease", "version": "v1"}
        ]
    return schema


def _structs(struct: Struct, seen: dict[str, Struct]) -> dict[str, Struct]:
    seen[struct.name] = struct
    for field in struct.fields:
        nested = field.type.struct or (field.type.elem.struct if field.type.elem else None)
        if nested is not None and nested.name not in seen:
            _structs(nested, seen)
    return seen


@functools.cache
def openapi_lease_document() -> bytes:
    """``GET /openapi/v3/apis/coordination.k8s.io/v1``: schemas for Lease and what it holds."""
    schemas: dict[str, Any] = {
        _SCHEMA_NAMES[name]: _struct_schema(struct)
        for name, struct in sorted(_structs(LEASE, {}).items())
    }
    schemas[_PREFIX + "MicroTime"] = {"type": "string", "format": "date-time"}
    schemas[_PREFIX + "Time"] = {"type": "string", "format": "date-time"}
    schemas[_PREFIX + "FieldsV1"] = {"type": "object"}
    schemas[_PREFIX + "Status"] = {"type": "object"}
    list_schema = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {
                "type": "array",
                "items": {"default": {}, "allOf": [_ref(_SCHEMA_NAMES["Lease"])]},
            },
            "kind": {"type": "string"},
            "metadata": {"default": {}, "allOf": [_ref(_PREFIX + "ListMeta")]},
        },
        "x-kubernetes-group-version-kind": [{"group": GROUP, "kind": "LeaseList", "version": "v1"}],
    }
    schemas["io.k8s.api.coordination.v1.LeaseList"] = list_schema
    schemas[_PREFIX + "ListMeta"] = {
        "type": "object",
        "properties": {
            "continue": {"type": "string"},
            "remainingItemCount": {"type": "integer", "format": "int64"},
            "resourceVersion": {"type": "string"},
            "selfLink": {"type": "string"},
        },
    }
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.36.2"},
        "paths": _openapi_paths(),
        "components": {"schemas": {k: schemas[k] for k in sorted(schemas)}},
    }
    return dumps(document).encode()


def _param(name: str, where: str = "query", *, required: bool = False) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": where}
    if required:
        param["required"] = True
    param["schema"] = {"type": "string", "uniqueItems": True}
    return param


_LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)


def _operation(action: str, operation_id: str, query: Sequence[str], kind: str) -> dict[str, Any]:
    schema = _ref(f"io.k8s.api.coordination.v1.{kind}")
    if action == "delete":
        schema = _ref(_PREFIX + "Status")
    return {
        "tags": ["coordination_v1"],
        "operationId": operation_id,
        "parameters": [_param(name) for name in query],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema}}}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": GROUP, "version": "v1", "kind": "Lease"},
    }


def _openapi_paths() -> dict[str, Any]:
    """Path items for the Lease endpoints (operations, their query parameters, their GVK)."""
    write = ("dryRun", "fieldManager", "fieldValidation")
    base = f"/apis/{GROUP_VERSION}"
    namespace = _param("namespace", "path", required=True)
    name = _param("name", "path", required=True)
    pretty = _param("pretty")
    item = {
        "get": _operation("get", "readCoordinationV1NamespacedLease", (), "Lease"),
        "put": _operation("put", "replaceCoordinationV1NamespacedLease", write, "Lease"),
        "delete": _operation(
            "delete",
            "deleteCoordinationV1NamespacedLease",
            ("dryRun", "gracePeriodSeconds", "propagationPolicy"),
            "Lease",
        ),
        "patch": _operation(
            "patch", "patchCoordinationV1NamespacedLease", (*write, "force"), "Lease"
        ),
        "parameters": [name, namespace, pretty],
    }
    collection = {
        "get": _operation("list", "listCoordinationV1NamespacedLease", _LIST_PARAMS, "LeaseList"),
        "post": _operation("post", "createCoordinationV1NamespacedLease", write, "Lease"),
        "delete": _operation(
            "deletecollection",
            "deleteCoordinationV1CollectionNamespacedLease",
            ("dryRun", "labelSelector", "fieldSelector", "propagationPolicy"),
            "Lease",
        ),
        "parameters": [namespace, pretty],
    }
    every = {
        "get": _operation(
            "list", "listCoordinationV1LeaseForAllNamespaces", _LIST_PARAMS, "LeaseList"
        ),
        "parameters": [pretty],
    }
    return {
        f"{base}/leases": every,
        f"{base}/namespaces/{{namespace}}/leases": collection,
        f"{base}/namespaces/{{namespace}}/leases/{{name}}": item,
    }


def openapi_index() -> dict[str, Any]:
    """``GET /openapi/v3``: the group-versions with documents and their content hashes."""
    digest = hashlib.sha512(openapi_lease_document()).hexdigest().upper()
    return {
        "paths": {
            f"apis/{GROUP_VERSION}": {
                "serverRelativeURL": f"/openapi/v3/apis/{GROUP_VERSION}?hash={digest}"
            }
        }
    }


# ---------------------------------------------------------------------------------------------
# Table


_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_HOLDER_DESCRIPTION = (
    "holderIdentity contains the identity of the holder of a current lease. If Coordinated "
    "Leader Election is used, the holder identity must be equal to the elected "
    "LeaseCandidate.metadata.name field."
)
_AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

COLUMN_DEFINITIONS = [
    {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": _NAME_DESCRIPTION,
        "priority": 0,
    },
    {
        "name": "Holder",
        "type": "string",
        "format": "",
        "description": _HOLDER_DESCRIPTION,
        "priority": 0,
    },
    {"name": "Age", "type": "string", "format": "", "description": _AGE_DESCRIPTION, "priority": 0},
]


# Go's ladder: (unit, letter, smaller unit, letter, shown with the smaller unit below, alone below)
_DURATION_LADDER = (
    (60, "m", 1, "s", 10 * 60, 180 * 60),
    (3600, "h", 60, "m", 8 * 3600, 48 * 3600),
    (86400, "d", 3600, "h", 8 * 86400, 2 * 365 * 86400),
    (365 * 86400, "y", 86400, "d", 8 * 365 * 86400, math.inf),
)


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration``: ``88s``, ``2m42s``, ``5h3m``, ``3d4h``..."""
    total = int(seconds)
    if total < -1:
        return "<invalid>"
    if total < 0:
        return "0s"
    if total < 120:
        return f"{total}s"
    for unit, letter, smaller, smaller_letter, with_smaller, alone in _DURATION_LADDER:
        if total < with_smaller:
            rest = (total // smaller) % (unit // smaller)
            return f"{total // unit}{letter}" + (f"{rest}{smaller_letter}" if rest else "")
        if total < alone:
            return f"{total // unit}{letter}"
    raise AssertionError("unreachable: the last step has no upper bound")


def _age(lease: Mapping[str, Any], now: Instant) -> str:
    created = (lease.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(created, str):
        return "<unknown>"
    try:
        then = parse_go_time(created, RFC3339_LAYOUT)
    except GoTimeError:
        return "<unknown>"
    return human_duration(now.seconds - then.seconds)


def _row_object(lease: Mapping[str, Any], include: str, api_version: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        rest = {k: v for k, v in lease.items() if k not in ("kind", "apiVersion")}
        return {"kind": "Lease", "apiVersion": GROUP_VERSION, **rest}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": lease["metadata"],
    }


def lease_table(
    leases: Sequence[Mapping[str, Any]],
    list_meta: Mapping[str, Any],
    now: Instant,
    api_version: str = "meta.k8s.io/v1",
    *,
    include: str = "Metadata",
    headers: bool = True,
) -> dict[str, Any]:
    """The ``Table`` of Leases ``kubectl get`` shows.

    Args:
        leases: the rows.
        list_meta: the Table's ``metadata`` (resourceVersion, continue...).
        now: the time ages are counted to.
        api_version: ``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1``.
        include: ``includeObject``: ``Metadata`` (PartialObjectMetadata, the default),
            ``Object`` (the Lease) or ``None``.
        headers: False sends ``columnDefinitions: null`` (watch events after the first).
    """
    rows = []
    for lease in leases:
        holder = (lease.get("spec") or {}).get("holderIdentity")
        rows.append(
            {
                "cells": [lease["metadata"].get("name", ""), holder or "", _age(lease, now)],
                "object": _row_object(lease, include, api_version),
            }
        )
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": dict(list_meta),
        "columnDefinitions": COLUMN_DEFINITIONS if headers else None,
        "rows": rows,
    }
