"""Fixtures for tests that need a Kubernetes API.

``kube`` (function scope) runs a test once per server and yields a :class:`_kube.KubeTarget`:

* ``[embedded]`` — a fresh :class:`leaderelect.testing.LeaseApiServer` with the users admin,
  elector and reader;
* ``[real]`` — kube-apiserver v1.36 + etcd from ``../shared/kube-apiserver`` (one per session,
  marked ``real_server``; skipped where it is not installed, a failure instead when
  ``LEADERELECT_REQUIRE_REAL_SERVER=1``);
* ``[external]`` — the cluster in ``$LEADERELECT_KUBECONFIG``, when set (admin user only).

Usage from any test module::

    async def test_something(kube: KubeTarget, lease_name: str) -> None:
        api = await kube.coordination("elector")      # CoordinationV1Api from a kubeconfig
        raw = kube.raw("reader")                      # aiohttp with reader's token
        ...

``lease_name`` is a name no other test uses; leases created under names from
``kube.lease_name()`` are deleted after the test on shared servers.
``kube.expire_watch_history()`` makes every resourceVersion so far too old to watch from
(410 Expired): it compacts the embedded server, restarts the real kube-apiserver (about 3 s),
and skips on external clusters.

``kube_pair`` yields ``(embedded, real)`` side by side for tests that compare the two directly
(``tests/conformance/test_differential.py``); it needs the real server like ``[real]`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from _kube import (
    USERS,
    KubeTarget,
    RealServer,
    RealServerError,
    env_flag,
    external_target_parts,
    real_server_missing,
)

from leaderelect.testing import LeaseApiServer, standard_users

REQUIRE_REAL_SERVER = "LEADERELECT_REQUIRE_REAL_SERVER"
EXTERNAL_KUBECONFIG = "LEADERELECT_KUBECONFIG"


def _variants() -> list[Any]:
    variants = [
        pytest.param("embedded", id="embedded"),
        pytest.param("real", id="real", marks=pytest.mark.real_server),
    ]
    if os.environ.get(EXTERNAL_KUBECONFIG):
        variants.append(pytest.param("external", id="external", marks=pytest.mark.real_server))
    return variants


def _unavailable(reason: str) -> NoReturn:
    if env_flag(REQUIRE_REAL_SERVER):
        pytest.fail(f"{reason} [{REQUIRE_REAL_SERVER}=1 makes this a failure]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """kube-apiserver + etcd for the whole session (started on first use, about 4 s)."""
    missing = real_server_missing()
    if missing is not None:
        _unavailable(missing)
    try:
        server = RealServer.start(tmp_path_factory.mktemp("kube-apiserver"))
    except (RealServerError, OSError) as exc:
        _unavailable(f"real kube-apiserver not available: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=_variants())
async def kube(request: pytest.FixtureRequest) -> AsyncIterator[KubeTarget]:
    """The Kubernetes API under test: ``embedded``, ``real`` or ``external``."""
    kind: str = request.param
    test_name = request.node.originalname.removeprefix("test_")
    if kind == "embedded":
        async with (
            LeaseApiServer(users=standard_users()) as server,
            _closing(_embedded_target(server, test_name)) as target,
        ):
            yield target
    elif kind == "real":
        real: RealServer = request.getfixturevalue("real_server")
        async with _closing(_real_target(real, test_name)) as target:
            yield target
    else:
        kubeconfig = Path(os.environ[EXTERNAL_KUBECONFIG])
        url, ca, tokens = await external_target_parts(kubeconfig)
        external = KubeTarget(
            "external",
            url=lambda: url,
            ca_file=lambda: ca,
            kubeconfigs={"admin": kubeconfig},
            tokens=lambda: tokens,
            test_name=test_name,
        )
        async with _closing(external) as target:
            yield target


@pytest.fixture
def lease_name(kube: KubeTarget) -> str:
    """A lease name unique to this test (deleted afterwards on shared servers)."""
    return kube.lease_name()


@pytest.fixture
async def kube_pair(
    request: pytest.FixtureRequest, real_server: RealServer
) -> AsyncIterator[tuple[KubeTarget, KubeTarget]]:
    """``(embedded, real)`` side by side, for tests that compare their answers directly."""
    test_name = request.node.originalname.removeprefix("test_")
    async with (
        LeaseApiServer(users=standard_users()) as server,
        _closing(_embedded_target(server, test_name)) as embedded,
        _closing(_real_target(real_server, test_name)) as real,
    ):
        yield embedded, real


@contextlib.asynccontextmanager
async def _closing(target: KubeTarget) -> AsyncIterator[KubeTarget]:
    try:
        yield target
    finally:
        await target.aclose()


def _embedded_target(server: LeaseApiServer, test_name: str) -> KubeTarget:
    async def compact() -> None:
        server.compact()

    return KubeTarget(
        "embedded",
        url=lambda: server.url,
        ca_file=lambda: None,
        kubeconfigs={user: server.kubeconfig(user) for user in USERS},
        tokens=lambda: {user: server.token(user) for user in USERS},
        test_name=test_name,
        server=server,
        expire_history=compact,
    )


def _real_target(real: RealServer, test_name: str) -> KubeTarget:
    async def restart() -> None:
        await asyncio.to_thread(real.restart_apiserver)

    return KubeTarget(
        "real",
        url=lambda: real.url,
        ca_file=lambda: real.ca_file,
        kubeconfigs={user: real.kubeconfig(user) for user in USERS},
        tokens=lambda: real.tokens,
        test_name=test_name,
        expire_history=restart,
    )
