"""LeaseLock.from_kubeconfig and LeaseLock.in_cluster (``leaderelect/_kube/_connect.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _kube import KubeTarget, write_kubeconfig

from leaderelect._errors import ConfigError
from leaderelect._kube import LeaseLock, _connect

from ._support import HELD, ScriptedServer

# ============================================================================================
# kubeconfig files
# ============================================================================================


async def test_from_kubeconfig_defaults_the_namespace_from_the_context(
    scripted: ScriptedServer, tmp_path: Path
) -> None:
    path = tmp_path / "multi.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": scripted.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "ops", "context": {"cluster": "c", "user": "u", "namespace": "ops"}},
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "ops",
            }
        )
    )
    async with await LeaseLock.from_kubeconfig("x", config_file=path) as lock:
        assert lock.namespace == "ops"
    async with await LeaseLock.from_kubeconfig("x", config_file=str(path), context="plain") as lock:
        assert lock.namespace == "default"
    async with await LeaseLock.from_kubeconfig("x", "given", config_file=path) as lock:
        assert lock.namespace == "given"
    with pytest.raises(ConfigError, match=r"^config_file: cannot load context 'nope' of"):
        await LeaseLock.from_kubeconfig("x", config_file=path, context="nope")


async def test_from_kubeconfig_reads_kubeconfig_from_the_environment(
    scripted: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(tmp_path / "env.kubeconfig", url=scripted.url, token="t", user="u")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    async with await LeaseLock.from_kubeconfig("x") as lock:
        assert lock.namespace == "default"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(None, r"^config_file: no kubeconfig found at '.*nowhere'$", id="no file"),
        pytest.param("{}", r"^config_file: cannot load kubeconfig", id="an empty document"),
        pytest.param(": : :", r"^config_file: cannot load kubeconfig", id="not yaml"),
    ],
)
async def test_from_kubeconfig_with_an_unusable_file_raises_config_error(
    tmp_path: Path, content: str | None, match: str
) -> None:
    path = tmp_path / "nowhere"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        await LeaseLock.from_kubeconfig("x", config_file=path)


# ============================================================================================
# The pod's service account
# ============================================================================================


async def test_in_cluster_uses_the_service_account(
    kube: KubeTarget,
    lease_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kube.ca_file is None:
        pytest.skip(f"in-cluster config needs https; the {kube.kind} server is plain http")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(kube.token("elector"))
    (account / "ca.crt").write_bytes(kube.ca_file.read_bytes())
    (account / "namespace").write_text("default\n")
    url = urlsplit(kube.url)
    monkeypatch.setattr(_connect, "_SERVICE_ACCOUNT_DIR", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(url.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    async with await LeaseLock.in_cluster(lease_name) as lock:
        assert lock.lease == f"default/{lease_name}"
        created = await lock.create(HELD, timeout=5)
        assert created.record == HELD
    (account / "namespace").unlink()
    with pytest.raises(ConfigError, match=r"^namespace: not given"):
        await LeaseLock.in_cluster(lease_name)
    async with await LeaseLock.in_cluster(lease_name, "default") as lock:
        assert await lock.get(timeout=5) is not None


async def test_in_cluster_outside_a_pod_raises_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match=r"^in_cluster: cannot load the service-account config"):
        await LeaseLock.in_cluster("x")
