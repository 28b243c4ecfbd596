"""Test files that use leaderelect's pytest fixtures, for pytest runs in a scratch directory."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

# An election on the fixtures' server, shared by the anyio and the pytest-asyncio variants.
_ELECTION = """
from pathlib import Path

import pytest

from leaderelect import LeaderElector, LeaseLock
from leaderelect.testing import LeaseApiServer


async def elect(server: LeaseApiServer, kubeconfig: Path) -> None:
    assert kubeconfig == server.kubeconfig("admin")
    async with await LeaseLock.from_kubeconfig("job", config_file=kubeconfig) as lock:
        elector = LeaderElector(
            lock, identity="a", lease_duration=2.0, renew_deadline=1.5, retry_period=0.2
        )
        async with elector.leading():
            lease = server.lease("default", "job")
            assert lease is not None and lease["spec"]["holderIdentity"] == "a"
"""

ANYIO_TESTS = (
    _ELECTION
    + """

@pytest.mark.anyio
async def test_anyio(leaderelect_server: LeaseApiServer, leaderelect_kubeconfig: Path) -> None:
    await elect(leaderelect_server, leaderelect_kubeconfig)


@pytest.mark.anyio
async def test_anyio_server_only(leaderelect_server: LeaseApiServer) -> None:
    await elect(leaderelect_server, leaderelect_server.kubeconfig())
"""
)

ASYNCIO_TESTS = (
    _ELECTION
    + """

@pytest.mark.asyncio
async def test_asyncio(leaderelect_server: LeaseApiServer, leaderelect_kubeconfig: Path) -> None:
    await elect(leaderelect_server, leaderelect_kubeconfig)
"""
)

UNRELATED_TESTS = """
def test_something_else() -> None:
    assert sum([1, 2]) == 3
"""

# Pins the rootdir to the scratch directory, away from the repository's pyproject.toml.
PYTEST_INI = "[pytest]\n"


def run_pytest(
    python: str | Path, directory: Path, files: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Write ``files`` into ``directory`` and run ``python -m pytest`` there."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text(PYTEST_INI)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
