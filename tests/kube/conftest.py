"""Fixtures for the LeaseLock tests: locks closed at teardown, and the scripted server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from _kube import write_kubeconfig
from aiohttp import web

from leaderelect._kube import LeaseLock
from leaderelect.testing import LeaseApiServer

from ._support import NAME, LockFactory, ScriptedServer


@pytest.fixture
async def make_lock() -> AsyncIterator[LockFactory]:
    """``await make_lock(kubeconfig, name, namespace=None)``: a lock closed at teardown."""
    async with AsyncExitStack() as stack:

        async def make(kubeconfig: Path, name: str, namespace: str | None = None) -> LeaseLock:
            lock = await LeaseLock.from_kubeconfig(name, namespace, config_file=kubeconfig)
            stack.push_async_callback(lock.aclose)
            return lock

        yield make


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def scripted_lock(
    scripted: ScriptedServer, tmp_path: Path, make_lock: LockFactory
) -> LeaseLock:
    kubeconfig = write_kubeconfig(
        tmp_path / "scripted.kubeconfig", url=scripted.url, token="scripted-token", user="test"
    )
    return await make_lock(kubeconfig, NAME)


@pytest.fixture
async def embedded_lock(leaderelect_server: LeaseApiServer, make_lock: LockFactory) -> LeaseLock:
    return await make_lock(leaderelect_server.kubeconfig("admin"), NAME)
