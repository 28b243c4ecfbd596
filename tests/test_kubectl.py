"""kubectl against both servers: ``get leases -A``, ``apply`` twice, ``get -o json``, ``delete``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest
from _kube import KubeTarget, leases_path

KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


async def _kubectl(kube: KubeTarget, tmp_path: Path, *args: str) -> str:
    """Run kubectl as admin (its own discovery cache); fail with its stderr unless it exits 0."""
    assert KUBECTL is not None
    command = [
        KUBECTL,
        f"--kubeconfig={kube.kubeconfig('admin')}",
        f"--cache-dir={tmp_path / 'kubectl-cache'}",
        "--request-timeout=20s",
        *args,
    ]
    with anyio.fail_after(30):
        done = await anyio.run_process(command, check=False)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stderr.decode()}"
    return done.stdout.decode()


def _manifest(name: str, holder: str, duration: int) -> str:
    return (
        "apiVersion: coordination.k8s.io/v1\n"
        "kind: Lease\n"
        "metadata:\n"
        f"  name: {name}\n"
        "  namespace: default\n"
        "spec:\n"
        f"  holderIdentity: {holder}\n"
        f"  leaseDurationSeconds: {duration}\n"
    )


async def test_kubectl_get_leases_in_all_namespaces_shows_the_holder(
    kube: KubeTarget, lease_name: str, tmp_path: Path
) -> None:
    created = await kube.raw().create_lease(lease_name, {"holderIdentity": "holder-1"})
    assert created.status == 201
    out = await _kubectl(kube, tmp_path, "get", "leases", "-A")
    header, *rows = [line.split() for line in out.splitlines()]
    # The server's Table columns for Lease: kubectl adds NAMESPACE with -A.
    assert header == ["NAMESPACE", "NAME", "HOLDER", "AGE"]
    mine = [row for row in rows if row[1] == lease_name]
    assert len(mine) == 1
    namespace, name, holder, age = mine[0]
    assert (namespace, name, holder) == ("default", lease_name, "holder-1")
    assert age.endswith("s")


async def test_kubectl_apply_creates_then_configures_the_lease(
    kube: KubeTarget, lease_name: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "lease.yaml"
    manifest.write_text(_manifest(lease_name, "first", 15))
    out = await _kubectl(kube, tmp_path, "apply", "-f", str(manifest))
    assert out.strip() == f"lease.coordination.k8s.io/{lease_name} created"

    manifest.write_text(_manifest(lease_name, "second", 20))
    out = await _kubectl(kube, tmp_path, "apply", "-f", str(manifest))
    assert out.strip() == f"lease.coordination.k8s.io/{lease_name} configured"

    out = await _kubectl(kube, tmp_path, "get", "lease", lease_name, "-o", "json")
    lease = json.loads(out)
    assert lease["kind"] == "Lease"
    assert lease["spec"] == {"holderIdentity": "second", "leaseDurationSeconds": 20}
    applied = lease["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(applied)["spec"] == {"holderIdentity": "second", "leaseDurationSeconds": 20}

    # An unchanged manifest leaves the lease alone.
    out = await _kubectl(kube, tmp_path, "apply", "-f", str(manifest))
    assert out.strip() == f"lease.coordination.k8s.io/{lease_name} unchanged"
    again = json.loads(await _kubectl(kube, tmp_path, "get", "lease", lease_name, "-o", "json"))
    assert again["metadata"]["resourceVersion"] == lease["metadata"]["resourceVersion"]


async def test_kubectl_delete_removes_the_lease(
    kube: KubeTarget, lease_name: str, tmp_path: Path
) -> None:
    assert (await kube.raw().create_lease(lease_name)).status == 201
    out = await _kubectl(kube, tmp_path, "delete", "lease", lease_name)
    assert out.strip() == f'lease.coordination.k8s.io "{lease_name}" deleted'
    assert (await kube.raw().get(leases_path(name=lease_name))).status == 404
