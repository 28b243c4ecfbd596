"""LeaseLock.connect, from_kubeconfig and in_cluster (``leaderelect/_kube/_connect.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import pytest
from _kube import KubeTarget, write_kubeconfig

from leaderelect._errors import ConfigError, LeaseForbidden
from leaderelect._kube import LeaseLock, _connect, _credentials

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


# ============================================================================================
# LeaseLock.connect: controller-runtime's precedence
# ============================================================================================

POD_HOST, POD_PORT = "10.96.0.1", "6443"


def _kubeconfig(path: Path, *, url: str, namespace: str, extra_context: str | None = None) -> Path:
    contexts = [{"name": "main", "context": {"cluster": "c", "user": "u", "namespace": namespace}}]
    if extra_context is not None:
        contexts.append(
            {
                "name": extra_context,
                "context": {"cluster": "c", "user": "u", "namespace": extra_context},
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": f"{namespace}-token"}}],
                "contexts": contexts,
                "current-context": "main",
            }
        )
    )
    return path


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A process in a pod: its service account (namespace ``pod-ns``) and environment, and an
    empty ``$HOME``; no ``$KUBECONFIG``."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text(Path(certifi.where()).read_text())
    (account / "namespace").write_text("pod-ns\n")
    monkeypatch.setattr(_connect, "_SERVICE_ACCOUNT_DIR", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", POD_HOST)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", POD_PORT)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return account


def _where(lock: LeaseLock) -> tuple[str, str | None, str]:
    configuration = lock._api_client.configuration
    return lock.namespace, configuration.host, str(configuration.api_key["BearerToken"])


async def test_connect_prefers_an_explicit_kubeconfig(
    pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = _kubeconfig(tmp_path / "explicit", url="http://explicit:1", namespace="explicit")
    env = _kubeconfig(tmp_path / "env", url="http://env:1", namespace="env")
    _kubeconfig(tmp_path / "home/.kube/config", url="http://home:1", namespace="home")
    monkeypatch.setenv("KUBECONFIG", str(env))
    async with await LeaseLock.connect("x", kubeconfig=explicit) as lock:
        assert _where(lock) == ("explicit", "http://explicit:1", "Bearer explicit-token")
    async with await LeaseLock.connect("x", "given", kubeconfig=str(explicit)) as lock:
        assert lock.namespace == "given"


async def test_connect_prefers_kubeconfig_from_the_environment_to_the_pod(
    pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _kubeconfig(tmp_path / "env", url="http://env:1", namespace="env")
    _kubeconfig(tmp_path / "home/.kube/config", url="http://home:1", namespace="home")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{env}")
    async with await LeaseLock.connect("x") as lock:
        assert _where(lock) == ("env", "http://env:1", "Bearer env-token")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^kubeconfig: no kubeconfig found at '.*missing'$"):
        await LeaseLock.connect("x")


async def test_connect_in_a_pod_prefers_the_service_account_to_the_home_kubeconfig(
    pod: Path, tmp_path: Path
) -> None:
    _kubeconfig(tmp_path / "home/.kube/config", url="http://home:1", namespace="home")
    async with await LeaseLock.connect("x") as lock:
        assert _where(lock) == ("pod-ns", f"https://{POD_HOST}:{POD_PORT}", "Bearer pod-token")
        assert lock._api_client.configuration.ssl_ca_cert == str(pod / "ca.crt")
    async with await LeaseLock.connect("x", "given") as lock:
        assert lock.namespace == "given"
    # A context names a kubeconfig's context: the service account has none.
    async with await LeaseLock.connect("x", context="main") as lock:
        assert _where(lock) == ("home", "http://home:1", "Bearer home-token")


async def test_connect_in_a_pod_with_an_unusable_service_account_falls_through_to_home(
    pod: Path, tmp_path: Path
) -> None:
    (pod / "token").unlink()
    _kubeconfig(tmp_path / "home/.kube/config", url="http://home:1", namespace="home")
    async with await LeaseLock.connect("x") as lock:
        assert _where(lock) == ("home", "http://home:1", "Bearer home-token")
    (tmp_path / "home/.kube/config").write_text(": : :")
    with pytest.raises(ConfigError) as caught:
        await LeaseLock.connect("x")
    message = str(caught.value)
    assert message.startswith("kubeconfig: cannot load kubeconfig '~/.kube/config'")
    assert "the pod's service account could not be used either" in message


async def test_connect_outside_a_pod_reads_the_home_kubeconfig(
    pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    _kubeconfig(
        tmp_path / "home/.kube/config", url="http://home:1", namespace="home", extra_context="other"
    )
    async with await LeaseLock.connect("x") as lock:
        assert _where(lock) == ("home", "http://home:1", "Bearer home-token")
    async with await LeaseLock.connect("x", context="other") as lock:
        assert lock.namespace == "other"


async def test_connect_says_what_it_tried_when_nothing_works(
    pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pod / "token").unlink()
    with pytest.raises(ConfigError) as caught:
        await LeaseLock.connect("x")
    assert str(caught.value) == (
        f"kubeconfig: cannot load the service-account config from {str(pod)!r}: "
        "Service token file does not exist. ($KUBERNETES_SERVICE_HOST is set, so the pod's "
        "service account was tried, and there is no ~/.kube/config; pass kubeconfig=... or set "
        "$KUBECONFIG to use a kubeconfig instead)"
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ConfigError) as caught:
        await LeaseLock.connect("x")
    assert str(caught.value) == (
        "kubeconfig: no kubeconfig found at '~/.kube/config' "
        "(pass kubeconfig=..., set $KUBECONFIG, or run in a pod)"
    )
    with pytest.raises(ConfigError, match=r"^name 'Not A Name' is not a valid Lease name"):
        await LeaseLock.connect("Not A Name")


async def test_connect_in_a_pod_reaches_the_api_server_over_https(
    kube: KubeTarget,
    lease_name: str,
    pod: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kube.ca_file is None:
        pytest.skip(f"in-cluster config needs https; the {kube.kind} server is plain http")
    (pod / "token").write_text("not-a-token")
    (pod / "ca.crt").write_bytes(kube.ca_file.read_bytes())
    (pod / "namespace").write_text("default\n")
    url = urlsplit(kube.url)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(url.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    monkeypatch.setattr(_credentials, "_RELOAD_AT_MOST_EVERY", 0.0)
    async with await LeaseLock.connect(lease_name) as lock:
        assert lock.lease == f"default/{lease_name}"
        # A token file that does not change: the 401 stands.
        with pytest.raises(LeaseForbidden) as caught:
            await lock.get(timeout=5)
        assert caught.value.status == 401
        # The kubelet rotates the token: the next 401 reads it again, and the request succeeds.
        (pod / "token").write_text(kube.token("elector"))
        created = await lock.create(HELD, timeout=5)
        assert created.record == HELD
