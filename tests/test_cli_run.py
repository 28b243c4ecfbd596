"""``leaderelect run``: CMD runs only while leading, is stopped on loss or signal, then released.

Every wrapper runs as a subprocess (``python -m leaderelect run``) against an in-process
:class:`~leaderelect.testing.LeaseApiServer`. Its CMD is a small Python child (``CHILD``) that
appends ``start``/``sigterm``/``stop`` lines to a record file and says ``started`` on stdout,
which the wrapper's stdout carries to the test. Tests wait on those lines and on the server's
own change signal (``wait_for_lease``), never on sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

from leaderelect import LeaseLock, LeaseRecord
from leaderelect._cli import main
from leaderelect._cli._run import EXIT_LEASE_LOST
from leaderelect.testing import LeaseApiServer

PYTHON_M = [sys.executable, "-m", "leaderelect"]
PY = Path(sys.executable).name
"""How the wrapper names a Python child in its lines (``python3``, ``python``...)."""
LEASE = "my-app"
FAST = ["--lease-duration", "4", "--renew-deadline", "2.5", "--retry-period", "0.5"]
"""Short timings (the demo's), so that a test waits seconds, not tens of seconds."""
BOUND = 25.0
"""Seconds any one step may take: interpreters start slowly on a loaded machine."""
SCENARIO = 50.0
"""Seconds a whole scenario of several steps may take (under pytest-timeout's 60)."""

CHILD = """\
import json, os, signal, sys

name, record, mode = sys.argv[1], sys.argv[2], sys.argv[3]


def note(event):
    with open(record, "a") as file:
        file.write(f"{event} {name} {os.getpid()}\\n")


def on_sigterm(signum, frame):
    note("sigterm")
    if mode != "stubborn":
        note("stop")
        sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
note("start")
env = {key: os.environ.get(key) for key in (
    "LEADERELECT_TOKEN", "LEADERELECT_IDENTITY", "LEADERELECT_LEASE")}
print(f"child {name} started pid={os.getpid()} env={json.dumps(env)}", flush=True)
if mode.startswith("exit="):
    sys.exit(int(mode.removeprefix("exit=")))
sys.stdin.read()  # the test's end of the pipe closes when the test ends: never an orphan
note("orphaned")
"""


class _Lines:
    """The lines of a byte stream, read on demand, kept for the failure message."""

    def __init__(self, stream: ByteReceiveStream | None) -> None:
        assert stream is not None
        self._chunks = TextReceiveStream(stream, errors="replace")
        self._pending = ""
        self._ready: list[str] = []
        self.seen: list[str] = []

    async def until(self, pattern: str) -> re.Match[str]:
        """Read until a line matches ``pattern``; fail if the stream ends first."""
        regex = re.compile(pattern)
        while True:
            while not self._ready:
                try:
                    chunk = await self._chunks.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    pytest.fail(f"no line matched {pattern!r} in:\n" + "\n".join(self.seen))
                *self._ready, self._pending = (self._pending + chunk).split("\n")
            line = self._ready.pop(0)
            self.seen.append(line)
            if match := regex.search(line):
                return match

    async def rest(self) -> list[str]:
        """Every line up to the end of the stream (after the process has exited)."""
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                *self._ready, self._pending = (self._pending + await self._chunks.receive()).split(
                    "\n"
                )
                self.seen.extend(self._ready)
                self._ready = []
        if self._pending:
            self.seen.append(self._pending)
            self._pending = ""
        return self.seen


@dataclass
class _Wrapper:
    process: Process
    stdout: _Lines
    stderr: _Lines

    async def exit_status(self) -> int:
        status = await self.process.wait()
        await self.stderr.rest()
        await self.stdout.rest()
        return status

    def explain(self) -> str:
        return (
            "--- stdout\n"
            + "\n".join(self.stdout.seen)
            + "\n--- stderr\n"
            + "\n".join(self.stderr.seen)
        )


@contextlib.asynccontextmanager
async def _wrapper(
    kubeconfig: Path, identity: str, child: Sequence[str], *options: str
) -> AsyncIterator[_Wrapper]:
    command = [
        *PYTHON_M,
        "run",
        "--lease",
        LEASE,
        "--identity",
        identity,
        "--kubeconfig",
        str(kubeconfig),
        *options,
        "--",
        *child,
    ]
    process = await anyio.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield _Wrapper(process, _Lines(process.stdout), _Lines(process.stderr))
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.aclose()


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """The file the children note their starts and stops in."""
    return tmp_path / "record.txt"


@pytest.fixture
def child_script(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD, encoding="utf-8")
    return path


def _child(script: Path, name: str, record: Path, mode: str = "polite") -> list[str]:
    return [sys.executable, str(script), name, str(record), mode]


def _events(record: Path) -> list[str]:
    """``"start a"``, ``"sigterm a"``... in order (pids dropped)."""
    if not record.exists():
        return []
    return [" ".join(line.split()[:2]) for line in record.read_text().splitlines()]


def _holders(server: LeaseApiServer) -> list[str | None]:
    """The Lease's successive holders, one entry per change."""
    changes: list[str | None] = []
    for write in server.writes:
        if write.name == LEASE and (not changes or changes[-1] != write.holder_after):
            changes.append(write.holder_after)
    return changes


def _holder(server: LeaseApiServer) -> str | None:
    lease = server.lease("default", LEASE)
    return None if lease is None else lease["spec"].get("holderIdentity")


async def _usurp(kubeconfig: Path, holder: str, duration: int) -> None:
    """Write another holder into the Lease, as a rival candidate taking it over would."""
    async with await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock:
        snapshot = await lock.get(timeout=5)
        assert snapshot is not None
        now = datetime.now(timezone.utc)
        record = LeaseRecord(holder, duration, now, now, snapshot.record.lease_transitions + 1)
        await lock.update(record, base=snapshot, timeout=5)


async def _assert_gone(pid: int) -> None:
    """The process has exited: it is gone, or a zombie that its new parent has yet to reap."""
    status = anyio.Path(f"/proc/{pid}/status")
    with contextlib.suppress(FileNotFoundError):
        assert "State:\tZ" in await status.read_text(), f"pid {pid} still runs"


# --------------------------------------------------------------------------------------------
# Leading, handing over, exiting
# --------------------------------------------------------------------------------------------


async def test_two_wrappers_run_one_child_at_a_time_and_hand_over_on_sigterm(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(SCENARIO):
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                _wrapper(kubeconfig, "a", _child(child_script, "a", record), *FAST)
            )
            await a.stdout.until(r"child a started")
            b = await stack.enter_async_context(
                _wrapper(kubeconfig, "b", _child(child_script, "b", record), *FAST)
            )
            await b.stderr.until(r"campaigning for lease default/my-app as b")
            assert _holder(leaderelect_server) == "a"
            assert _events(record) == ["start a"]

            a.process.send_signal(signal.SIGTERM)
            assert await a.exit_status() == 128 + signal.SIGTERM, a.explain()
            await b.stdout.until(r"child b started")
            assert _events(record) == ["start a", "sigterm a", "stop a", "start b"]
            assert any("released lease default/my-app" in line for line in a.stderr.seen)
            # a released the lease before b took it: b did not wait for it to expire.
            assert _holders(leaderelect_server) == ["a", "", "b"]

            b.process.send_signal(signal.SIGTERM)
            assert await b.exit_status() == 143, b.explain()
    assert _events(record)[-2:] == ["sigterm b", "stop b"]
    assert _holder(leaderelect_server) == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_sigkilled_wrappers_child_dies_with_it_and_a_follower_takes_over(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(SCENARIO):
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                _wrapper(kubeconfig, "a", _child(child_script, "a", record), *FAST)
            )
            pid = int((await a.stdout.until(r"child a started pid=(\d+)")).group(1))
            b = await stack.enter_async_context(
                _wrapper(kubeconfig, "b", _child(child_script, "b", record), *FAST)
            )
            await b.stderr.until(r"campaigning for lease default/my-app as b")
            a.process.kill()
            assert await a.exit_status() == -signal.SIGKILL
            # Nothing was released: b takes over when the lease expires, by then a's child
            # has died with its wrapper.
            await b.stdout.until(r"child b started")
            await _assert_gone(pid)
            b.process.send_signal(signal.SIGTERM)
            assert await b.exit_status() == 143, b.explain()
    assert _events(record) == ["start a", "start b", "sigterm b", "stop b"]
    assert _holders(leaderelect_server) == ["a", "b", ""]


async def test_child_gets_the_fencing_token_identity_and_lease_in_its_environment(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "pod-a", _child(child_script, "a", record, "exit=0")) as a:
            line = await a.stdout.until(r"env=(.*)$")
            assert await a.exit_status() == 0, a.explain()
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None
    uid = lease["metadata"]["uid"]
    assert json.loads(line.group(1)) == {
        "LEADERELECT_TOKEN": f"{uid}:0",
        "LEADERELECT_IDENTITY": "pod-a",
        "LEADERELECT_LEASE": "default/my-app",
    }


async def test_child_exit_status_propagates_and_the_lease_is_released(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "a", _child(child_script, "a", record, "exit=7")) as a:
            assert await a.exit_status() == 7, a.explain()
    assert _holders(leaderelect_server) == ["a", ""]
    lines = a.stderr.seen
    assert any(f"{PY} exited with status 7" in line for line in lines), a.explain()
    assert any("released lease default/my-app" in line for line in lines), a.explain()
    assert lines[-1] == "leaderelect run: exiting with status 7"
    assert "Traceback" not in a.explain()


async def test_command_not_found_exits_127_and_releases_the_lease(
    leaderelect_server: LeaseApiServer, tmp_path: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    missing = str(tmp_path / "no-such-command")
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "a", [missing]) as a:
            assert await a.exit_status() == 127, a.explain()
    assert any(f"cannot start {missing}" in line for line in a.stderr.seen), a.explain()
    assert _holders(leaderelect_server) == ["a", ""]


async def test_what_the_child_leaves_in_its_process_group_is_killed(
    leaderelect_server: LeaseApiServer, tmp_path: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    script = "sleep 300 & echo grandchild $!"
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "a", ["sh", "-c", script]) as a:
            pid = int((await a.stdout.until(r"grandchild (\d+)")).group(1))
            assert await a.exit_status() == 0, a.explain()
    await _assert_gone(pid)


# --------------------------------------------------------------------------------------------
# Losing the lease
# --------------------------------------------------------------------------------------------


async def test_loss_sends_sigterm_then_sigkill_after_the_grace_period(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    grace = 1.0
    child = _child(child_script, "a", record, "stubborn")  # ignores SIGTERM
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "a", child, *FAST, "--grace-period", str(grace)) as a:
            pid = int((await a.stdout.until(r"child a started pid=(\d+)")).group(1))
            await _usurp(kubeconfig, "usurper", duration=30)
            usurped = anyio.current_time()
            await a.stderr.until(r"lost the lease \(another holder was observed\)")
            assert await a.exit_status() == EXIT_LEASE_LOST, a.explain()
            took = anyio.current_time() - usurped
    stderr = "\n".join(a.stderr.seen)
    assert f"stopping {PY} (pid" in stderr and "SIGTERM, then SIGKILL after 1s" in stderr
    assert f"{PY} did not stop within 1s; sending SIGKILL" in stderr
    assert f"{PY} was killed by SIGKILL (status 137)" in stderr
    assert stderr.endswith("the lease was lost (--recampaign campaigns again instead)")
    assert _events(record) == ["start a", "sigterm a"]
    assert took >= grace, f"SIGKILL came {took:.3f}s after the loss, before the grace period"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed, and reaped by the wrapper before it exited
    assert _holder(leaderelect_server) == "usurper", "a loser must not release someone's lease"


async def test_recampaign_starts_the_child_again_after_a_loss(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    child = _child(child_script, "a", record)
    with anyio.fail_after(SCENARIO):
        async with _wrapper(kubeconfig, "a", child, *FAST, "--recampaign") as a:
            await a.stdout.until(r"child a started")
            # The usurper never renews: its 1 s lease expires, and a campaigns its way back.
            await _usurp(kubeconfig, "usurper", duration=1)
            await a.stdout.until(r"child a started")
            assert _events(record) == ["start a", "sigterm a", "stop a", "start a"]
            lease = leaderelect_server.lease("default", LEASE)
            assert lease is not None and lease["spec"]["leaseTransitions"] == 2
            a.process.send_signal(signal.SIGINT)
            assert await a.exit_status() == 130, a.explain()
    assert _holders(leaderelect_server) == ["a", "usurper", "a", ""]


# --------------------------------------------------------------------------------------------
# Signals to the wrapper
# --------------------------------------------------------------------------------------------


async def test_sigterm_stops_the_child_releases_and_exits_143(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "a", _child(child_script, "a", record)) as a:
            await a.stdout.until(r"child a started")
            a.process.send_signal(signal.SIGTERM)
            assert await a.exit_status() == 143, a.explain()
    assert _events(record) == ["start a", "sigterm a", "stop a"]
    assert _holders(leaderelect_server) == ["a", ""]
    assert a.stderr.seen[-3:] == [
        f"leaderelect run: {PY} exited with status 0",
        "leaderelect run: released lease default/my-app",
        "leaderelect run: exiting with status 143 (SIGTERM)",
    ]


async def test_a_second_signal_kills_the_child_without_waiting_out_the_grace_period(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    child = _child(child_script, "a", record, "stubborn")
    with anyio.fail_after(BOUND):  # well under the 600 s grace period
        async with _wrapper(kubeconfig, "a", child, "--grace-period", "600") as a:
            await a.stdout.until(r"child a started")
            a.process.send_signal(signal.SIGINT)
            await a.stderr.until(rf"SIGINT received; stopping {PY}")
            a.process.send_signal(signal.SIGINT)
            assert await a.exit_status() == 130, a.explain()
    assert any(f"killing {PY} now" in line for line in a.stderr.seen), a.explain()
    assert _holders(leaderelect_server) == ["a", ""]


async def test_a_signal_while_campaigning_exits_without_starting_the_child(
    leaderelect_server: LeaseApiServer, child_script: Path, record: Path
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    async with await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock:
        now = datetime.now(timezone.utc)
        await lock.create(LeaseRecord("someone", 3600, now, now, 0), timeout=5)
    with anyio.fail_after(BOUND):
        async with _wrapper(kubeconfig, "a", _child(child_script, "a", record)) as a:
            await a.stderr.until(r"campaigning for lease default/my-app as a")
            a.process.send_signal(signal.SIGTERM)
            assert await a.exit_status() == 143, a.explain()
    assert _events(record) == []
    assert _holder(leaderelect_server) == "someone"
    assert a.stderr.seen[-2:] == [
        "leaderelect run: SIGTERM received; no longer campaigning",
        "leaderelect run: exiting with status 143 (SIGTERM)",
    ]


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--", "true"], "the following arguments are required: --lease"),
        (["run", "--lease", "x"], "give the command to run after --"),
        (["run", "--lease", "x", "--"], "give the command to run after --"),
        (
            ["run", "--lease", "x", "--grace-period", "-1", "--", "true"],
            "argument --grace-period: must be 0 or more seconds",
        ),
        (
            ["run", "--lease", "x", "--lease-duration", "2", "--renew-deadline", "3", "--", "t"],
            "--lease-duration (2s) must be greater than --renew-deadline + --retry-period",
        ),
        (["run", "--lease", "Not_A_Lease", "--", "true"], "'Not_A_Lease' is not a valid"),
        (["run", "--lease", "x", "-n", "No_Ns", "--", "true"], "'No_Ns' is not a valid"),
        (["run", "--lease", "x", "--identity", " ", "--", "true"], "identity must be a non"),
    ],
    ids=[
        "no lease",
        "no command",
        "nothing after --",
        "negative grace period",
        "renew deadline longer than the lease",
        "invalid lease name",
        "invalid namespace",
        "blank identity",
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: leaderelect run")
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_a_bad_kubeconfig_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.kubeconfig"
    assert main(["run", "--lease", "x", "--kubeconfig", str(missing), "--", "true"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"leaderelect run: error: no kubeconfig found at '{missing}'\n"


def test_a_garbled_kubeconfig_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbled = tmp_path / "garbled.kubeconfig"
    garbled.write_text("apiVersion: v1\nkind: Config\nclusters: [\n")
    assert main(["run", "--lease", "x", "--kubeconfig", str(garbled), "--", "true"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"leaderelect run: error: cannot load kubeconfig '{garbled}'")
    assert err.count("\n") == 1 and "Traceback" not in err
