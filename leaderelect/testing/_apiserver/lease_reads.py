"""The Lease reads (get, list with its continue tokens), and what every Lease answer shares.

A read never awaits between looking at the store and answering. The answer's form (Lease,
``Table``, ``PartialObjectMetadata``) is negotiated from ``Accept``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import string
from collections.abc import Callable, Mapping
from typing import Any

from . import discovery
from .calls import (
    API_VERSION,
    Call,
    Reply,
    Settings,
    await_resource_version,
    include_object,
    int_param,
    negotiate,
    partial,
    query_resource_version,
    selection,
    strip_type_meta,
    validate_list_options,
    with_type_meta,
)
from .gojson import GoNumber, JsonSyntaxError, dumps, parse
from .gotime import Instant
from .status import ApiError, bad_request, not_found
from .store import Expired, Store

__all__ = ["LeaseReads"]


def _expired(message: str) -> ApiError:
    return ApiError.make(410, message, "Expired")


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
    number = rv.as_int() if isinstance(rv, GoNumber) else None
    if not isinstance(start, str) or not start:
        raise bad("encoded start key empty")
    if number is None or number <= 0:
        raise bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    return number, start


# ---------------------------------------------------------------------------------------------
# The reads


class LeaseReads:
    """The Lease reads (get, list) over one :class:`~leaderelect.testing._apiserver.store.Store`;
    :class:`~leaderelect.testing._apiserver.leases.LeaseHandlers` adds the writes."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        wall_clock: Callable[[], datetime.datetime],
    ) -> None:
        self.store = store
        self.settings = settings
        self._wall_clock = wall_clock

    def now(self) -> Instant:
        """The wall-clock time, as an :class:`Instant`."""
        return Instant.from_datetime(self._wall_clock())

    def _reply_object(self, call: Call, lease: Mapping[str, Any], status: int = 200) -> Reply:
        form = negotiate(call)
        if form.kind == "table":
            meta = {"resourceVersion": lease["metadata"]["resourceVersion"]}
            body: Any = discovery.lease_table(
                [lease], meta, self.now(), form.api_version, include=include_object(call)
            )
        elif form.kind == "partial":
            body = partial(lease, form.api_version)
        else:
            body = with_type_meta(lease)
        return Reply(status, body)

    # -- GET --------------------------------------------------------------------------------

    async def get(self, call: Call) -> Reply:
        """GET one Lease."""
        wanted = query_resource_version(call)
        if wanted:
            await await_resource_version(self.store, self.settings, wanted)
        lease = self.store.get(call.namespace, call.name)
        if lease is None:
            raise not_found(call.name)
        return self._reply_object(call, lease)

    # -- LIST -------------------------------------------------------------------------------

    async def list(self, call: Call) -> Reply:
        """LIST Leases (a namespace, or all namespaces)."""
        validate_list_options(call, watch=False)
        try:
            wanted = query_resource_version(call)
        except ApiError as exc:
            raise bad_request(f"invalid resource version: {exc}") from None
        match = call.param("resourceVersionMatch")
        limit = int_param(call, "limit")
        selected = selection(call)
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
            await await_resource_version(self.store, self.settings, wanted)
            try:
                items = self.store.items_at(wanted, namespace)
            except Expired:
                raise _expired("The resourceVersion for the provided list is too old.") from None
            list_rv = wanted
        else:
            if wanted:
                await await_resource_version(self.store, self.settings, wanted)
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
        form = negotiate(call)
        if form.kind == "table":
            return Reply(
                200,
                discovery.lease_table(
                    items, list_meta, self.now(), form.api_version, include=include_object(call)
                ),
            )
        if form.kind == "partial":
            body: dict[str, Any] = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": form.api_version,
                "metadata": list_meta,
                "items": [partial(i, form.api_version) for i in items],
            }
            return Reply(200, body)
        body = {
            "kind": "LeaseList",
            "apiVersion": API_VERSION,
            "metadata": list_meta,
            "items": [strip_type_meta(i) for i in items],
        }
        return Reply(200, body)
