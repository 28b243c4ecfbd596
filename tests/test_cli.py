"""The ``leaderelect`` command: help, version, argument errors, and ``serve``.

Parsing is tested in-process through ``main()``; the entry points (``python -m leaderelect``,
the ``leaderelect`` console script) and ``serve`` run as subprocesses.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.config
import pytest
from anyio.abc import ByteReceiveStream
from anyio.streams.text import TextReceiveStream

import leaderelect
from leaderelect._cli import main

PYTHON_M = [sys.executable, "-m", "leaderelect"]


def _exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


def test_version_names_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"leaderelect {leaderelect.__version__}\n"


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], ["demo", "serve", "--version"]),
        (["demo"], ["--candidates", "--lease-duration", "--renew-deadline", "--retry-period"]),
        (["serve"], ["--host", "--port", "--verbose"]),
    ],
    ids=["leaderelect --help", "leaderelect demo --help", "leaderelect serve --help"],
)
def test_help_describes_each_command(
    argv: list[str], mentions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: leaderelect {' '.join(argv)}".rstrip())
    for option in mentions:
        assert option in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["demo", "--candidates", "1"], "argument --candidates: must be at least 2"),
        (["demo", "--candidates", "two"], "argument --candidates: expected a whole number"),
        (["demo", "--lease-duration", "0"], "argument --lease-duration: must be more than 0"),
        (["demo", "--retry-period", "soon"], "argument --retry-period: expected a number"),
        (["demo", "--hold", "-1"], "argument --hold: must be 0 or more seconds"),
        (
            ["demo", "--lease-duration", "2", "--renew-deadline", "3"],
            "--lease-duration (2s) must be greater than --renew-deadline + --retry-period",
        ),
        (["demo", "--lease", "Not_A_Lease"], "'Not_A_Lease' is not a valid Lease name"),
        (["serve", "--port", "70000"], "argument --port: must be between 0 and 65535"),
    ],
    ids=[
        "no command",
        "unknown command",
        "unknown option",
        "one candidate",
        "candidates not a number",
        "zero lease duration",
        "retry period not a number",
        "negative hold",
        "renew deadline longer than the lease",
        "invalid lease name",
        "port out of range",
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: leaderelect")
    assert message in captured.err
    assert "Traceback" not in captured.err


async def test_python_m_leaderelect_is_the_same_command() -> None:
    with anyio.fail_after(30):
        result = await anyio.run_process([*PYTHON_M, "--version"])
    assert result.stdout.decode() == f"leaderelect {leaderelect.__version__}\n"


async def test_console_script_is_installed() -> None:
    script = shutil.which("leaderelect", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the leaderelect console script is not installed next to this interpreter")
    with anyio.fail_after(30):
        result = await anyio.run_process([script, "demo", "--candidates", "1"], check=False)
    assert result.returncode == 2
    assert b"argument --candidates: must be at least 2" in result.stderr
    assert b"Traceback" not in result.stderr


class _LineReader:
    """Lines of a byte stream; keeps what it has read past the line it returned."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._chunks = TextReceiveStream(stream)
        self._lines: list[str] = []
        self._pending = ""
        self.seen: list[str] = []

    async def until(self, pattern: re.Pattern[str]) -> str:
        """Read lines until one matches ``pattern``; returns the match's first group."""
        while True:
            while not self._lines:
                try:
                    chunk = await self._chunks.receive()
                except anyio.EndOfStream:
                    pytest.fail(f"no line matched {pattern.pattern!r}:\n" + "\n".join(self.seen))
                *self._lines, self._pending = (self._pending + chunk).split("\n")
            line = self._lines.pop(0)
            self.seen.append(line)
            if match := pattern.search(line):
                return match.group(1)


async def test_serve_prints_a_kubeconfig_that_kubernetes_asyncio_can_use() -> None:
    with anyio.fail_after(30):
        async with await anyio.open_process(
            [*PYTHON_M, "serve", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as process:
            assert process.stdout is not None and process.stderr is not None
            try:
                stdout = _LineReader(process.stdout)
                url = await stdout.until(re.compile(r"listening on (\S+)"))
                path = Path(await stdout.until(re.compile(r"admin kubeconfig:\s+(\S+)")))
                assert await anyio.Path(path).is_file()

                configuration = kubernetes_asyncio.client.Configuration()
                await kubernetes_asyncio.config.load_kube_config(
                    config_file=str(path), client_configuration=configuration, persist_config=False
                )
                host = configuration.host
                assert host is not None and host.startswith(url), host
                async with kubernetes_asyncio.client.ApiClient(configuration) as api:
                    leases = await kubernetes_asyncio.client.CoordinationV1Api(
                        api
                    ).list_namespaced_lease("default")
                assert leases.items == []

                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            finally:  # a failed assertion must not leave the server running (and hang __aexit__)
                if process.returncode is None:
                    process.kill()
            stderr = b"".join([chunk async for chunk in process.stderr]).decode()
    assert stderr == ""
    assert "Traceback" not in "\n".join(stdout.seen)
    assert not await anyio.Path(path).exists(), "serve should remove its kubeconfigs at exit"


async def test_serve_reports_a_port_in_use_without_a_traceback() -> None:
    with anyio.fail_after(30):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            result = await anyio.run_process([*PYTHON_M, "serve", "--port", str(port)], check=False)
    assert result.returncode == 1
    assert result.stdout == b""
    error = result.stderr.decode()
    assert error.startswith(f"leaderelect serve: error: cannot listen on 127.0.0.1 port {port}")
    assert "Traceback" not in error
