"""``metadata.managedFields`` for non-apply writes, as kube-apiserver v1.36 keeps them.

A field set is a set of paths; each path is a tuple of FieldsV1 keys (``f:spec``,
``f:holderIdentity``, ``v:"finalizer"``, ``k:{"uid":"..."}``). Maps and lists are members in their
own right (FieldsV1 writes them as ``"."``); structs are not. What was observed on the real
server, and is done here:

- a create gives the writer every field it set (no entry when it set none);
- an update (PUT or any patch) compares old and new: the writer gains what it added or changed,
  every other manager loses what changed or vanished, empty managers are dropped, and the
  writer's ``time`` moves only when it gained something;
- the base is the ``managedFields`` the request carried when they decode and are not empty,
  else the stored ones; a request carrying ``[]`` (or ``[{}]``) clears them;
- an object with no ``managedFields`` stays without them (nothing is tracked from then on);
- entries are sorted by operation, time, manager, apiVersion, subresource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .gojson import dumps
from .gotime import RFC3339_LAYOUT, GoTimeError, parse_go_time

__all__ = ["API_VERSION", "field_set", "managed_fields_for_create", "managed_fields_for_update"]

API_VERSION = "coordination.k8s.io/v1"

Path = tuple[str, ...]
FieldSet = set[Path]
ManagerKey = tuple[str, str, str, str]

# metadata members the field manager never tracks
_META_IGNORED = frozenset(
    {
        "name",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    }
)


def _compact(value: object) -> str:
    return dumps(value).rstrip("\n")


def field_values(obj: Mapping[str, Any]) -> dict[Path, object]:
    """Every tracked path of a Lease with its value (containers map to a marker)."""
    out: dict[Path, object] = {}
    meta = obj.get("metadata") or {}
    mpath: Path = ("f:metadata",)
    for key, value in meta.items():
        if key in _META_IGNORED:
            continue
        path = (*mpath, f"f:{key}")
        if key in ("labels", "annotations"):
            out[path] = _CONTAINER
            for k, v in value.items():
                entry = (*path, f"f:{k}")
                out[entry] = v
        elif key == "finalizers":
            out[path] = _CONTAINER
            for item in value:
                entry = (*path, f"v:{_compact(item)}")
                out[entry] = item
        elif key == "ownerReferences":
            out[path] = _CONTAINER
            for ref in value:
                entry = (*path, f"k:{_compact({'uid': ref.get('uid', '')})}")
                out[entry] = _compact(ref)
        else:
            out[path] = value
    for key, value in (obj.get("spec") or {}).items():
        out[("f:spec", f"f:{key}")] = value
    return out


_CONTAINER = object()


def field_set(obj: Mapping[str, Any]) -> FieldSet:
    """The paths a Lease sets."""
    return set(field_values(obj))


def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """FieldsV1 JSON for a set of paths (keys sorted, members marked with ``"."``)."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node["."] = {}
    return _render(tree)


def _render(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "." in node and len(node) > 1:
        out["."] = {}
    for key in sorted(k for k in node if k != "."):
        out[key] = _render(node[key])
    return out


def decode_fields(raw: object, prefix: Path = ()) -> FieldSet | None:
    """The paths of a FieldsV1 tree, or None when it is not one."""
    if not isinstance(raw, Mapping):
        return None
    paths: FieldSet = set()
    for key, child in raw.items():
        if key == ".":
            if prefix:
                paths.add(prefix)
            continue
        sub = decode_fields(child, (*prefix, key))
        if sub is None:
            return None
        if not child:
            paths.add((*prefix, key))
        paths |= sub
    return paths


class _Entry:
    __slots__ = ("fields", "key", "time")

    def __init__(self, key: ManagerKey, fields: FieldSet, time: str | None) -> None:
        self.key = key
        self.fields = fields
        self.time = time

    def to_json(self) -> dict[str, Any]:
        manager, operation, api_version, subresource = self.key
        out: dict[str, Any] = {}
        if manager:
            out["manager"] = manager
        out["operation"] = operation
        out["apiVersion"] = api_version or API_VERSION
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = encode_fields(self.fields)
        if subresource:
            out["subresource"] = subresource
        return out

    def sort_key(self) -> tuple[str, int, str, str, str]:
        manager, operation, api_version, subresource = self.key
        seconds = 0
        if self.time is not None:
            try:
                seconds = parse_go_time(self.time, RFC3339_LAYOUT).seconds
            except GoTimeError:
                seconds = 0
        return (operation, seconds, manager, api_version, subresource)


def _decode_entries(raw: object) -> list[_Entry] | None:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return None
    entries: list[_Entry] = []
    for item in raw:
        if not isinstance(item, Mapping):
            return None
        if item.get("fieldsType") != "FieldsV1" or item.get("operation") not in ("Apply", "Update"):
            return None
        fields = decode_fields(item.get("fieldsV1") or {})
        if fields is None:
            return None
        operation = str(item["operation"])
        api_version = "" if operation == "Apply" else str(item.get("apiVersion", ""))
        key = (
            str(item.get("manager", "")),
            operation,
            api_version,
            str(item.get("subresource", "")),
        )
        time = item.get("time")
        entries.append(_Entry(key, fields, time if isinstance(time, str) else None))
    return entries


def _encode(entries: Iterable[_Entry]) -> list[dict[str, Any]]:
    kept = [e for e in entries if e.fields]
    kept.sort(key=_Entry.sort_key)
    return [e.to_json() for e in kept]


def managed_fields_for_create(
    obj: Mapping[str, Any], manager: str, now: str
) -> list[dict[str, Any]]:
    """The ``managedFields`` of a newly created Lease (empty when it sets no field)."""
    return _encode([_Entry((manager, "Update", API_VERSION, ""), field_set(obj), now)])


def _is_reset(raw: object) -> bool:
    if not isinstance(raw, list):
        return False
    return all(isinstance(item, Mapping) and not item for item in raw)


def managed_fields_for_update(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    manager: str,
    now: str,
) -> list[dict[str, Any]]:
    """The ``managedFields`` after ``manager`` replaced ``old`` by ``new`` (a non-apply write).

    ``new`` is the object as the request produced it (its ``metadata.managedFields``, if any,
    are what the client sent, or the stored ones for a patch that did not touch them).
    """
    incoming = (new.get("metadata") or {}).get("managedFields")
    if _is_reset(incoming):
        return []
    base = _decode_entries(incoming) if incoming else None
    if not base:
        base = _decode_entries((old.get("metadata") or {}).get("managedFields") or []) or []
    if not base:
        return []
    old_values = field_values(old)
    new_values = field_values(new)
    added = {p for p in new_values if p not in old_values}
    removed = {p for p in old_values if p not in new_values}
    modified = {
        p
        for p, v in new_values.items()
        if p in old_values and v is not _CONTAINER and old_values[p] != v
    }
    taken = added | modified
    key: ManagerKey = (manager, "Update", API_VERSION, "")
    entries: dict[ManagerKey, _Entry] = {}
    for entry in base:
        if entry.key in entries:
            entries[entry.key].fields |= entry.fields
        else:
            entries[entry.key] = entry
    for entry in entries.values():
        entry.fields = entry.fields - taken - removed
    if taken:
        mine = entries.get(key)
        if mine is None:
            entries[key] = _Entry(key, set(taken), now)
        else:
            mine.fields |= taken
            mine.time = now
    return _encode(entries.values())
