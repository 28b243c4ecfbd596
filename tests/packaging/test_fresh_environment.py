"""A fresh virtualenv with leaderelect (built from this checkout, with its dependencies from the
package index) and pytest, and nothing else: pytest runs an unrelated project's tests, and
anyio's pytest plugin, which comes with leaderelect, runs tests that use its fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _plugin_cases import ANYIO_TESTS, UNRELATED_TESTS, run_pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new virtualenv with ``pip install <checkout> pytest`` and no extras."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT), "pytest"],
        check=True,
        timeout=540,
    )
    return python


def _installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {line.split("==")[0].lower().replace("_", "-") for line in listing.splitlines()}


def test_an_unrelated_project_runs_its_tests(bare_python: Path, tmp_path: Path) -> None:
    installed = _installed(bare_python)
    assert {"leaderelect", "pytest", "anyio"} <= installed
    assert "pytest-asyncio" not in installed
    result = run_pytest(bare_python, tmp_path, {"test_unrelated.py": UNRELATED_TESTS})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_anyio_tests_use_the_fixtures(bare_python: Path, tmp_path: Path) -> None:
    result = run_pytest(bare_python, tmp_path, {"test_anyio_case.py": ANYIO_TESTS})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
