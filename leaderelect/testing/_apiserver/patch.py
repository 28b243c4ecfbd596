"""The three PATCH flavours kube-apiserver accepts for a Lease, with its error answers.

- JSON merge patch (RFC 7386, ``application/merge-patch+json``);
- JSON patch (RFC 6902, ``application/json-patch+json``);
- strategic merge patch (``application/strategic-merge-patch+json``): a merge patch that also
  understands ``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/…`` and
  ``$setElementOrder/…``, merges ``metadata.finalizers`` as a set and
  ``metadata.ownerReferences`` by ``uid`` (the Lease's only list merge keys).

Documents are trees of plain values (``dict``/``list``/``str``/``bool``/``None`` with numbers as
:class:`~.gojson.GoNumber` or ``int``). Objects a patch touches come back with sorted keys, as
Go's map-based patch libraries re-encode them, so the document quoted in a 422
``patch: Invalid value: "…"`` reads as the real server's.
"""

from __future__ import annotations

import copy
import enum
from typing import Any

from .gojson import GoNumber, JsonSyntaxError, parse
from .status import ApiError, bad_request

__all__ = ["JsonPatchError", "PatchType", "apply_patch", "parse_patch"]


class PatchType(enum.Enum):
    """A PATCH ``Content-Type`` kube-apiserver accepts."""

    MERGE = "application/merge-patch+json"
    JSON = "application/json-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY_YAML = "application/apply-patch+yaml"
    APPLY_CBOR = "application/apply-patch+cbor"

    @classmethod
    def from_content_type(cls, content_type: str) -> PatchType | None:
        """The patch type of a ``Content-Type`` header (parameters ignored), if any."""
        media = content_type.split(";", 1)[0].strip().lower()
        for member in cls:
            if member.value == media:
                return member
        return None


class JsonPatchError(Exception):
    """A JSON patch operation failed (kube-apiserver answers a bare 422)."""


def unsupported_media_type() -> ApiError:
    """415 for a PATCH whose ``Content-Type`` is not a patch type."""
    return ApiError.make(415, "415: Unsupported Media Type", "UnsupportedMediaType", details={})


def parse_patch(patch_type: PatchType, data: bytes) -> Any:
    """Parse and shape-check a patch body.

    Raises:
        ApiError: 400 with kube-apiserver's ``error decoding patch`` messages.
    """
    try:
        value = parse(data)
    except JsonSyntaxError as exc:
        if patch_type is PatchType.STRATEGIC:
            raise bad_request(str(exc)) from None
        raise bad_request(f"error decoding patch: {exc}") from None
    if patch_type is PatchType.JSON:
        if value is not None and not isinstance(value, list):
            raise bad_request(
                f"error decoding patch: json: cannot unmarshal {_kind(value)} into Go value of "
                "type []handlers.jsonPatchOp"
            )
        return value or []
    if value is None:
        if patch_type is PatchType.MERGE:
            raise bad_request("Invalid JSON Patch")
        return {}
    if not isinstance(value, dict):
        if patch_type is PatchType.STRATEGIC:
            raise bad_request(
                f"json: cannot unmarshal {_kind(value)} into Go value of type "
                "map[string]interface {}"
            )
        raise bad_request(
            f"error decoding patch: json: cannot unmarshal {_kind(value)} into Go value of type "
            "map[string]interface {}"
        )
    return value


def _kind(value: object) -> str:
    from .schema import json_kind

    return json_kind(value)


def apply_patch(patch_type: PatchType, document: dict[str, Any], patch: Any) -> Any:
    """Apply a parsed patch to ``document`` (not modified); return the patched document.

    Raises:
        JsonPatchError: a JSON patch operation failed.
    """
    if patch_type is PatchType.JSON:
        return _json_patch(document, patch)
    if patch_type is PatchType.STRATEGIC:
        return _strategic(document, patch, ())
    return _merge(document, patch)


# ---------------------------------------------------------------------------------------------
# RFC 7386


