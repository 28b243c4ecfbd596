"""A Lease the server sent, read into a :class:`~leaderelect._lease_client.LeaseSnapshot`.

The verbs read it from a 2xx body, the watch from an event's object. Only what the protocol
relies on is required (``metadata.resourceVersion`` and ``metadata.uid``); a spec that is
missing or malformed still reads, as a record with ``problems``.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._errors import LeaseInvalid
from .._lease_client import LeaseSnapshot
from .._record import LeaseRecord, record_from_spec
from ._errors import NOT_JSON, loads, snippet

__all__ = ["snapshot_from_body", "snapshot_from_object"]

_KINDS = {"leases": "Lease", "leasecandidates": "LeaseCandidate"}


def snapshot_from_body(
    body: bytes, *, status: int, verb: str, lease: str, resource: str = "leases"
) -> LeaseSnapshot:
    """The Lease in a 2xx answer.

    Raises:
        LeaseInvalid: the body is not JSON, or not a usable Lease.
    """
    obj = loads(body)
    if obj is NOT_JSON:
        what = f"{verb} {_KINDS[resource].lower()} {lease}"
        raise LeaseInvalid(
            f"{what}: the answer (HTTP {status}) is not JSON: {snippet(body)!r}",
            lease=lease,
            verb=verb,
            status=status,
        )
    return snapshot_from_object(obj, status=status, verb=verb, lease=lease, resource=resource)


def snapshot_from_object(
    obj: object, *, status: int | None, verb: str, lease: str, resource: str = "leases"
) -> LeaseSnapshot:
    """The Lease in a decoded answer (``status``), or in a watch event (``status=None``).

    With ``resource="leasecandidates"``, a coordinated candidate's LeaseCandidate: its
    snapshot carries an empty record (its spec is read by ``_candidacy.py``).

    Raises:
        LeaseInvalid: ``obj`` is not a usable Lease.
    """
    kind = _KINDS[resource]
    problem = _object_problem(obj, kind)
    if problem is not None or not isinstance(obj, Mapping):
        raise LeaseInvalid(
            f"{verb} {kind.lower()} {lease}: the answer is not a usable {kind}: {problem}",
            lease=lease,
            verb=verb,
            status=status,
        )
    metadata = obj["metadata"]
    return LeaseSnapshot(
        record=record_from_spec(obj.get("spec")) if kind == "Lease" else LeaseRecord(),
        resource_version=metadata["resourceVersion"],
        uid=metadata["uid"],
        obj=obj,
    )


def _object_problem(obj: object, expected: str) -> str | None:
    if not isinstance(obj, Mapping):
        return f"expected a JSON object, got {type(obj).__name__}"
    kind = obj.get("kind")
    if kind is not None and kind != expected:
        return f"kind is {kind!r}"
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return "metadata is missing"
    for field in ("resourceVersion", "uid"):
        value = metadata.get(field)
        if not isinstance(value, str) or not value:
            return f"metadata.{field} is missing"
    return None
