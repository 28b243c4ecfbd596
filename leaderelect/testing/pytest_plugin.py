"""pytest fixtures for leaderelect's in-process Lease API server.

Registered as the ``leaderelect`` ``pytest11`` entry point; importing it has no side effects.

- ``leaderelect_server``: a started :class:`~leaderelect.testing.LeaseApiServer` (function
  scope), stopped after the test.
- ``leaderelect_kubeconfig``: the path of its admin kubeconfig.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest_asyncio

from ._server import LeaseApiServer

__all__ = ["leaderelect_kubeconfig", "leaderelect_server"]


@pytest_asyncio.fixture
async def leaderelect_server() -> AsyncIterator[LeaseApiServer]:
    """A started in-process Lease API server with one ``admin`` user."""
    async with LeaseApiServer() as server:
        yield server


@pytest_asyncio.fixture
async def leaderelect_kubeconfig(leaderelect_server: LeaseApiServer) -> pathlib.Path:
    """The admin kubeconfig of ``leaderelect_server``."""
    return leaderelect_server.kubeconfig("admin")
