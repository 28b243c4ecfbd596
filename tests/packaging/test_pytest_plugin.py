"""leaderelect's pytest plugin loads everywhere pytest does, and its fixtures run under anyio's
pytest plugin and under pytest-asyncio alike (each test gets the variant of the plugin that runs
it). Each case is a pytest run in a scratch directory with this environment's Python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _plugin_cases import ANYIO_TESTS, ASYNCIO_TESTS, UNRELATED_TESTS, run_pytest


def _passed(result: subprocess.CompletedProcess[str], count: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{count} passed" in result.stdout, result.stdout


def test_the_plugin_module_loads_without_pytest_asyncio() -> None:
    # pytest loads the plugin in every run where leaderelect is installed, test plugins or not.
    code = (
        "import sys\n"
        "sys.modules['pytest_asyncio'] = None  # as if it were not installed\n"
        "import leaderelect.testing.pytest_plugin as plugin\n"
        "assert 'pytest_asyncio' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "assert set(plugin.__all__) == {'leaderelect_server', 'leaderelect_kubeconfig'}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_anyio_tests_use_the_fixtures_without_pytest_asyncio(tmp_path: Path) -> None:
    result = run_pytest(
        sys.executable,
        tmp_path,
        {"test_anyio_case.py": ANYIO_TESTS, "test_other.py": UNRELATED_TESTS},
        "-p",
        "no:asyncio",
    )
    _passed(result, 3)


def test_anyio_and_pytest_asyncio_tests_share_a_run_in_strict_mode(tmp_path: Path) -> None:
    result = run_pytest(
        sys.executable,
        tmp_path,
        {"test_anyio_case.py": ANYIO_TESTS, "test_asyncio_case.py": ASYNCIO_TESTS},
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    _passed(result, 3)


def test_pytest_asyncio_auto_mode_runs_the_fixtures(tmp_path: Path) -> None:
    unmarked = ASYNCIO_TESTS.replace("@pytest.mark.asyncio\n", "")
    result = run_pytest(
        sys.executable,
        tmp_path,
        {"test_auto_case.py": unmarked},
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    _passed(result, 1)


def test_an_anyio_test_under_auto_mode_is_told_why_it_cannot_have_the_server(
    tmp_path: Path,
) -> None:
    # pytest-asyncio's auto mode starts every async fixture on its own loop; the anyio test
    # would wait forever on a server whose loop is not running.
    result = run_pytest(
        sys.executable,
        tmp_path,
        {"test_anyio_case.py": ANYIO_TESTS},
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "--timeout=60",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "use asyncio_mode = strict" in result.stdout, result.stdout


def test_a_test_no_async_plugin_runs_is_told_what_to_do(tmp_path: Path) -> None:
    sync_test = "def test_sync(leaderelect_kubeconfig):\n    pass\n"
    result = run_pytest(
        sys.executable, tmp_path, {"test_sync_case.py": sync_test}, "-p", "no:asyncio"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mark it @pytest.mark.anyio" in result.stdout, result.stdout


def test_the_fixtures_are_listed_with_their_docs(tmp_path: Path) -> None:
    result = run_pytest(sys.executable, tmp_path, {}, "--fixtures", "-p", "no:asyncio")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "leaderelect_server -- " in result.stdout, result.stdout
    assert "leaderelect_kubeconfig -- " in result.stdout, result.stdout
