"""``leaderelect demo``, run as a user runs it: a subprocess whose output we read.

Each run uses short timings and a Lease name of its own; the candidates' pids are read from the
``started (pid N)`` lines, and afterwards every one of them must be gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

pytestmark = pytest.mark.slow

LEASE_DURATION = 2.0
TIMINGS = ["--lease-duration=2", "--renew-deadline=1.2", "--retry-period=0.2"]
"""Valid (2 > 1.2 + 0.2, 1.2 > 1.2 x 0.2) and short: a whole demo takes about 6 s."""
RUN_LIMIT = 45.0
"""Seconds a whole demo run may take in these tests (interpreter start-up included)."""

_STARTED = re.compile(r"^\s*[\d.]+s\s+(candidate-\d+)\s+started \(pid (\d+)\)$")
_SUMMARY_ROW = re.compile(
    r"^\s+(graceful|hard kill) \((SIGTERM|SIGKILL)\)\s+(candidate-\d+)\s+(candidate-\d+)"
    r"\s+(\d+\.\d+)s\s+([+-]\d+\.\d+)s$"
)


@dataclass
class _Output:
    """Lines of a stream as they arrive, with an event per new line."""

    lines: list[str] = field(default_factory=list)
    closed: bool = False
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def read_from(self, stream: ByteReceiveStream | None) -> None:
        assert stream is not None
        pending = ""
        async for chunk in TextReceiveStream(stream, errors="replace"):
            *lines, pending = (pending + chunk).split("\n")
            self.lines.extend(lines)
            self._notify()
        if pending:
            self.lines.append(pending)
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[list[str]], bool]) -> None:
        while not predicate(self.lines):
            if self.closed:
                pytest.fail("the demo ended before the expected output:\n" + self.text)
            await self._changed.wait()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> dict[int, str]:
        """Every candidate process started, as pid -> identity."""
        found = (_STARTED.match(line) for line in self.lines)
        return {int(m.group(2)): m.group(1) for m in found if m}


@dataclass
class _Demo:
    process: Process
    stdout: _Output
    stderr: _Output
    lease: str


@asynccontextmanager
async def _demo(*options: str) -> AsyncIterator[_Demo]:
    """``python -m leaderelect demo`` with short timings; killed if still running at the end."""
    lease = f"demo-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "leaderelect", "demo", *TIMINGS, f"--lease={lease}", *options]
    async with (
        await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as process,
        anyio.create_task_group() as tg,
    ):
        demo = _Demo(process, _Output(), _Output(), lease)
        tg.start_soon(demo.stdout.read_from, process.stdout)
        tg.start_soon(demo.stderr.read_from, process.stderr)
        try:
            yield demo
        finally:
            if process.returncode is None:
                process.kill()


def _leftover(pid: int, lease: str) -> bool:
    """True if ``pid`` is still one of this run's candidates (not gone, not reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to "does the pid exist at all"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return lease.encode() in cmdline


def _assert_no_leftovers(demo: _Demo, expected: int) -> None:
    pids = demo.stdout.pids()
    assert len(pids) == expected, demo.stdout.text
    left = [f"{who} (pid {pid})" for pid, who in pids.items() if _leftover(pid, demo.lease)]
    assert not left, f"candidate processes left behind: {left}"


def _assert_quiet(demo: _Demo) -> None:
    everything = demo.stdout.text + demo.stderr.text
    assert "Traceback" not in everything, everything
    assert demo.stderr.text == "", f"unexpected stderr:\n{demo.stderr.text}"


@pytest.mark.parametrize(
    ("candidates", "processes"),
    [(3, 3), (2, 3)],
    ids=["three candidates", "two candidates, the first leader restarted"],
)
async def test_demo_measures_a_graceful_and_a_hard_takeover(
    candidates: int, processes: int
) -> None:
    with anyio.fail_after(RUN_LIMIT):
        async with _demo(f"--candidates={candidates}", "--hold=0.5") as demo:
            code = await demo.process.wait()
            await demo.stdout.wait_for(lambda _: demo.stdout.closed)
            await demo.stderr.wait_for(lambda _: demo.stderr.closed)
    assert code == 0, demo.stdout.text + "\n" + demo.stderr.text
    _assert_quiet(demo)
    _assert_no_leftovers(demo, processes)

    output = demo.stdout.text
    assert f"leaderelect demo: {candidates} candidate processes" in output
    assert "SIGTERM -> candidate-" in output and "SIGKILL -> candidate-" in output
    rows = [m for m in map(_SUMMARY_ROW.match, demo.stdout.lines) if m]
    assert [(m.group(1), m.group(2)) for m in rows] == [
        ("graceful", "SIGTERM"),
        ("hard kill", "SIGKILL"),
    ], output
    graceful, hard = rows
    # The graceful stop releases the lease: a follower takes it at once, well within the
    # lease duration. The killed leader releases nothing: followers wait for expiry.
    graceful_seconds, hard_seconds = float(graceful.group(5)), float(hard.group(5))
    assert graceful_seconds < LEASE_DURATION / 2, output
    assert hard_seconds > LEASE_DURATION - 0.2, output
    assert hard_seconds > graceful_seconds
    assert float(hard.group(6)) == pytest.approx(hard_seconds - LEASE_DURATION, abs=0.0015)
    # The hard-killed leader is the one that took over from the gracefully stopped one.
    assert hard.group(3) == graceful.group(4)
    assert graceful.group(3) != graceful.group(4) and hard.group(3) != hard.group(4)
    # The watch saw each new holder and the measurement, on one line each.
    assert f"holder {graceful.group(4)}" in output and f"holder {hard.group(4)}" in output
    assert "took over" in output and "after the SIGTERM" in output and "after the SIGKILL" in output


async def test_ctrl_c_stops_every_candidate_gracefully() -> None:
    with anyio.fail_after(RUN_LIMIT):
        async with _demo("--hold=30") as demo:
            # "campaigning" comes once a candidate handles SIGTERM; before, SIGTERM kills it.
            await demo.stdout.wait_for(
                lambda lines: sum("campaigning for lease" in ln for ln in lines) == 3
            )
            demo.process.send_signal(signal.SIGINT)
            code = await demo.process.wait()
            await demo.stdout.wait_for(lambda _: demo.stdout.closed)
            await demo.stderr.wait_for(lambda _: demo.stderr.closed)
    assert code == 130, demo.stdout.text + "\n" + demo.stderr.text
    _assert_quiet(demo)
    _assert_no_leftovers(demo, 3)
    output = demo.stdout.text
    assert "SIGINT: stopping" in output
    assert output.count("exited with status 0") == 3, output
    assert "free (released by candidate-" in output
    assert output.rstrip().endswith("interrupted; every candidate has exited")


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux)")
async def test_candidates_stop_by_themselves_when_the_demo_is_killed() -> None:
    with anyio.fail_after(RUN_LIMIT):
        async with _demo("--hold=30") as demo:
            await demo.stdout.wait_for(
                lambda lines: sum("campaigning for lease" in ln for ln in lines) == 3
            )
            pids = demo.stdout.pids()
            # A pidfd becomes readable when its process exits, child of ours or not.
            pidfds = [os.pidfd_open(pid) for pid in pids]
            try:
                demo.process.kill()
                await demo.process.wait()
                for pidfd in pidfds:
                    await anyio.wait_readable(pidfd)
            finally:
                for pidfd in pidfds:
                    os.close(pidfd)
    _assert_no_leftovers(demo, 3)
