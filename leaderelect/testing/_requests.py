"""What the server knows about each request, and the records tests read back.

Every request is parsed into a :class:`RequestInfo` before authentication; faults match on it and
:class:`RequestCounter` counts it. :class:`WriteRecord` is one committed write (the history a
safety checker replays).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["RequestCounter", "RequestInfo", "WriteRecord"]


@dataclasses.dataclass(frozen=True, slots=True)
class RequestInfo:
    """One request as the server parsed it, before authentication.

    Attributes:
        method: the HTTP method (``GET``, ``PUT``, ...).
        path: the URL path.
        query: the query parameters (first value of each).
        verb: the Kubernetes verb (``get``, ``list``, ``watch``, ``create``, ``update``,
            ``patch``, ``delete``, ``deletecollection``), or the lower-case method for a
            non-resource path (``/version``, discovery).
        resource: ``leases`` (or whatever resource the path names), None for non-resource paths.
        namespace: the namespace in the path, None for cluster-scope and non-resource requests.
        name: the object name (from the path, or a watch/list ``metadata.name`` field selector).
        user: the authenticated user name; ``system:anonymous`` without a token; None when the
            token is unknown (the request is answered 401).
        is_watch: True for a watch.
        remote: the client's address.
        user_agent: the ``User-Agent`` header.
        api_group: the API group of a resource request (``coordination.k8s.io``, ``""`` core).
    """

    method: str
    path: str
    query: Mapping[str, str]
    verb: str
    resource: str | None
    namespace: str | None
    name: str | None
    user: str | None
    is_watch: bool
    remote: str | None
    user_agent: str = ""
    api_group: str | None = None

    @property
    def is_resource_request(self) -> bool:
        """True for a request on an API resource (not discovery, health or version)."""
        return self.resource is not None


_Key = tuple[str, str | None, str | None, str | None, str | None]


class RequestCounter:
    """Counts requests by verb, resource, user, namespace and name (and answers by code).

    Requests are counted when they arrive (so hung requests count too); :meth:`count` with
    ``code=`` counts answered requests by HTTP status instead.
    """

    __slots__ = ("_answers", "_arrivals")

    def __init__(self) -> None:
        self._arrivals: Counter[_Key] = Counter()
        self._answers: Counter[tuple[_Key, int]] = Counter()

    @staticmethod
    def _key(info: RequestInfo) -> _Key:
        return (info.verb, info.resource, info.user, info.namespace, info.name)

    def record(self, info: RequestInfo) -> None:
        """Count an arriving request."""
        self._arrivals[self._key(info)] += 1

    def record_answer(self, info: RequestInfo, code: int) -> None:
        """Count the HTTP status a request was answered with."""
        self._answers[(self._key(info), code)] += 1

    def count(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        user: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        code: int | None = None,
    ) -> int:
        """How many requests matched every given filter (``None`` matches anything).

        Args:
            verb: a Kubernetes verb (``get``, ``update``, ``watch``...).
            resource: a resource (``leases``).
            user: a user name.
            namespace: a namespace.
            name: a lease name.
            code: count answered requests with this HTTP status instead of arrivals.
        """
        wanted = (verb, resource, user, namespace, name)

        def hit(key: _Key) -> bool:
            return all(w is None or w == k for w, k in zip(wanted, key, strict=True))

        if code is None:
            return sum(n for key, n in self._arrivals.items() if hit(key))
        return sum(n for (key, c), n in self._answers.items() if c == code and hit(key))

    def snapshot(self) -> dict[tuple[str, str | None, str | None], int]:
        """Arrivals so far, by ``(verb, resource, user)``."""
        out: Counter[tuple[str, str | None, str | None]] = Counter()
        for (verb, resource, user, _, _), n in self._arrivals.items():
            out[(verb, resource, user)] += n
        return dict(out)

    def total(self) -> int:
        """All requests counted so far."""
        return sum(self._arrivals.values())

    def reset(self) -> None:
        """Forget every count."""
        self._arrivals.clear()
        self._answers.clear()


@dataclasses.dataclass(frozen=True, slots=True)
class WriteRecord:
    """One committed write of a Lease.

    Attributes:
        time: the event loop's clock when the write committed (monotonic seconds).
        timestamp: the wall-clock time of the commit (UTC).
        user: who wrote (``system:apiserver`` for writes made through the server object).
        verb: ``create``, ``update``, ``patch``, ``delete`` or ``deletecollection``.
        namespace: the Lease's namespace.
        name: the Lease's name.
        resource_version_before: the Lease's resourceVersion before (None for a create).
        resource_version_after: the resourceVersion the write committed at.
        holder_before: ``spec.holderIdentity`` before (None when unset or absent).
        holder_after: ``spec.holderIdentity`` after (None when unset or deleted).
        lease_before: the Lease before (None for a create).
        lease_after: the Lease after (None for a delete).
    """

    time: float
    timestamp: datetime.datetime
    user: str
    verb: str
    namespace: str
    name: str
    resource_version_before: int | None
    resource_version_after: int
    holder_before: str | None
    holder_after: str | None
    lease_before: Mapping[str, Any] | None
    lease_after: Mapping[str, Any] | None
