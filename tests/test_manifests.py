"""The Kubernetes example (``examples/deploy/``) is valid, least-privilege, and works.

Three levels, from always-on to where-available:

1. **Structure** (pyyaml, always): every manifest parses; names, namespaces, labels and the
   ServiceAccount line up; the Role grants exactly get, watch, create and update on Leases and
   nothing else; the Deployment's command line is one ``leaderelect run`` accepts, and its
   ``terminationGracePeriodSeconds`` covers the wrapper's grace period plus the release.
2. **The in-process Lease API server**: the Role's rules become a user of
   :class:`~leaderelect.testing.LeaseApiServer`, and a real elector acquires, renews and
   releases the Lease as that user without a single 403; ``kubectl apply`` (when kubectl is
   installed) creates the sample ``lease.yaml`` there, and the Role without ``create`` then
   suffices. That server serves only Leases (and namespaces), so the other kinds are not
   applied to it, and ``kubectl apply --dry-run=client`` cannot help: it needs the server's
   discovery for every kind, even for a client-side dry run.
3. **A real kube-apiserver** (``real_server``, skipped where it is not installed): every
   manifest goes through ``kubectl apply --dry-run=server`` (the API server's own validation
   and defaulting); the RBAC objects are applied for real and checked with ``kubectl auth
   can-i`` as the ServiceAccount; and with a token of that ServiceAccount the library's calls,
   then ``leaderelect run`` itself, succeed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from _kube import RealServer, write_kubeconfig

from leaderelect import LeaderElector, LeaseForbidden, LeaseLock, LeaseRecord
from leaderelect._cli import _parser
from leaderelect.testing import LeaseApiServer, Rule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "deploy"
MANIFESTS = sorted(EXAMPLE.glob("*.yaml"))
KUBECTL = shutil.which("kubectl")
NAMESPACE = "leaderelect-demo"
LEASE = "my-app"
LIBRARY_VERBS = {"get", "watch", "create", "update"}
"""What LeaseLock sends: GET, a watch on one name, POST, and PUT with a resourceVersion."""
BOUND = 30.0

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


def _documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                yield path, document


def _one(kind: str, files: tuple[str, ...] | None = None) -> dict[str, Any]:
    found = [
        doc
        for path, doc in _documents()
        if doc["kind"] == kind and (not files or path.name in files)
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _role_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _one("Role")["rules"]
    return rules


def _container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --------------------------------------------------------------------------------------------
# 1. Structure
# --------------------------------------------------------------------------------------------


def test_the_example_has_the_manifests_the_walkthrough_uses() -> None:
    names = {path.name for path in MANIFESTS}
    assert names == {
        "namespace.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "lease.yaml",
        "kustomization.yaml",
    }
    assert (EXAMPLE / "README.md").is_file()
    assert (EXAMPLE / "Dockerfile").is_file()
    assert (EXAMPLE / "app.py").is_file()


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_every_manifest_is_well_formed(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert documents, f"{path.name} is empty"
    for document in documents:
        assert isinstance(document, dict)
        assert isinstance(document.get("apiVersion"), str), document
        assert isinstance(document.get("kind"), str), document
        if document["kind"] == "Kustomization":
            for resource in document["resources"]:
                assert (EXAMPLE / resource).is_file(), resource
            continue
        metadata = document["metadata"]
        assert isinstance(metadata["name"], str)
        if document["kind"] != "Namespace":
            assert metadata["namespace"] == NAMESPACE, f"{path.name}: {document['kind']}"
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "leaderelect-example"


def test_the_kustomization_applies_the_namespace_first_and_leaves_the_lease_optional() -> None:
    resources = _one("Kustomization")["resources"]
    assert resources[0] == "namespace.yaml"
    assert set(resources) == {"namespace.yaml", "rbac.yaml", "deployment.yaml"}


def test_the_role_grants_exactly_what_the_library_calls() -> None:
    role = _one("Role")
    assert role["kind"] == "Role", "a namespaced Role, never a ClusterRole"
    granted: set[str] = set()
    for rule in _role_rules():
        assert rule["apiGroups"] == ["coordination.k8s.io"]
        assert rule["resources"] == ["leases"]
        assert "*" not in rule["verbs"]
        granted |= set(rule["verbs"])
        if "create" in rule["verbs"]:
            # RBAC never matches a create against resourceNames: such a rule would be dead.
            assert "resourceNames" not in rule
            assert rule["verbs"] == ["create"]
        else:
            assert rule["resourceNames"] == [LEASE]
    assert granted == LIBRARY_VERBS


def test_no_other_manifest_grants_anything() -> None:
    kinds = {doc["kind"] for _, doc in _documents()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    assert sorted(kind for _, doc in _documents() if (kind := doc["kind"]) == "Role") == ["Role"]


def test_the_binding_ties_the_role_to_the_deployments_service_account() -> None:
    binding = _one("RoleBinding")
    role = _one("Role")
    account = _one("ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_the_deployment_runs_three_replicas_of_the_wrapper_with_a_pod_name_identity() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    container = _container()
    assert container["command"][:2] == ["leaderelect", "run"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_deployments_command_line_parses_and_names_the_roles_lease() -> None:
    args = _parser().parse_args(_container()["command"][1:])
    assert args.lease == LEASE
    assert args.namespace is None, "the Lease should live in the pod's own namespace"
    assert args.kubeconfig is None, "in a pod the wrapper uses its service account"
    assert args.cmd[0] == "--" and args.cmd[1:] == ["python", "/app/app.py"]


def test_termination_grace_covers_the_wrappers_grace_period_and_release() -> None:
    args = _parser().parse_args(_container()["command"][1:])
    grace = (
        args.grace_period
        if args.grace_period is not None
        else (args.lease_duration - args.renew_deadline)
    )
    pod = _one("Deployment")["spec"]["template"]["spec"]
    # The release is one PUT, bounded by the renew deadline.
    assert pod["terminationGracePeriodSeconds"] > grace + args.renew_deadline
    # And the grace period stays within the margin no successor can start in.
    assert grace <= args.lease_duration - args.renew_deadline


def test_the_sample_lease_carries_no_spec_for_a_reapply_to_reset() -> None:
    lease = _one("Lease")
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["metadata"]["name"] == LEASE
    assert "spec" not in lease


# --------------------------------------------------------------------------------------------
# 2. The in-process Lease API server
# --------------------------------------------------------------------------------------------


def _as_testing_rules(rules: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """The Role's rules, bound in the example's namespace, as the testing server's rules."""
    return [
        Rule(
            verbs=tuple(rule["verbs"]),
            resources=tuple(rule["resources"]),
            namespaces=(NAMESPACE,),
            resource_names=tuple(rule["resourceNames"]) if "resourceNames" in rule else None,
            api_groups=tuple(rule["apiGroups"]),
        )
        for rule in rules
    ]


