"""Change what the ``reader`` user may do while a test runs, on the embedded and the real server.

:func:`reader_namespace` makes a namespace of the test's own and binds ``reader`` to a Role
there with the verbs given; :meth:`Grant.allow` changes them. On the embedded server the user's
rules are replaced (same token); on the real one a Role and a RoleBinding are written as admin,
and the namespace is deleted afterwards. ``reader`` never gets more than leases in that one
namespace, so tests sharing the real server are not affected.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from _kube import KubeTarget

from leaderelect.testing import Rule

__all__ = [
    "READ",
    "READ_WRITE",
    "Grant",
    "create_namespace",
    "delete_namespace",
    "reader_namespace",
]

READ = ("get", "list", "watch")
READ_WRITE = (*READ, "create", "update", "patch")

_GROUP = "coordination.k8s.io"
_RBAC = "/apis/rbac.authorization.k8s.io/v1"
_ROLE = "leaderelect-test-reader"


async def create_namespace(kube: KubeTarget, namespace: str) -> None:
    """Create ``namespace`` (as admin on the real server)."""
    if kube.server is not None:
        kube.server.create_namespace(namespace)
        return
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    created = await kube.raw("admin").request("POST", "/api/v1/namespaces", body)
    assert created.status in (201, 409), created.json()


async def delete_namespace(kube: KubeTarget, namespace: str) -> None:
    """Delete ``namespace`` on a shared server (a no-op on the embedded one)."""
    if kube.server is None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await kube.raw("admin").request("DELETE", f"/api/v1/namespaces/{namespace}")


class Grant:
    """What ``reader`` may do on leases in :attr:`namespace`."""

    def __init__(self, kube: KubeTarget, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._bound = False

    async def allow(self, verbs: Sequence[str]) -> None:
        """Let ``reader`` do exactly ``verbs`` on leases in the namespace (none: nothing)."""
        server = self.kube.server
        if server is not None:
            rules = [
                Rule(
                    verbs=tuple(verbs),
                    resources=("leases",),
                    namespaces=(self.namespace,),
                    api_groups=(_GROUP,),
                )
            ]
            server.add_user("reader", rules if verbs else [], token=server.token("reader"))
            return
        admin = self.kube.raw("admin")
        roles = f"{_RBAC}/namespaces/{self.namespace}/roles"
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": _ROLE, "namespace": self.namespace},
            "rules": [{"apiGroups": [_GROUP], "resources": ["leases"], "verbs": list(verbs)}]
            if verbs
            else [],
        }
        written = await admin.request("PUT", f"{roles}/{_ROLE}", role)
        if written.status == 404:
            written = await admin.request("POST", roles, role)
        assert written.status in (200, 201), written.json()
        if not self._bound:
            binding = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": _ROLE, "namespace": self.namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": _ROLE},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "reader"}
                ],
            }
            bound = await admin.request(
                "POST", f"{_RBAC}/namespaces/{self.namespace}/rolebindings", binding
            )
            assert bound.status == 201, bound.json()
            self._bound = True


@contextlib.asynccontextmanager
async def reader_namespace(kube: KubeTarget, verbs: Sequence[str]) -> AsyncIterator[Grant]:
    """A new namespace in which ``reader`` may do ``verbs`` on leases; deleted afterwards."""
    kube.require_users("admin", "reader")
    if kube.kind == "external":
        pytest.skip("the test changes RBAC; not on an external cluster")
    grant = Grant(kube, f"le-rbac-{uuid.uuid4().hex[:10]}")
    await create_namespace(kube, grant.namespace)
    try:
        await grant.allow(verbs)
        yield grant
    finally:
        await delete_namespace(kube, grant.namespace)
