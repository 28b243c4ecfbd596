"""The Lease endpoints: the writes (create, replace, patch, delete) on top of the reads.

Handlers take a ``Call`` (the parsed request) and return a ``Reply``, or raise ``ApiError``.
The order of checks follows kube-apiserver's (decode, name checks, namespace admission,
preconditions, resourceVersion, validation, storage), because which error a client sees when
several apply is part of the behaviour. Writes commit through ``Store.commit`` without awaiting
in between; the reads (get, list) are in :mod:`.lease_reads`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .calls import (
    API_VERSION,
    Call,
    Reply,
    lease_rv,
    object_resource_version,
    selection,
    strip_type_meta,
    with_type_meta,
)
from .fieldmanager import managed_fields_for_create, managed_fields_for_update
from .gojson import JsonSyntaxError, dumps, go_quote, parse
from .lease_reads import LeaseReads
from .patch import (
    JsonPatchError,
    PatchType,
    apply_patch,
    conversion_error,
    go_format,
    parse_patch,
    unsupported_media_type,
)
from .schema import DecodeFailure, decode, normalize
from .status import (
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
    namespace_not_found,
    not_found,
    success_status,
)
from .store import with_resource_version
from .validation import (
    decode_body,
    generate_name_base,
    kind_error,
    strict_outcome,
    type_meta,
    validate_create,
    validate_update,
)

__all__ = ["LeaseHandlers"]

logger = logging.getLogger(__name__)

_GATED_SPEC_FIELDS = ("strategy", "preferredHolder")
_JSON_BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FIELD_VALIDATION = ("", "Ignore", "Strict", "Warn")


# ---------------------------------------------------------------------------------------------
# Small helpers


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


def _drop_gated(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _GATED_SPEC_FIELDS}


# ---------------------------------------------------------------------------------------------
# The handlers


class LeaseHandlers(LeaseReads):
    """The Lease endpoints over one store: the reads of :class:`LeaseReads`, and the writes."""

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
        LeaseHandlers._check_namespace_match(lease, call)

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

    # -- CREATE -----------------------------------------------------------------------------

    async def create(self, call: Call) -> Reply:
        """POST a Lease."""
        lease, warnings = await self._read_lease_body(call, "CreateOptions")
        self._check_namespace_match(lease, call)
        name = (lease.get("metadata") or {}).get("name", "")
        self._check_namespace_for_create(call.namespace, name)
        stored = self._prepare_create(lease, call)
        if object_resource_version(lease) != 0:
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
        now = self.now()
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
            object_resource_version(lease)
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
        rv = object_resource_version(new)
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
        if rv != lease_rv(existing):
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
        now = self.now().format_seconds()
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
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer is gone: the update deletes the object in the same step (the
            # DELETED event carries the state before this update).
            self.store.commit(
                call.namespace, meta["name"], None, user=call.user, verb=call.info.verb
            )
            return self._reply_object(
                call, with_resource_version(stored, self.store.resource_version)
            )
        committed = self.store.commit(
            call.namespace, meta["name"], stored, user=call.user, verb=call.info.verb
        )
        assert committed is not None
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
        document = with_type_meta(existing)
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
        finalizers = _finalizers_for_policy(
            list(meta.get("finalizers") or []), options.get("propagationPolicy")
        )
        dry_run = bool(options.get("dryRun"))
        if finalizers:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return self._reply_object(call, existing)
            if dry_run and meta.get("deletionTimestamp"):
                return self._reply_object(call, existing)
            new_meta = dict(meta)
            new_meta.setdefault("deletionTimestamp", self.now().format_seconds())
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
        selected = selection(call)
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
            "items": [strip_type_meta(i) for i in items],
        }
        return Reply(200, body)

    # -- namespaces -------------------------------------------------------------------------


def _finalizers_for_policy(finalizers: list[str], policy: str | None) -> list[str]:
    """The finalizers a DELETE leaves: ``Orphan`` and ``Foreground`` add their own (and drop
    the other's), ``Background`` drops both, no policy keeps what is there."""
    if policy is None:
        return finalizers
    wanted = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy)
    kept = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
    return [*kept, wanted] if wanted else kept


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
