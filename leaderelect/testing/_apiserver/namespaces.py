"""``/api/v1/namespaces``: list, get, create, delete (Terminating, as without a controller)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .calls import Call, Reply, strip_type_meta
from .gojson import JsonSyntaxError, go_quote, parse
from .gotime import Instant
from .status import ApiError, FieldError, bad_request, invalid, method_not_allowed
from .store import Store

__all__ = ["NamespaceHandler"]


class NamespaceHandler:
    """Namespaces: enough of the core API to create, read and terminate them."""

    def __init__(self, store: Store, *, now: Callable[[], Instant]) -> None:
        self.store = store
        self._now = now

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
                    "items": [strip_type_meta(i) for i in items],
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
