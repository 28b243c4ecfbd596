"""The ``coordination.k8s.io/v1`` Lease type, described once and used to decode, order and trim.

The description mirrors the Go structs (field order, JSON names, pointer-ness, ``omitempty`` and
the Go type names that appear in decode errors). :func:`decode` walks a parsed JSON value the way
Go's ``encoding/json`` fork in kube-apiserver does: the first type mismatch is remembered and
decoding goes on, a bad timestamp (an ``UnmarshalJSON`` failure) stops at once, and unknown or
duplicate fields are collected for strict field validation. :func:`normalize` then gives the
object the shape kube-apiserver stores and returns.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from .gojson import GoNumber, JsonObject
from .gotime import MICRO_LAYOUT, RFC3339_LAYOUT, GoTimeError, parse_go_time

__all__ = [
    "LEASE",
    "LEASE_SPEC",
    "OBJECT_META",
    "DecodeFailure",
    "Decoded",
    "Struct",
    "decode",
    "normalize",
    "to_plain",
]


class Kind(enum.Enum):
    """What a Go field holds, as far as JSON decoding is concerned."""

    STRING = enum.auto()
    INT32 = enum.auto()
    INT64 = enum.auto()
    BOOL = enum.auto()
    MICRO_TIME = enum.auto()
    TIME = enum.auto()
    STRING_MAP = enum.auto()
    LIST = enum.auto()
    STRUCT = enum.auto()
    RAW = enum.auto()


@dataclasses.dataclass(frozen=True, slots=True)
class GoType:
    """A Go type: its kind, the name decode errors print, and its element or struct."""

    kind: Kind
    go_name: str
    elem: GoType | None = None
    struct: Struct | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """A struct field: JSON name, type, whether Go holds it by pointer, ``omitempty``."""

    name: str
    type: GoType
    pointer: bool = False
    omitempty: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Struct:
    """A Go struct: its type name (``LeaseSpec``) and its fields in declaration order."""

    name: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        """The field with JSON name ``name``, if the struct has one."""
        for f in self.fields:
            if f.name == name:
                return f
        return None


STRING = GoType(Kind.STRING, "string")
INT32 = GoType(Kind.INT32, "int32")
INT64 = GoType(Kind.INT64, "int64")
BOOL = GoType(Kind.BOOL, "bool")
MICRO_TIME = GoType(Kind.MICRO_TIME, "string")
TIME = GoType(Kind.TIME, "string")
STRING_MAP = GoType(Kind.STRING_MAP, "map[string]string", elem=STRING)
UID = GoType(Kind.STRING, "types.UID")

OWNER_REFERENCE = Struct(
    "OwnerReference",
    (
        Field("apiVersion", STRING, omitempty=False),
        Field("kind", STRING, omitempty=False),
        Field("name", STRING, omitempty=False),
        Field("uid", UID, omitempty=False),
        Field("controller", BOOL, pointer=True),
        Field("blockOwnerDeletion", BOOL, pointer=True),
    ),
)

MANAGED_FIELDS_ENTRY = Struct(
    "ManagedFieldsEntry",
    (
        Field("manager", STRING),
        Field("operation", GoType(Kind.STRING, "v1.ManagedFieldsOperationType")),
        Field("apiVersion", STRING),
        Field("time", TIME, pointer=True),
        Field("fieldsType", STRING),
        Field("fieldsV1", GoType(Kind.RAW, "v1.FieldsV1"), pointer=True),
        Field("subresource", STRING),
    ),
)

OBJECT_META = Struct(
    "ObjectMeta",
    (
        Field("name", STRING),
        Field("generateName", STRING),
        Field("namespace", STRING),
        Field("selfLink", STRING),
        Field("uid", UID),
        Field("resourceVersion", STRING),
        Field("generation", INT64),
        Field("creationTimestamp", TIME, omitempty=False),
        Field("deletionTimestamp", TIME, pointer=True),
        Field("deletionGracePeriodSeconds", INT64, pointer=True),
        Field("labels", STRING_MAP),
        Field("annotations", STRING_MAP),
        Field(
            "ownerReferences",
            GoType(
                Kind.LIST,
                "[]v1.OwnerReference",
                elem=GoType(Kind.STRUCT, "v1.OwnerReference", struct=OWNER_REFERENCE),
            ),
        ),
        Field("finalizers", GoType(Kind.LIST, "[]string", elem=STRING)),
        Field(
            "managedFields",
            GoType(
                Kind.LIST,
                "[]v1.ManagedFieldsEntry",
                elem=GoType(Kind.STRUCT, "v1.ManagedFieldsEntry", struct=MANAGED_FIELDS_ENTRY),
            ),
        ),
    ),
)

LEASE_SPEC = Struct(
    "LeaseSpec",
    (
        Field("holderIdentity", STRING, pointer=True),
        Field("leaseDurationSeconds", INT32, pointer=True),
        Field("acquireTime", MICRO_TIME, pointer=True),
        Field("renewTime", MICRO_TIME, pointer=True),
        Field("leaseTransitions", INT32, pointer=True),
        Field("strategy", GoType(Kind.STRING, "v1.CoordinatedLeaseStrategy"), pointer=True),
        Field("preferredHolder", STRING, pointer=True),
    ),
)

LEASE = Struct(
    "Lease",
    (
        Field("kind", STRING),
        Field("apiVersion", STRING),
        Field(
            "metadata",
            GoType(Kind.STRUCT, "v1.ObjectMeta", struct=OBJECT_META),
            omitempty=False,
        ),
        Field("spec", GoType(Kind.STRUCT, "v1.LeaseSpec", struct=LEASE_SPEC), omitempty=False),
    ),
)

LEASE_TYPE = GoType(Kind.STRUCT, "v1.Lease", struct=LEASE)

_INT_RANGE = {Kind.INT32: (-(2**31), 2**31 - 1), Kind.INT64: (-(2**63), 2**63 - 1)}


class DecodeFailure(Exception):
    """Decoding stopped: Go's error text (a type mismatch or a timestamp parse error)."""


