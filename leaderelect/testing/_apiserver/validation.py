"""Request bodies to Leases, and Lease validation, with kube-apiserver's exact messages.

:func:`decode_body` turns the bytes of a POST/PUT into a Lease or a 400 ``Status`` worded as
kube-apiserver words it (Go's JSON syntax errors, ``couldn't get version/kind``, ``cannot be
handled as a Lease``, ``strict decoding error``). :func:`validate_create` and
:func:`validate_update` return ``field.Error`` lists in the order the real server builds them,
repeats included (an update runs the object-meta checks up to three times).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .gojson import JsonObject, JsonSyntaxError, JsonValue, go_quote, parse
from .schema import DecodeFailure, decode, json_kind
from .status import ApiError, FieldError, bad_request

__all__ = [
    "DecodedBody",
    "decode_body",
    "dns_subdomain_errors",
    "generate_name_base",
    "qualified_name_errors",
    "validate_create",
    "validate_spec",
    "validate_update",
]

_GROUP = "coordination.k8s.io"
_VERSION = "v1"
_KIND = "Lease"
_TYPEMETA_STRUCT = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)
_SCHEME = "pkg/api/legacyscheme/scheme.go:30"

# kinds the real server's scheme knows, which it cannot convert to a Lease
_META_KINDS = frozenset(
    {
        "Status",
        "DeleteOptions",
        "ListOptions",
        "GetOptions",
        "CreateOptions",
        "UpdateOptions",
        "PatchOptions",
        "WatchEvent",
    }
)
_KNOWN_KINDS: dict[tuple[str, str], frozenset[str]] = {
    (
        "",
        "v1",
    ): frozenset(
        {
            "Binding",
            "ComponentStatus",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "Namespace",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
            "List",
        }
    ),
    ("apps", "v1"): frozenset(
        {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ControllerRevision"}
    ),
    (_GROUP, "v1"): frozenset({"LeaseList"}),
    (_GROUP, "v1beta1"): frozenset({"LeaseCandidate", "LeaseCandidateList", "LeaseList"}),
    (_GROUP, "v1alpha2"): frozenset({"LeaseCandidate", "LeaseCandidateList"}),
}
_LEASE_VERSIONS = frozenset({"v1", "v1beta1"})


@dataclasses.dataclass(slots=True)
class DecodedBody:
    """A request body decoded into a Lease.

    Attributes:
        lease: the Lease as sent (zero values kept; see ``schema.normalize``).
        warnings: ``Warning`` header texts (unknown and duplicate fields under ``Warn``).
    """

    lease: dict[str, Any]
    warnings: list[str]


def summarize(data: bytes, limit: int = 30) -> str:
    """``summarizeData``: the body as text when it looks like an object, else hex."""
    if not data:
        return "<empty>"
    if data[:1] == b"{":
        if len(data) > limit:
            return data[:limit].decode("utf-8", errors="replace") + " ..."
        return data.decode("utf-8", errors="replace")
    if len(data) > limit:
        return data[:limit].hex() + " ..."
    return data.hex()


def _unrecognized(error: str, data: bytes) -> ApiError:
    return bad_request(
        f"the object provided is unrecognized (must be of type {_KIND}): "
        f"couldn't get version/kind; json parse error: {error} ({summarize(data)})"
    )


def _interpret(value: JsonValue, data: bytes) -> tuple[str, str, str]:
    """The body's group, version and kind, defaulted as kube-apiserver defaults them."""
    if value is not None and not isinstance(value, dict):
        raise _unrecognized(
            f"json: cannot unmarshal {json_kind(value)} into Go value of type {_TYPEMETA_STRUCT}",
            data,
        )
    for key, item in (value or {}).items():
        if key in ("apiVersion", "kind") and item is not None and not isinstance(item, str):
            raise _unrecognized(
                f"json: cannot unmarshal {json_kind(item)} into Go struct field .{key} of type "
                "string",
                data,
            )
    return type_meta(value or {})


def type_meta(value: Mapping[str, Any]) -> tuple[str, str, str]:
    """Group, version and kind of a decoded object (defaults: ``coordination.k8s.io/v1 Lease``)."""
    api_version = value.get("apiVersion")
    kind = value.get("kind")
    group, _, version = (api_version if isinstance(api_version, str) else "").rpartition("/")
    if not version and not group:
        group, version = _GROUP, _VERSION
    elif not version and group == _GROUP:
        version = _VERSION
    return group, version, (kind if isinstance(kind, str) else "") or _KIND