def _sorted(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in sorted(obj)}


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return _sorted({k: _prune_nulls(v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return _prune_nulls(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = _prune_nulls(value)
    return _sorted(result)


# ---------------------------------------------------------------------------------------------
# RFC 6902


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split(path: object) -> list[str]:
    if not isinstance(path, str):
        raise JsonPatchError("path must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"invalid path {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise JsonPatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) + (1 if allow_end else 0)
    if index >= limit:
        raise JsonPatchError("array index out of bounds")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise JsonPatchError("missing path")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise JsonPatchError("missing path")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError("missing path")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise JsonPatchError("missing path")


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError("missing path")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise JsonPatchError("missing path")


def _add(doc: Any, tokens: list[str], value: Any, *, replace: bool) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, allow_end=False)] = value
        else:
            parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise JsonPatchError("missing path")
    return doc


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (GoNumber, int, float)) and isinstance(b, (GoNumber, int, float)):
        return _num(a) == _num(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _num(value: GoNumber | int | float) -> float:
    return value.as_float() if isinstance(value, GoNumber) else float(value)


def _sort_along(node: Any, tokens: list[str]) -> Any:
    """``node`` with every object on the way down ``tokens`` re-keyed in sorted order."""
    if isinstance(node, dict):
        node = _sorted(node)
        if tokens and tokens[0] in node:
            node[tokens[0]] = _sort_along(node[tokens[0]], tokens[1:])
    elif isinstance(node, list) and tokens and tokens[0].isdigit():
        index = int(tokens[0])
        if index < len(node):
            node = list(node)
            node[index] = _sort_along(node[index], tokens[1:])
    return node


def _json_patch(document: dict[str, Any], operations: list[Any]) -> Any:
    doc: Any = copy.deepcopy(document)
    touched: list[list[str]] = []
    for op in operations:
        if not isinstance(op, dict):
            raise JsonPatchError("operation is not an object")
        kind = op.get("op")
        tokens = _split(op.get("path"))
        touched.append(tokens[:-1])
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")), replace=False)
        elif kind == "replace":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "remove":
            if not tokens:
                raise JsonPatchError("cannot remove the root")
            _remove(doc, tokens)
        elif kind == "test":
            if not _equal(_get(doc, tokens), op.get("value")):
                raise JsonPatchError("testing value failed")
        elif kind in ("move", "copy"):
            source = _split(op.get("from"))
            touched.append(source[:-1])
            value = _get(doc, source)
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, tokens, copy.deepcopy(value), replace=False)
        else:
            raise JsonPatchError(f"unexpected kind: {kind}")
    for tokens in touched:
        doc = _sort_along(doc, tokens)
    return doc


# ---------------------------------------------------------------------------------------------
# Strategic merge patch

_SET_LISTS = frozenset({("metadata", "finalizers")})
_KEYED_LISTS = {("metadata", "ownerReferences"): "uid"}
_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


def _strategic(target: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(patch, dict):
        return _prune_nulls(patch)
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if k != _DIRECTIVE}
    if directive == "replace":
        return _strategic({}, body, path)
    result = dict(target) if isinstance(target, dict) else {}
    retain = body.pop(_RETAIN, None)
    deletions = {}
    orders = {}
    for key in list(body):
        if key.startswith(_DELETE_PRIMITIVE):
            deletions[key[len(_DELETE_PRIMITIVE) :]] = body.pop(key)
        elif key.startswith(_ORDER):
            orders[key[len(_ORDER) :]] = body.pop(key)
    for key, value in body.items():
        child = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _strategic(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and child in _SET_LISTS:
            current = result.get(key)
            kept = [v for v in current if v not in value] if isinstance(current, list) else []
            result[key] = list(value) + kept
        elif isinstance(value, list) and child in _KEYED_LISTS:
            result[key] = _merge_keyed(result.get(key), value, _KEYED_LISTS[child], child)
        else:
            result[key] = _prune_nulls(value)
    for key, removed in deletions.items():
        if isinstance(result.get(key), list) and isinstance(removed, list):
            result[key] = [v for v in result[key] if v not in removed]
    for key, order in orders.items():
        if isinstance(result.get(key), list) and isinstance(order, list):
            result[key] = _apply_order(result[key], order, _KEYED_LISTS.get((*path, key)))
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return _sorted(result)


def _merge_keyed(current: Any, items: list[Any], key: str, path: tuple[str, ...]) -> list[Any]:
    """Merge list items by ``key``: the patch's items first (merged with their originals),
    then the original items the patch does not name; ``$patch: delete`` removes one."""
    original = list(current) if isinstance(current, list) else []

    def ident(value: Any) -> Any:
        return value.get(key) if isinstance(value, dict) else value

    named = {ident(item) for item in items}
    merged = []
    for item in items:
        if not isinstance(item, dict):
            merged.append(item)
            continue
        if item.get(_DIRECTIVE) == "delete":
            continue
        base: Any = next((v for v in original if ident(v) == ident(item)), {})
        merged.append(_strategic(base, item, path))
    return merged + [v for v in original if ident(v) not in named]


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        if key is not None and isinstance(item, dict):
            return item.get(key)
        return item

    wanted = [ident(o) if isinstance(o, dict) or key is None else o for o in order]
    ranked = {repr(w): i for i, w in enumerate(wanted)}
    return sorted(items, key=lambda item: ranked.get(repr(ident(item)), len(ranked)))


# ---------------------------------------------------------------------------------------------
# How kube-apiserver words a strategic merge patch that yields a bad object


def go_format(value: Any) -> str:
    """Go's ``%v`` of a decoded JSON value (``map[k:v ...]`` with sorted keys)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, GoNumber):
        number = value.as_int()
        return str(number) if number is not None else _go_float(value.as_float())
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    if value == 0:
        return "0"
    from decimal import Decimal

    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(str(d) for d in digits)
    point = len(digits) + exponent
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def _go_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, GoNumber):
        return "int64" if value.as_int() is not None else "float64"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return "string"


def conversion_error(document: Any) -> str | None:
    """The first error converting a patched document into a Lease, as the unstructured
    converter words it (``cannot convert int64 to string``, ``unrecognized type: int32``)."""
    from .schema import LEASE

    return _convert_struct(document, LEASE) if isinstance(document, dict) else None


def _convert_struct(obj: dict[str, Any], struct: Any) -> str | None:
    from .schema import Kind

    for field in struct.fields:
        value = obj.get(field.name)
        if value is None:
            continue
        kind = field.type.kind
        error: str | None = None
        if kind is Kind.STRUCT:
            if isinstance(value, dict):
                error = _convert_struct(value, field.type.struct)
        elif kind is Kind.LIST:
            elem = field.type.elem
            for item in value if isinstance(value, list) else []:
                if elem.kind is Kind.STRUCT and isinstance(item, dict):
                    error = _convert_struct(item, elem.struct)
                elif elem.kind is Kind.STRING and item is not None and not isinstance(item, str):
                    error = f"cannot convert {_go_kind(item)} to string"
                if error:
                    break
        elif kind is Kind.STRING_MAP:
            for item in value.values() if isinstance(value, dict) else []:
                if item is not None and not isinstance(item, str):
                    error = f"cannot convert {_go_kind(item)} to string"
                    break
        else:
            error = _convert_scalar(value, field.type)
        if error:
            return error
    return None


def _convert_scalar(value: Any, gotype: Any) -> str | None:
    from .gotime import MICRO_LAYOUT, RFC3339_LAYOUT, GoTimeError, parse_go_time
    from .schema import Kind

    kind = gotype.kind
    if kind is Kind.STRING:
        return None if isinstance(value, str) else f"cannot convert {_go_kind(value)} to string"
    if kind in (Kind.INT32, Kind.INT64):
        name = "int32" if kind is Kind.INT32 else "int64"
        if isinstance(value, str):
            return f"unrecognized type: {name}"
        if _go_kind(value) == "int64":
            return None
        return f"cannot convert {_go_kind(value)} to {name}"
    if kind is Kind.BOOL:
        return None if isinstance(value, bool) else f"cannot convert {_go_kind(value)} to bool"
    if kind in (Kind.MICRO_TIME, Kind.TIME):
        if not isinstance(value, str):
            what = "number" if _go_kind(value) in ("int64", "float64") else _go_kind(value)
            return f"json: cannot unmarshal {what} into Go value of type string"
        layout = MICRO_LAYOUT if kind is Kind.MICRO_TIME else RFC3339_LAYOUT
        try:
            parse_go_time(value, layout)
        except GoTimeError as exc:
            return str(exc)
    return None