@dataclasses.dataclass(slots=True)
class Decoded:
    """The result of :func:`decode`.

    Attributes:
        value: the object as decoded (zero values and empty containers kept, as sent).
        strict_errors: ``unknown field "spec.x"`` / ``duplicate field "..."`` in document order.
    """

    value: dict[str, Any]
    strict_errors: list[str]


def json_kind(value: object) -> str:
    """How Go's ``UnmarshalTypeError`` names a JSON value's kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (GoNumber, int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


class _Decoder:
    __slots__ = ("saved", "strict")

    def __init__(self) -> None:
        self.saved: str | None = None
        self.strict: list[str] = []

    def mismatch(self, value: object, gotype: GoType, struct: str | None, path: str) -> None:
        if self.saved is not None:
            return
        what = json_kind(value)
        if gotype.kind in _INT_RANGE and what == "number":
            what = f"number {_literal(value)}"
        self.saved = _type_error(what, gotype.go_name, struct, path)

    def struct(self, obj: Mapping[str, Any], struct: Struct, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        duplicates = obj.duplicates if isinstance(obj, JsonObject) else ()
        for key, item in obj.items():
            field = struct.field(key)
            fpath = f"{path}.{key}" if path else key
            if field is None:
                self.strict.append(f'unknown field "{fpath}"')
                continue
            if key in duplicates:
                self.strict.append(f'duplicate field "{fpath}"')
            if item is None:
                out.pop(key, None)
                continue
            decoded = self.value(item, field.type, struct.name, fpath)
            if decoded is not _MISSING:
                out[key] = decoded
        return out

    def value(self, item: Any, gotype: GoType, struct: str, path: str) -> Any:
        kind = gotype.kind
        if kind is Kind.STRING:
            if isinstance(item, str):
                return item
        elif kind in _INT_RANGE:
            number = _as_int(item)
            low, high = _INT_RANGE[kind]
            if number is not None and low <= number <= high:
                return number
        elif kind is Kind.BOOL:
            if isinstance(item, bool):
                return item
        elif kind in (Kind.MICRO_TIME, Kind.TIME):
            if not isinstance(item, str):
                raise DecodeFailure(_type_error(json_kind(item), "string", struct, path))
            layout = MICRO_LAYOUT if kind is Kind.MICRO_TIME else RFC3339_LAYOUT
            try:
                instant = parse_go_time(item, layout)
            except GoTimeError as exc:
                raise DecodeFailure(str(exc)) from None
            if instant.is_zero:
                return None
            return instant.format_micro() if kind is Kind.MICRO_TIME else instant.format_seconds()
        elif kind is Kind.STRING_MAP:
            if isinstance(item, dict):
                result: dict[str, str] = {}
                duplicates = item.duplicates if isinstance(item, JsonObject) else ()
                for key, val in item.items():
                    if key in duplicates:
                        self.strict.append(f'duplicate field "{path}.{key}"')
                    if val is None:
                        result[key] = ""
                    elif isinstance(val, str):
                        result[key] = val
                    else:
                        self.mismatch(val, STRING, struct, path)
                return result
        elif kind is Kind.LIST:
            if isinstance(item, list):
                elem = gotype.elem
                assert elem is not None
                items = []
                for element in item:
                    if element is None:
                        items.append("" if elem.kind is Kind.STRING else {})
                        continue
                    decoded = self.value(element, elem, struct, path)
                    if decoded is not _MISSING:
                        items.append(decoded)
                return items
        elif kind is Kind.STRUCT:
            assert gotype.struct is not None
            if isinstance(item, dict):
                return self.struct(item, gotype.struct, path)
        else:  # RAW
            return to_plain(item)
        self.mismatch(item, gotype, struct, path)
        return _MISSING


_MISSING: Any = object()


def _literal(value: object) -> str:
    if isinstance(value, GoNumber):
        return value.literal
    return str(value)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, GoNumber):
        return value.as_int()
    if isinstance(value, int):
        return value
    return None


def _type_error(what: str, go_name: str, struct: str | None, path: str) -> str:
    if struct is None:
        return f"json: cannot unmarshal {what} into Go value of type {go_name}"
    return f"json: cannot unmarshal {what} into Go struct field {struct}.{path} of type {go_name}"


def decode(value: object, gotype: GoType = LEASE_TYPE) -> Decoded:
    """Decode a parsed JSON value into a Lease (or another ``gotype`` struct), as
    kube-apiserver's strict JSON decoder does.

    Raises:
        DecodeFailure: on the first type mismatch or timestamp error (Go's message).
    """
    decoder = _Decoder()
    assert gotype.struct is not None
    if value is None:
        obj: dict[str, Any] = {}
    elif isinstance(value, dict):
        obj = decoder.struct(value, gotype.struct, "")
    else:
        raise DecodeFailure(_type_error(json_kind(value), gotype.go_name, None, ""))
    if decoder.saved is not None:
        raise DecodeFailure(decoder.saved)
    return Decoded(obj, decoder.strict)


def _is_zero(value: object) -> bool:
    return value in ("", 0, False) or value == {} or value == []


def normalize(obj: Mapping[str, Any], struct: Struct = LEASE) -> dict[str, Any]:
    """The object as kube-apiserver stores and returns it.

    Fields come in Go's declaration order; ``omitempty`` zero values are dropped (pointers are
    kept even when they point at a zero value); map keys are sorted; ``metadata`` and ``spec``
    are always present; an unset ``creationTimestamp`` is left out (v1.36 omits zero times).
    """
    out: dict[str, Any] = {}
    for field in struct.fields:
        present = field.name in obj
        value = obj.get(field.name)
        kind = field.type.kind
        if kind is Kind.STRUCT and not field.pointer:
            assert field.type.struct is not None
            out[field.name] = normalize(value or {}, field.type.struct)
            continue
        if field.name == "creationTimestamp":
            if value is not None:
                out[field.name] = value
            continue
        if not field.omitempty:
            out[field.name] = value if present else ""
            continue
        if not present or (not field.pointer and _is_zero(value)):
            continue
        if kind is Kind.STRING_MAP and isinstance(value, Mapping):
            value = {k: value[k] for k in sorted(value)}
        elif kind is Kind.LIST and isinstance(value, list) and field.type.elem is not None:
            elem_struct = field.type.elem.struct
            if elem_struct is not None:
                value = [normalize(item, elem_struct) for item in value]
        out[field.name] = value
    return out


def to_plain(value: object) -> Any:
    """A parsed JSON value with numbers as ``int``/``float`` and objects as plain dicts."""
    if isinstance(value, GoNumber):
        number = value.as_int()
        return number if number is not None else value.as_float()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value