async def _lead_once(server: LeaseApiServer, user: str) -> None:
    """Acquire, renew once, release, as ``user``: every verb the library uses."""
    kubeconfig = server.kubeconfig(user, namespace=NAMESPACE)
    async with await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock:
        assert lock.namespace == NAMESPACE
        elector = LeaderElector(
            lock, identity="my-app-0", lease_duration=4, renew_deadline=2.5, retry_period=0.5
        )
        async with elector.leading():
            first = server.lease(NAMESPACE, LEASE)
            assert first is not None
            await server.wait_for_lease(
                NAMESPACE,
                LEASE,
                lambda lease: (
                    lease is not None and lease["spec"]["renewTime"] != first["spec"]["renewTime"]
                ),
                timeout=BOUND,
            )
    lease = server.lease(NAMESPACE, LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


async def test_an_elector_leads_with_exactly_the_roles_permissions(
    leaderelect_server: LeaseApiServer,
) -> None:
    server = leaderelect_server
    server.create_namespace(NAMESPACE)
    server.add_user("my-app", _as_testing_rules(_role_rules()))
    with anyio.fail_after(BOUND):
        await _lead_once(server, "my-app")
    assert server.requests.count(user="my-app", code=403) == 0
    for verb in LIBRARY_VERBS:
        assert server.requests.count(user="my-app", verb=verb) > 0, verb


async def test_the_role_reaches_no_other_lease_but_may_create_one(
    leaderelect_server: LeaseApiServer,
) -> None:
    server = leaderelect_server
    server.create_namespace(NAMESPACE)
    server.add_user("my-app", _as_testing_rules(_role_rules()))
    kubeconfig = server.kubeconfig("my-app", namespace=NAMESPACE)
    now = datetime.now(timezone.utc)
    record = LeaseRecord("intruder", 15, now, now, 0)
    async with await LeaseLock.from_kubeconfig("other", config_file=kubeconfig) as other:
        with pytest.raises(LeaseForbidden, match='lacks RBAC verb "get"'):
            await other.get(timeout=5)
        # The limit of RBAC the Role's comment explains: create cannot be tied to a name.
        created = await other.create(record, timeout=5)
        with pytest.raises(LeaseForbidden, match='lacks RBAC verb "update"'):
            await other.update(record, base=created, timeout=5)


@needs_kubectl
async def test_kubectl_applies_the_sample_lease_and_the_role_then_needs_no_create(
    leaderelect_server: LeaseApiServer, tmp_path: Path
) -> None:
    server = leaderelect_server
    server.create_namespace(NAMESPACE)
    done = await _kubectl(server.kubeconfig(), tmp_path, "apply", "-f", str(EXAMPLE / "lease.yaml"))
    assert done.stdout.decode().strip() == "lease.coordination.k8s.io/my-app created"
    without_create = [rule for rule in _role_rules() if "create" not in rule["verbs"]]
    server.add_user("my-app", _as_testing_rules(without_create))
    with anyio.fail_after(BOUND):
        await _lead_once(server, "my-app")
    assert server.requests.count(user="my-app", code=403) == 0
    assert server.requests.count(user="my-app", verb="create") == 0
    # Applying the file again leaves the electors' fields alone.
    before = server.lease(NAMESPACE, LEASE)
    assert before is not None and before["spec"]["leaseTransitions"] == 1
    done = await _kubectl(server.kubeconfig(), tmp_path, "apply", "-f", str(EXAMPLE / "lease.yaml"))
    assert done.stdout.decode().strip() == "lease.coordination.k8s.io/my-app unchanged"
    after = server.lease(NAMESPACE, LEASE)
    assert after is not None and after["spec"] == before["spec"]


async def _kubectl(
    kubeconfig: Path, tmp_path: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    assert KUBECTL is not None
    command = [
        KUBECTL,
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={tmp_path / 'kubectl-cache'}",
        "--request-timeout=20s",
        *args,
    ]
    with anyio.fail_after(BOUND):
        done = await anyio.run_process(command, check=False)
    if check:
        assert done.returncode == 0, f"{command}:\n{done.stderr.decode()}"
    return done


# --------------------------------------------------------------------------------------------
# 3. A real kube-apiserver
# --------------------------------------------------------------------------------------------


@pytest.mark.real_server
@needs_kubectl
async def test_a_real_api_server_accepts_the_manifests_and_the_role_suffices(
    real_server: RealServer, tmp_path: Path
) -> None:
    admin = real_server.kubeconfig("admin")

    async def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return await _kubectl(admin, tmp_path, *args, check=check)

    await kubectl("apply", "-f", str(EXAMPLE / "namespace.yaml"))
    others = [
        path for path in MANIFESTS if path.name not in ("namespace.yaml", "kustomization.yaml")
    ]
    dry = await kubectl("apply", "--dry-run=server", *(f"--filename={p}" for p in others))
    lines = dry.stdout.decode().splitlines()
    kinds = [doc["kind"] for path, doc in _documents() if path in others]
    assert len(lines) == len(kinds) == 5, lines  # ServiceAccount, Role, RoleBinding, ...
    assert all(line.endswith("(server dry run)") for line in lines), lines
    await kubectl("apply", "-f", str(EXAMPLE / "rbac.yaml"))

    account = f"system:serviceaccount:{NAMESPACE}:my-app"
    expected = {
        ("get", "leases/my-app"): True,
        ("watch", "leases/my-app"): True,
        ("update", "leases/my-app"): True,
        ("create", "leases"): True,
        ("patch", "leases/my-app"): False,
        ("delete", "leases/my-app"): False,
        ("list", "leases"): False,
        ("get", "leases/other"): False,
        ("update", "leases/other"): False,
        ("get", "pods"): False,
    }
    for (verb, resource), allowed in expected.items():
        done = await kubectl(
            "auth", "can-i", verb, resource, "-n", NAMESPACE, f"--as={account}", check=False
        )
        answer = done.stdout.decode().strip()
        assert answer == ("yes" if allowed else "no"), (verb, resource, answer)

    token = (await kubectl("create", "token", "my-app", "-n", NAMESPACE)).stdout.decode().strip()
    kubeconfig = write_kubeconfig(
        tmp_path / "my-app.kubeconfig",
        url=real_server.url,
        token=token,
        user="my-app",
        ca_file=real_server.ca_file,
    )
    # The library's calls, one by one, as the ServiceAccount.
    with anyio.fail_after(BOUND):
        async with await LeaseLock.from_kubeconfig(
            LEASE, NAMESPACE, config_file=kubeconfig
        ) as lock:
            assert await lock.get(timeout=10) is None
            now = datetime.now(timezone.utc)
            created = await lock.create(LeaseRecord("probe", 15, now, now, 0), timeout=10)
            updated = await lock.update(LeaseRecord("", 1, now, now, 0), base=created, timeout=10)
            async with lock.watch(resource_version=updated.resource_version, timeout_seconds=1):
                pass  # the watch, on this one name, was authorized
    # And the wrapper itself, end to end.
    with anyio.fail_after(2 * BOUND):
        done = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "leaderelect",
                "run",
                f"--lease={LEASE}",
                f"--namespace={NAMESPACE}",
                f"--kubeconfig={kubeconfig}",
                "--identity=my-app-0",
                "--",
                sys.executable,
                "-c",
                "import os; print(os.environ['LEADERELECT_TOKEN'])",
            ],
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().strip() == f"{created.uid}:1"
        status = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "leaderelect",
                "status",
                LEASE,
                f"--namespace={NAMESPACE}",
                f"--kubeconfig={kubeconfig}",
                "-o",
                "json",
            ],
            check=False,
        )
    assert status.returncode == 0, status.stderr.decode()
    assert json.loads(status.stdout)["holder"] is None