def kind_error(group: str, version: str, kind: str) -> str | None:
    """Why an object of this group/version/kind cannot be a Lease (None when it can)."""
    if kind == _KIND and group == _GROUP and version in _LEASE_VERSIONS:
        return None
    gv = f"{group}/{version}" if group else version
    if kind in _META_KINDS or kind in _KNOWN_KINDS.get((group, version), ()):
        package = version if group else "v1"
        return f"converting ({package}.{kind}) to (coordination.{_KIND}): unknown conversion"
    return f'no kind "{kind}" is registered for version "{gv}" in scheme "{_SCHEME}"'


def _not_handled(kind: str, version: str, error: str) -> ApiError:
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {_KIND}: {error}')


def decode_body(data: bytes, field_validation: str) -> DecodedBody:
    """Decode a POST/PUT body into a Lease.

    Args:
        data: the request body.
        field_validation: ``Strict``, ``Warn`` (or empty) or ``Ignore``.

    Raises:
        ApiError: 400 with kube-apiserver's message.
    """
    try:
        value = parse(data)
    except JsonSyntaxError as exc:
        raise _unrecognized(str(exc), data) from None
    group, version, kind = _interpret(value, data)
    problem = kind_error(group, version, kind)
    if problem is not None:
        raise _not_handled(kind, version, problem)
    try:
        decoded = decode(value)
    except DecodeFailure as exc:
        raise _not_handled(kind, version, str(exc)) from None
    if version != _VERSION:
        raise bad_request(
            f"the API version in the data ({group}/{version}) does not match the expected API "
            f"version ({_GROUP}/{_VERSION})"
        )
    return DecodedBody(decoded.value, strict_outcome(decoded.strict_errors, field_validation))


def strict_outcome(errors: Sequence[str], field_validation: str) -> list[str]:
    """Warnings for ``Warn``; nothing for ``Ignore``; a 400 for ``Strict``.

    Raises:
        ApiError: 400 ``strict decoding error`` under ``Strict``.
    """
    if not errors or field_validation == "Ignore":
        return []
    if field_validation == "Strict":
        raise _not_handled(_KIND, _VERSION, "strict decoding error: " + ", ".join(errors))
    return list(errors)


def is_json_object(value: object) -> bool:
    """True for a decoded JSON object."""
    return isinstance(value, (dict, JsonObject))


# ---------------------------------------------------------------------------------------------
# Names and labels (k8s.io/apimachinery/pkg/util/validation)

_DNS1123_SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_MAX_GENERATED_NAME_LENGTH = 58


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


