"""The verbs on a coordinated candidate's own LeaseCandidate (``coordination.k8s.io/v1beta1``).

Coordinated leader election (KEP-4355) has each candidate keep a LeaseCandidate named after
its identity, beside the Lease; kube-apiserver's controller reads them to choose the holder.
These verbs share the lock's connections, credentials and error mapping; answers are read raw
into :class:`~leaderelect._lease_client.LeaseSnapshot` values whose ``obj`` is the candidate.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, final

import kubernetes_asyncio.client

from .._errors import LeaseNotFound
from .._lease_client import LeaseSnapshot, WatchEvent
from ._lock import LeaseLock
from ._snapshot import snapshot_from_body
from ._watch import LeaseWatch

__all__ = ["LeaseCandidates", "NOT_SERVED"]

_API_VERSION = "coordination.k8s.io/v1beta1"
_RESOURCE = "leasecandidates"

NOT_SERVED = (
    "the API server does not serve coordination.k8s.io/v1beta1 leasecandidates: coordinated "
    "leader election is off there (kube-apiserver needs --feature-gates="
    "CoordinatedLeaderElection=true --runtime-config=coordination.k8s.io/v1beta1=true)"
)


@final
class LeaseCandidates:
    """Get, create, update, delete and watch the LeaseCandidate ``name`` in the lock's
    namespace."""

    def __init__(self, lock: LeaseLock, name: str) -> None:
        self._lock = lock
        self.name = name
        self.namespace = lock.namespace

    @property
    def candidate(self) -> str:
        """``"namespace/name"`` of the LeaseCandidate, for log lines."""
        return f"{self.namespace}/{self.name}"

    def _api(self) -> kubernetes_asyncio.client.CoordinationV1beta1Api:
        # The lock's current client: its reserved connections while the elector follows.
        lock = self._lock
        client = lock._reserved_client if lock._reserved_client is not None else lock._api_client
        return kubernetes_asyncio.client.CoordinationV1beta1Api(client)

    def _snapshot(self, verb: str, status: int, body: bytes) -> LeaseSnapshot:
        return snapshot_from_body(
            body, status=status, verb=verb, lease=self.candidate, resource=_RESOURCE
        )

    async def get(self, *, timeout: float) -> LeaseSnapshot | None:
        """Read the LeaseCandidate; ``None`` when it does not exist."""
        try:
            reply = await self._lock._send(
                "get",
                timeout,
                self._api().read_namespaced_lease_candidate,
                self.name,
                self.namespace,
                missing_ok=True,
                resource=_RESOURCE,
                name=self.name,
            )
        except LeaseNotFound as exc:
            raise _not_served(exc) from exc
        if reply.status == 404:
            return None
        return self._snapshot("get", reply.status, reply.body)

    async def create(self, spec: Mapping[str, Any], *, timeout: float) -> LeaseSnapshot:
        """Create the LeaseCandidate with ``spec``.

        Raises:
            LeaseConflict: it already exists.
            LeaseNotFound: the namespace is missing, or the API is not served (coordinated
                leader election is off on this server).
        """
        body = {
            "apiVersion": _API_VERSION,
            "kind": "LeaseCandidate",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": dict(spec),
        }
        try:
            reply = await self._lock._send(
                "create",
                timeout,
                self._api().create_namespaced_lease_candidate,
                self.namespace,
                body,
                resource=_RESOURCE,
                name=self.name,
            )
        except LeaseNotFound as exc:
            raise _not_served(exc) from exc
        return self._snapshot("create", reply.status, reply.body)

    async def update(
        self,
        spec: Mapping[str, Any],
        *,
        base: LeaseSnapshot,
        timeout: float,
    ) -> LeaseSnapshot:
        """Replace the LeaseCandidate's spec, only if it is still at ``base``.

        Raises:
            LeaseConflict: it changed, or was deleted, since ``base`` was read.
        """
        body = copy.deepcopy(dict(base.obj))
        metadata = dict(body.get("metadata") or {})
        metadata["resourceVersion"] = base.resource_version
        body.update(
            apiVersion=_API_VERSION, kind="LeaseCandidate", metadata=metadata, spec=dict(spec)
        )
        reply = await self._lock._send(
            "update",
            timeout,
            self._api().replace_namespaced_lease_candidate,
            self.name,
            self.namespace,
            body,
            resource_version=base.resource_version,
            resource=_RESOURCE,
            name=self.name,
        )
        return self._snapshot("update", reply.status, reply.body)

    async def delete(self, *, timeout: float) -> None:
        """Delete the LeaseCandidate; nothing when it is already gone."""
        await self._lock._send(
            "delete",
            timeout,
            self._api().delete_namespaced_lease_candidate,
            self.name,
            self.namespace,
            missing_ok=True,
            resource=_RESOURCE,
            name=self.name,
        )

    def watch(
        self, *, resource_version: str | None, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Watch this LeaseCandidate only, resumed from ``resource_version``."""
        return LeaseWatch(
            self._api().list_namespaced_lease_candidate,
            self.name,
            self.namespace,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            ensure_open=self._lock._ensure_open,
            resource=_RESOURCE,
        )


def _not_served(exc: LeaseNotFound) -> LeaseNotFound:
    """A 404 that is not about our LeaseCandidate nor its namespace: the API is missing."""
    if f'namespace "{exc.lease.partition("/")[0]}" does not exist' in str(exc):
        return exc  # status_error's own words for a missing namespace
    return LeaseNotFound(
        f"{exc.verb} leasecandidate: {NOT_SERVED}",
        lease=exc.lease,
        verb=exc.verb,
        status=exc.status,
        reason=exc.reason,
    )
