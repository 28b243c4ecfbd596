"""pytest fixtures for leaderelect's in-process Lease API server.

Registered as the ``leaderelect`` ``pytest11`` entry point, so it loads in every pytest run of an
environment where leaderelect is installed. Loading it imports nothing beyond pytest and the
standard library: projects that never use the fixtures pay nothing, and a missing test plugin
(pytest-asyncio, say) breaks nothing.

- ``leaderelect_server``: a started :class:`~leaderelect.testing.LeaseApiServer` (function
  scope) with one ``admin`` user, stopped after the test.
- ``leaderelect_kubeconfig``: the path of its admin kubeconfig.

The server runs on the event loop of the test that uses it, under either async test plugin:

- anyio's (installed with leaderelect): tests marked ``@pytest.mark.anyio`` on the ``asyncio``
  backend (the server is built on aiohttp, so not on trio);
- pytest-asyncio's: tests it runs, in strict mode (``@pytest.mark.asyncio``) or auto mode.

Each test gets the variant of the plugin that runs it, so one project can use both.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._server import LeaseApiServer

__all__ = ["leaderelect_kubeconfig", "leaderelect_server"]

# The name under which the pytest-asyncio variant registers, when pytest-asyncio is loaded.
_ASYNCIO_FIXTURES = "leaderelect.testing._pytest_asyncio_fixtures"


def _pytest_asyncio_loaded(config: pytest.Config) -> bool:
    return any(
        getattr(plugin, "__name__", "").split(".")[0] == "pytest_asyncio"
        for plugin in config.pluginmanager.get_plugins()
    )


def _pytest_asyncio_auto_mode(config: pytest.Config) -> bool:
    if not config.pluginmanager.has_plugin(_ASYNCIO_FIXTURES):
        return False
    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return str(mode) == "auto"


def pytest_configure(config: pytest.Config) -> None:
    """Register the pytest-asyncio variant of the server fixture where pytest-asyncio is loaded."""
    if _pytest_asyncio_loaded(config) and not config.pluginmanager.has_plugin(_ASYNCIO_FIXTURES):
        from . import _pytest_asyncio_fixtures

        config.pluginmanager.register(_pytest_asyncio_fixtures, _ASYNCIO_FIXTURES)


@contextlib.asynccontextmanager
async def _serve_for_test() -> AsyncIterator[LeaseApiServer]:
    """The body shared by every variant: a started server, stopped afterwards."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.fail(
            "leaderelect_server runs on asyncio (its server is built on aiohttp); "
            "this test runs on another event loop (anyio_backend 'trio'?)",
            pytrace=False,
        )
    from ._server import LeaseApiServer

    async with LeaseApiServer() as server:
        yield server


@pytest.fixture
async def _leaderelect_server_anyio() -> AsyncIterator[LeaseApiServer]:
    """The variant run by anyio's pytest plugin (tests that use ``anyio_backend``)."""
    async with _serve_for_test() as server:
        yield server


@pytest.fixture
def leaderelect_server(request: pytest.FixtureRequest) -> LeaseApiServer:
    """A started in-process Lease API server with one ``admin`` user, stopped after the test.

    It runs on the test's event loop: use it from ``async def`` tests run by anyio's pytest
    plugin (``@pytest.mark.anyio``, asyncio backend) or by pytest-asyncio.
    """
    if "anyio_backend" in request.fixturenames:
        if _pytest_asyncio_auto_mode(request.config):
            # pytest-asyncio would start the server on its own loop, not on the test's: hang.
            pytest.fail(
                f"{request.node.name} is an anyio test, but pytest-asyncio's auto mode runs "
                "every async fixture on pytest-asyncio's event loop, not on the test's: use "
                "asyncio_mode = strict where anyio and pytest-asyncio tests meet",
                pytrace=False,
            )
        variant = "_leaderelect_server_anyio"
    elif request.config.pluginmanager.has_plugin(_ASYNCIO_FIXTURES):
        variant = "_leaderelect_server_asyncio"
    else:
        pytest.fail(
            f"{request.node.name} uses leaderelect_server, an async fixture, but no async test "
            "plugin runs this test: mark it @pytest.mark.anyio (anyio's pytest plugin comes "
            "with leaderelect), or install pytest-asyncio and mark it @pytest.mark.asyncio",
            pytrace=False,
        )
    server: LeaseApiServer = request.getfixturevalue(variant)
    return server


@pytest.fixture
def leaderelect_kubeconfig(leaderelect_server: LeaseApiServer) -> pathlib.Path:
    """The admin kubeconfig of ``leaderelect_server`` (plain HTTP, namespace ``default``)."""
    return leaderelect_server.kubeconfig("admin")
