"""The pytest-asyncio variant of ``leaderelect_server``.

Imported and registered by :mod:`leaderelect.testing.pytest_plugin` only where pytest-asyncio is
loaded; nothing else may import this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

from .pytest_plugin import _serve_for_test

if TYPE_CHECKING:
    from ._server import LeaseApiServer

__all__ = ["_leaderelect_server_asyncio"]


@pytest_asyncio.fixture
async def _leaderelect_server_asyncio() -> AsyncIterator[LeaseApiServer]:
    """The variant run by pytest-asyncio (strict or auto mode)."""
    async with _serve_for_test() as server:
        yield server
