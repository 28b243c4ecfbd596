"""Child processes: starting one that cannot outlive us, signalling its group, telling its end.

``run`` starts CMD with the functions; the demo runs its candidates as
:class:`CandidateProcess`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Final, final

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskStatus
from anyio.streams.text import TextReceiveStream

__all__ = [
    "KILL_WAIT",
    "CandidateProcess",
    "cannot_run",
    "describe_exit",
    "exit_status",
    "guarded",
    "kill_leftovers",
    "signal_group",
]

logger = logging.getLogger(__name__)

KILL_WAIT: Final = 5.0
"""Seconds to wait for a process to die after SIGKILL before giving up on it."""

_ORPHAN_GUARD = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(128 + signal.SIGKILL)  # the wrapper died before the guard was in place
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"leaderelect run: cannot start {sys.argv[2]}: {exc}\\n")
    os._exit(127 if isinstance(exc, FileNotFoundError) else 126)
"""
"""Run before CMD, in CMD's process: on Linux, ask the kernel to SIGKILL CMD if the wrapper
dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)`` survives ``exec``), then become CMD."""


def guarded(command: Sequence[str]) -> list[str]:
    """The argv that runs ``command`` so that it cannot outlive us (where the OS allows)."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *command]


def cannot_run(program: str, path: str) -> str | None:
    """Why ``program`` cannot be executed (as ``execvp`` would look it up), or ``None``."""
    if os.sep in program:
        if not os.path.exists(program):
            return "not found"
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return "not executable"
        return None
    return None if shutil.which(program, path=path) else "not found"


def exit_status(returncode: int) -> int:
    """A shell's view of a process's end: its status, or 128 + N after signal N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    """How a process ended: ``exited with status 3``, ``was killed by SIGKILL (status 137)``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        how = signal.Signals(-returncode).name
    except ValueError:
        how = f"signal {-returncode}"
    return f"was killed by {how} (status {exit_status(returncode)})"


def signal_group(process: Process, signum: signal.Signals) -> None:
    """Send ``signum`` to the process group ``process`` leads, unless it has exited."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:  # the group is gone; the process itself is a zombie being reaped
        pass
    except PermissionError:  # the process changed its user; reach it at least
        process.send_signal(signum)


def kill_leftovers(process: Process, name: str) -> None:
    """SIGKILL what an exited ``process`` left running in its group: nothing may outlive it."""
    if process.returncode is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    else:
        logger.warning(
            "killed what %s (pid %d) left running in its process group", name, process.pid
        )


@final
class CandidateProcess:
    """One of the demo's candidates, as a child process whose lines are shown as they come.

    It runs in a session of its own, so that a terminal's Ctrl-C reaches only the demo, and
    its stdin is a pipe never written to: when the demo dies, even by SIGKILL, the candidate
    reads end of file and stops.
    """

    def __init__(
        self,
        identity: str,
        command: Sequence[str],
        show: Callable[[str], None],
        on_unexpected_exit: Callable[[CandidateProcess, str], None],
    ) -> None:
        self.identity = identity
        self._command = list(command)
        self._show_line = show
        self._on_unexpected_exit = on_unexpected_exit
        self._process: Process | None = None
        self._signalled = False
        self.ready = anyio.Event()
        """Set at the candidate's first line of output: it is connected and campaigning."""
        self.exited = anyio.Event()

    @property
    def running(self) -> bool:
        return self._process is not None and not self.exited.is_set()

    def send(self, signum: signal.Signals) -> None:
        if self._process is not None and self._process.returncode is None:
            self._signalled = True
            self._process.send_signal(signum)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the process, relay its output until it exits; kill it if cancelled first."""
        process = await anyio.open_process(
            self._command,
            stdin=subprocess.PIPE,  # never written: it closes when we die, and the child stops
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches only us; we stop the children
        )
        self._process = process
        self._show_line(f"started (pid {process.pid})")
        try:
            task_status.started()
            async with anyio.create_task_group() as relays:
                relays.start_soon(self._relay, process.stdout, True)
                relays.start_soon(self._relay, process.stderr, False)
            code = await process.wait()
            self._show_line(describe_exit(code))
            if not self._signalled:
                self._on_unexpected_exit(self, describe_exit(code))
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    with anyio.move_on_after(KILL_WAIT):
                        await process.wait()
                    self._show_line("killed (SIGKILL) while shutting down")
                with anyio.move_on_after(KILL_WAIT):
                    await process.aclose()
                self.exited.set()

    async def _relay(self, stream: ByteReceiveStream | None, is_stdout: bool) -> None:
        """Show each line under our identity; stdout's first line means we are ready."""
        if stream is None:
            return
        pending = ""
        try:
            async for chunk in TextReceiveStream(stream, errors="replace"):
                *lines, pending = (pending + chunk).split("\n")
                for line in lines:
                    self._show(line, is_stdout)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        if pending:
            self._show(pending, is_stdout)

    def _show(self, line: str, is_stdout: bool) -> None:
        if is_stdout:
            self.ready.set()
        self._show_line(line.rstrip())