def dns_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``."""
    errors = []
    if len(value) > 253:
        errors.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def _name_errors(value: str, prefix: bool) -> list[str]:
    """``ValidateLeaseName`` (``NameIsDNSSubdomain``); a generateName prefix may end in ``-``."""
    if prefix and value.endswith("-"):
        value = value[:-1] + "a"
    return dns_subdomain_errors(value)


def qualified_name_errors(value: str) -> list[str]:
    """``IsQualifiedName``: an optional DNS-subdomain prefix, ``/``, and a name part."""
    examples = ("MyName", "my.name", "123-abc")
    parts = value.split("/")
    errors: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend(f"prefix part {m}" for m in dns_subdomain_errors(prefix))
    else:
        return [
            "a valid label key "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, *examples)
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_len(63))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append(
            "name part " + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, *examples)
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """``IsValidLabelValue``."""
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errors


def generate_name_base(generate_name: str) -> str:
    """The prefix a generated name starts with (at most 58 characters)."""
    return generate_name[:_MAX_GENERATED_NAME_LENGTH]


# ---------------------------------------------------------------------------------------------
# Lease validation (pkg/apis/coordination/validation and apimachinery's ObjectMeta checks)

_ANNOTATIONS_LIMIT = 256 * 1024


def _labels(labels: Mapping[str, str]) -> list[FieldError]:
    errors = []
    for key, value in labels.items():
        errors += [
            FieldError.invalid("metadata.labels", key, m) for m in qualified_name_errors(key)
        ]
        errors += [
            FieldError.invalid("metadata.labels", value, m) for m in label_value_errors(value)
        ]
    return errors


def _annotations(annotations: Mapping[str, str]) -> list[FieldError]:
    errors = []
    for key in annotations:
        errors += [
            FieldError.invalid("metadata.annotations", key, m)
            for m in qualified_name_errors(key.lower())
        ]
    if sum(len(k) + len(v) for k, v in annotations.items()) > _ANNOTATIONS_LIMIT:
        errors.append(FieldError.too_long("metadata.annotations", _ANNOTATIONS_LIMIT))
    return errors


def _owner_references(refs: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    errors = []
    controllers = []
    for ref in refs:
        api_version = str(ref.get("apiVersion", ""))
        if not api_version.rpartition("/")[2]:
            errors.append(
                FieldError.invalid(
                    "metadata.ownerReferences.apiVersion", api_version, "version must not be empty"
                )
            )
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                errors.append(
                    FieldError.invalid(
                        f"metadata.ownerReferences.{key}",
                        str(ref.get(key, "")),
                        "must not be empty",
                    )
                )
        if ref.get("controller"):
            controllers.append(f"{ref.get('kind', '')}/{ref.get('name', '')}")
    if len(controllers) > 1:
        errors.append(
            FieldError.invalid(
                "metadata.ownerReferences",
                list(refs),
                'Only one reference can have Controller set to true. Found "true" in references '
                f"for {' and '.join(controllers)}",
            )
        )
    return errors


def _finalizers(finalizers: Sequence[str]) -> list[FieldError]:
    errors = []
    for finalizer in finalizers:
        errors += [
            FieldError.invalid("metadata.finalizers", finalizer, m)
            for m in qualified_name_errors(finalizer)
        ]
    return errors


def _path_segment_errors(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _object_meta(meta: Mapping[str, Any], *, dns_names: bool) -> list[FieldError]:
    """``ValidateObjectMetaAccessor`` (DNS names for the strategy, path segments otherwise)."""
    errors: list[FieldError] = []
    generate_name = meta.get("generateName", "")
    name = meta.get("name", "")
    if generate_name:
        messages = (
            _name_errors(generate_name, True) if dns_names else _path_segment_errors(generate_name)
        )
        errors += [FieldError.invalid("metadata.generateName", generate_name, m) for m in messages]
    if not name:
        errors.append(FieldError.required("metadata.name", "name or generateName is required"))
    else:
        messages = _name_errors(name, False) if dns_names else _path_segment_errors(name)
        errors += [FieldError.invalid("metadata.name", name, m) for m in messages]
    generation = meta.get("generation", 0)
    if generation < 0:
        errors.append(
            FieldError.invalid(
                "metadata.generation", generation, "must be greater than or equal to 0"
            )
        )
    errors += _labels(meta.get("labels") or {})
    errors += _annotations(meta.get("annotations") or {})
    errors += _owner_references(meta.get("ownerReferences") or [])
    errors += _finalizers(meta.get("finalizers") or [])
    return errors


def _object_meta_update(meta: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """``ValidateObjectMetaUpdate``."""
    errors: list[FieldError] = []
    if old.get("deletionTimestamp"):
        before = set(old.get("finalizers") or [])
        added = [f for f in meta.get("finalizers") or [] if f not in before]
        if added:
            shown = ", ".join(go_quote(f) for f in added)
            errors.append(
                FieldError.forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, found new "
                    f"finalizers []string{{{shown}}}",
                )
            )
    if meta.get("generation", 0) < old.get("generation", 0):
        errors.append(
            FieldError.invalid(
                "metadata.generation", meta.get("generation", 0), "must not be decremented"
            )
        )
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
        if meta.get(key) != old.get(key):
            errors.append(
                FieldError.invalid(f"metadata.{key}", meta.get(key), "field is immutable")
            )
    errors += _labels(meta.get("labels") or {})
    errors += _annotations(meta.get("annotations") or {})
    errors += _owner_references(meta.get("ownerReferences") or [])
    return errors


def validate_spec(spec: Mapping[str, Any]) -> list[FieldError]:
    """``ValidateLeaseSpec`` (coordinated leader election off: strategy fields already gone)."""
    errors = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errors.append(
            FieldError.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errors.append(
            FieldError.invalid(
                "spec.leaseTransitions", transitions, "must be greater than or equal to 0"
            )
        )
    return errors


def validate_create(lease: Mapping[str, Any]) -> list[FieldError]:
    """Errors of a Lease about to be created (``BeforeCreate``: strategy, then common checks)."""
    meta = lease.get("metadata") or {}
    errors = _object_meta(meta, dns_names=True) + validate_spec(lease.get("spec") or {})
    if errors:
        return errors
    return _object_meta(meta, dns_names=False)


def validate_update(lease: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """Errors of an update (``BeforeUpdate``: common checks, then the strategy's)."""
    meta = lease.get("metadata") or {}
    old_meta = old.get("metadata") or {}
    errors = _object_meta(meta, dns_names=False)
    errors += _object_meta_update(meta, old_meta)
    errors += _object_meta_update(meta, old_meta)
    errors += validate_spec(lease.get("spec") or {})
    return errors
