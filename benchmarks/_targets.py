"""The API servers the benchmark runs against, and how each counts requests.

* :class:`EmbeddedTarget` — ``leaderelect.testing.LeaseApiServer`` in the orchestrator's own
  event loop; every elector is its own server user, so the server's request counters say who
  sent what.
* :class:`RealTarget` — kube-apiserver v1.36 + etcd started with
  ``../shared/kube-apiserver/up.sh`` into a temporary directory (``down.sh DIR --wipe`` after).
  Its users are fixed (every candidate is ``elector``), so requests are counted by each
  candidate (ours and kubernetes_asyncio's in their API client, client-go's from its ``-v=6``
  request log), and cross-checked against ``apiserver_request_total`` on ``/metrics``.
* :class:`ExternalTarget` — any cluster, through one kubeconfig; counted like the real one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.config

from leaderelect.testing import LeaseApiServer, admin_user

from ._members import REPO_ROOT

_METRIC = re.compile(r"^apiserver_request_total\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def shared_dir() -> Path:
    """``../shared`` beside the repository, or ``$LEADERELECT_SHARED_DIR``."""
    override = os.environ.get("LEADERELECT_SHARED_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared"


def le_example() -> Path | None:
    """client-go's le-example, if it is there and runnable."""
    override = os.environ.get("LEADERELECT_LE_EXAMPLE")
    path = Path(override) if override else shared_dir() / "kube-apiserver" / "bin" / "le-example"
    return path if path.is_file() and os.access(path, os.X_OK) else None


class Target:
    kind: str = ""
    description: str = ""
    per_user_counts = False
    """True when the server's own counters attribute requests to each elector."""

    def kubeconfig(self, user: str) -> Path:
        raise NotImplementedError

    def server_counts(self) -> dict[tuple[str, str], int]:
        """Requests so far by (user, verb), from the server's own counters."""
        raise NotImplementedError

    async def server_totals(self) -> dict[str, int] | None:
        """Lease requests so far by verb from clients (not the apiserver itself), if known."""
        return None


class EmbeddedTarget(Target):
    kind = "embedded"
    per_user_counts = True

    def __init__(self, server: LeaseApiServer) -> None:
        self.server = server
        self.description = f"leaderelect.testing.LeaseApiServer at {server.url} (in-process)"

    def kubeconfig(self, user: str) -> Path:
        if user not in self.server.users:
            self.server.add_user(user)
        return self.server.kubeconfig(user)

    def server_counts(self) -> dict[tuple[str, str], int]:
        out: Counter[tuple[str, str]] = Counter()
        for (verb, resource, user), n in self.server.requests.snapshot().items():
            if resource == "leases" and user is not None:
                out[(user, verb)] += n
        return dict(out)

    async def server_totals(self) -> dict[str, int] | None:
        out: Counter[str] = Counter()
        for (_, verb), n in self.server_counts().items():
            out[verb] += n
        return dict(out)


class _MetricsReader(Target):
    """Reads ``apiserver_request_total`` through a kubeconfig allowed to GET ``/metrics``."""

    _metrics_kubeconfig: Path | None = None

    async def server_totals(self) -> dict[str, int] | None:
        if self._metrics_kubeconfig is None:
            return None
        configuration = kubernetes_asyncio.client.Configuration()
        try:
            await kubernetes_asyncio.config.load_kube_config(
                config_file=str(self._metrics_kubeconfig),
                client_configuration=configuration,
                persist_config=False,
            )
            async with kubernetes_asyncio.client.ApiClient(configuration) as api:
                response = await api.call_api(
                    "/metrics",
                    "GET",
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=10,
                )
                if isinstance(response, tuple):  # older clients: (data, status, headers)
                    response = response[0]
                text = (await response.read()).decode()
        except Exception:  # no /metrics on this cluster for these credentials
            return None
        out: Counter[str] = Counter()
        for line in text.splitlines():
            found = _METRIC.match(line)
            if found is None:
                continue
            labels = dict(_LABEL.findall(found.group(1)))
            if labels.get("resource") != "leases" or labels.get("system_client"):
                continue
            verb = {"PUT": "update", "POST": "create"}.get(labels["verb"], labels["verb"].lower())
            out[verb] += int(float(found.group(2)))
        return dict(out)


class RealTarget(_MetricsReader):
    kind = "real"

    def __init__(self, state_dir: Path, url: str) -> None:
        self.state_dir = state_dir
        self._metrics_kubeconfig = state_dir / "admin.kubeconfig"
        self.description = f"kube-apiserver v1.36.2 + etcd at {url} (../shared/kube-apiserver)"

    def kubeconfig(self, user: str) -> Path:
        return self.state_dir / "elector.kubeconfig"


class ExternalTarget(_MetricsReader):
    kind = "external"

    def __init__(self, kubeconfig: Path) -> None:
        self._kubeconfig = kubeconfig
        self._metrics_kubeconfig = kubeconfig
        self.description = f"the cluster of {kubeconfig}"

    def kubeconfig(self, user: str) -> Path:
        return self._kubeconfig


class TargetError(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def embedded_target() -> AsyncIterator[EmbeddedTarget]:
    async with LeaseApiServer(users=[admin_user()]) as server:
        yield EmbeddedTarget(server)


@contextlib.asynccontextmanager
async def real_target() -> AsyncIterator[RealTarget]:
    """Start kube-apiserver with up.sh in a temporary directory; down.sh --wipe after."""
    scripts = shared_dir() / "kube-apiserver"
    up = scripts / "up.sh"
    if not up.is_file():
        raise TargetError(f"{up} does not exist (set LEADERELECT_SHARED_DIR?)")
    if shutil.which("etcd") is None:
        raise TargetError("etcd is not on PATH (apt-get install -y etcd-server)")
    state = Path(tempfile.mkdtemp(prefix="leaderelect-bench-apiserver-"))
    try:
        with anyio.fail_after(120):
            done = await anyio.run_process([str(up), str(state)], check=False)
        if done.returncode != 0:
            raise TargetError(f"{up} failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
        env: dict[str, str] = {}
        for line in (state / "env.sh").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        yield RealTarget(state, env["KUBE_APISERVER"])
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(60):
            await anyio.run_process([str(scripts / "down.sh"), str(state), "--wipe"], check=False)


@contextlib.asynccontextmanager
async def external_target(kubeconfig: Path) -> AsyncIterator[ExternalTarget]:
    if not await anyio.Path(kubeconfig).is_file():
        raise TargetError(f"--kubeconfig {kubeconfig}: no such file")
    yield ExternalTarget(kubeconfig)


def describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


Json = Any
