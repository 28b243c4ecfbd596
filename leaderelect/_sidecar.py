"""``leaderelect run``: run a command only while this process leads a Lease.

The command (CMD) is started inside the body of :meth:`LeaderElector.leading`, so it inherits
that block's contract:

1. CMD starts only once this candidate holds the lease, with the term in its environment
   (``LEADERELECT_TOKEN``, ``LEADERELECT_IDENTITY``, ``LEADERELECT_LEASE``);
2. when the lease is lost (another holder seen, or no renewal before the renew deadline), CMD's
   process group gets SIGTERM, then SIGKILL once the grace period has passed, and the wrapper
   waits for CMD to exit before it leaves the block;
3. the lease is released when ``leading()`` exits, which is after the block, so after CMD.

When CMD exits by itself, the wrapper releases the lease and exits with CMD's status. On
SIGTERM or SIGINT it stops CMD the same way, releases, and exits with ``128 + signal``; a second
signal skips the rest of the grace period. While CMD shuts down the lease is still renewed, so
it never runs unleased on a requested stop. After a loss the wrapper exits with
:data:`EXIT_LEASE_LOST` (75) unless ``recampaign`` is set, in which case it campaigns again.

CMD runs in a session (and process group) of its own: a terminal's Ctrl-C reaches only the
wrapper, which stops CMD's whole group, and whatever CMD leaves behind in its group when it
exits is killed before the lease is released. On Linux, CMD is also started with a parent-death
signal (SIGKILL), so that it cannot outlive a wrapper that is itself SIGKILLed (in a container
the runtime kills them together anyway).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, final

import anyio
from anyio.abc import Process, TaskStatus

from ._config import Timings
from ._connect import LeaseTarget, open_lock
from ._elector import LeaderElector, Leadership
from ._errors import ConfigError, LeadershipLost
from ._tasks import BackgroundTasks

__all__ = [
    "ENV_IDENTITY",
    "ENV_LEASE",
    "ENV_TOKEN",
    "EXIT_CANNOT_EXECUTE",
    "EXIT_LEASE_LOST",
    "EXIT_NOT_FOUND",
    "SidecarSettings",
    "run_sidecar",
]

logger = logging.getLogger(__name__)

EXIT_LEASE_LOST: Final = 75
"""The wrapper's status after losing the lease (``EX_TEMPFAIL``: run it again to campaign)."""
EXIT_CANNOT_EXECUTE: Final = 126
"""CMD exists but cannot be executed (a shell's status for the same)."""
EXIT_NOT_FOUND: Final = 127
"""CMD was not found (a shell's status for the same)."""

ENV_TOKEN: Final = "LEADERELECT_TOKEN"
"""The term's fencing token, ``<lease uid>:<leaseTransitions>``."""
ENV_IDENTITY: Final = "LEADERELECT_IDENTITY"
"""The holder identity the wrapper campaigns as."""
ENV_LEASE: Final = "LEADERELECT_LEASE"
"""The Lease, as ``namespace/name``."""

_PREFIX = "leaderelect run: "
_KILL_WAIT = 5.0
"""Seconds to wait for CMD to die after SIGKILL before giving up on it."""

Write = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    """What ``leaderelect run`` runs, and on which Lease.

    Raises:
        ConfigError: an empty command, an empty identity or a negative grace period.
    """

    command: tuple[str, ...]
    """CMD and its arguments."""
    target: LeaseTarget
    """The Lease, and how to reach its API server."""
    identity: str | None = None
    """The holder identity; ``None`` for :func:`leaderelect.default_identity` (``$POD_NAME``)."""
    timings: Timings = field(default_factory=Timings)
    """Lease duration, renew deadline and retry period."""
    grace_period: float | None = None
    """Seconds between SIGTERM and SIGKILL; ``None`` for ``timings.margin``."""
    recampaign: bool = False
    """After a loss, campaign again (and start CMD again) instead of exiting."""

    def __post_init__(self) -> None:
        if not self.command or not self.command[0]:
            raise ConfigError("command: give the command to run after --")
        if self.identity is not None and not self.identity.strip():
            raise ConfigError(f"identity must be a non-empty string, got {self.identity!r}")
        grace = self.grace_period
        if grace is not None and not (math.isfinite(grace) and grace >= 0):
            raise ConfigError(f"grace_period must be 0 or more seconds, got {grace!r}")

    @property
    def grace(self) -> float:
        """The grace period in effect, in seconds."""
        return self.timings.margin if self.grace_period is None else self.grace_period


async def run_sidecar(settings: SidecarSettings, write: Write) -> int:
    """Campaign, run CMD while leading, and return the wrapper's exit status.

    ``write`` receives the wrapper's own lines (campaigning, leading, stopping, released);
    CMD's output goes straight to the wrapper's stdout and stderr.

    Raises:
        ConfigError: the kubeconfig or service account cannot be loaded.
    """
    return await _Sidecar(settings, write).run()


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


def _guarded(command: Sequence[str]) -> list[str]:
    """The argv that runs CMD so that it cannot outlive the wrapper (where the OS allows)."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *command]


def _cannot_run(program: str, path: str) -> str | None:
    """Why ``program`` cannot be executed (as ``execvp`` would look it up), or ``None``."""
    if os.sep in program:
        if not os.path.exists(program):
            return "not found"
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return "not executable"
        return None
    return None if shutil.which(program, path=path) else "not found"


def _exit_status(returncode: int) -> int:
    """A shell's view of a process's end: its status, or 128 + N after signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe_exit(name: str, returncode: int) -> str:
    if returncode >= 0:
        return f"{name} exited with status {returncode}"
    try:
        how = signal.Signals(-returncode).name
    except ValueError:
        how = f"signal {-returncode}"
    return f"{name} was killed by {how} (status {_exit_status(returncode)})"


@final
class _Sidecar:
    def __init__(self, settings: SidecarSettings, write: Write) -> None:
        self._settings = settings
        self._write = write
        self._name = os.path.basename(settings.command[0])
        self._stop = anyio.Event()
        """Set by the first SIGTERM/SIGINT: stop CMD, release, exit."""
        self._hurry = anyio.Event()
        """Set by the second: SIGKILL at once."""
        self._stop_signal: signal.Signals | None = None
        self._campaign_scope = anyio.CancelScope()
        self._leading = False
        self._lost = False

    def _say(self, text: str) -> None:
        self._write(_PREFIX + text)

    async def run(self) -> int:
        settings = self._settings
        timings = settings.timings
        if settings.grace > timings.margin:
            logger.warning(
                "grace period %gs exceeds lease_duration - renew_deadline (%gs): after a missed "
                "renew deadline, %s may still run when a successor's starts",
                settings.grace,
                timings.margin,
                self._name,
            )
        status: int | None = None
        async with BackgroundTasks() as tasks:
            await tasks.start(self._watch_signals)  # a signal from here on stops us cleanly
            with self._campaign_scope:
                async with await open_lock(settings.target) as lock:
                    elector = LeaderElector(
                        lock,
                        identity=settings.identity,
                        lease_duration=timings.lease_duration,
                        renew_deadline=timings.renew_deadline,
                        retry_period=timings.retry_period,
                    )
                    status = await self._campaign_and_lead(elector)
        if self._stop_signal is not None:
            status = 128 + self._stop_signal
            self._say(f"exiting with status {status} ({self._stop_signal.name})")
        elif status == EXIT_LEASE_LOST and self._lost:
            self._say(
                f"exiting with status {status}: the lease was lost (--recampaign campaigns "
                "again instead)"
            )
        else:
            assert status is not None
            self._say(f"exiting with status {status}")
        return status

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._stop_signal is None:
                    self._stop_signal = signal.Signals(signum)
                    self._stop.set()
                    if not self._leading:  # a leader says so as it stops CMD
                        self._say(f"{name} received; no longer campaigning")
                        self._campaign_scope.cancel()
                elif not self._hurry.is_set():
                    self._hurry.set()
                    self._say(f"{name} received again; killing {self._name} now")

    async def _campaign_and_lead(self, elector: LeaderElector) -> int | None:
        """Campaign and lead until CMD ends, a signal arrives, or the lease is lost."""
        while not self._stop.is_set():
            self._say(f"campaigning for lease {elector.lease} as {elector.identity}")
            try:
                async with elector.leading() as leadership:
                    status = await self._lead(leadership)
            except LeadershipLost:
                if self._stop.is_set():
                    return None
                if self._settings.recampaign:
                    continue
                self._lost = True
                return EXIT_LEASE_LOST
            if not leadership.released:
                self._say(
                    f"could not release lease {elector.lease}; followers take it over when "
                    "it expires"
                )
            else:
                self._say(f"released lease {elector.lease}")
            return status
        return None

    async def _lead(self, leadership: Leadership) -> int | None:
        """The body of ``leading()``: run CMD until it exits; stop it when told to."""
        if self._stop.is_set():
            return None
        command = self._settings.command
        environment = {
            **os.environ,
            ENV_TOKEN: str(leadership.token),
            ENV_IDENTITY: leadership.identity,
            ENV_LEASE: leadership.lease,
        }
        self._leading = True
        try:
            problem = _cannot_run(command[0], environment.get("PATH", os.defpath))
            if problem is not None:
                self._say(f"leading {leadership.lease}, but cannot start {command[0]}: {problem}")
                return EXIT_NOT_FOUND if problem == "not found" else EXIT_CANNOT_EXECUTE
            with anyio.CancelScope(shield=True):  # once started, CMD is always ours to stop
                try:
                    process = await anyio.open_process(
                        _guarded(command),
                        stdin=None,
                        stdout=None,
                        stderr=None,
                        env=environment,
                        start_new_session=True,
                    )
                except OSError as exc:
                    self._say(f"leading {leadership.lease}, but cannot start {command[0]}: {exc}")
                    return EXIT_CANNOT_EXECUTE
            self._say(
                f"leading {leadership.lease} (fencing token {leadership.token}); started "
                f"{shlex.join(command)} (pid {process.pid})"
            )
            async with process:
                try:
                    await self._wait_exit_or_stop(process)
                finally:
                    if process.returncode is None:
                        with anyio.CancelScope(shield=True):
                            await self._stop_child(process, self._why_stopping(leadership))
                    self._sweep(process)
                    if process.returncode is not None:
                        self._say(_describe_exit(self._name, process.returncode))
            assert process.returncode is not None
            return _exit_status(process.returncode)
        finally:
            self._leading = False

    async def _wait_exit_or_stop(self, process: Process) -> None:
        async with anyio.create_task_group() as tg:

            async def stop_requested() -> None:
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_requested)
            await process.wait()
            tg.cancel_scope.cancel()

    def _why_stopping(self, leadership: Leadership) -> str:
        if leadership.loss_reason is not None:
            return f"lost the lease ({leadership.loss_reason.value})"
        if self._stop_signal is not None:
            return f"{self._stop_signal.name} received"
        if not leadership.is_valid:
            return "lost the lease (renew deadline passed without a successful renewal)"
        return "cancelled"

    async def _stop_child(self, process: Process, why: str) -> None:
        """SIGTERM CMD's group, SIGKILL it after the grace period (or a second signal)."""
        grace = self._settings.grace
        self._say(
            f"{why}; stopping {self._name} (pid {process.pid}): SIGTERM, then SIGKILL after "
            f"{grace:g}s"
        )
        self._signal_group(process, signal.SIGTERM)
        with anyio.move_on_after(grace):
            async with anyio.create_task_group() as tg:

                async def hurried() -> None:
                    await self._hurry.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(hurried)
                await process.wait()
                tg.cancel_scope.cancel()
        if process.returncode is not None:
            return
        if not self._hurry.is_set():
            self._say(f"{self._name} did not stop within {grace:g}s; sending SIGKILL")
        self._signal_group(process, signal.SIGKILL)
        with anyio.move_on_after(_KILL_WAIT):
            await process.wait()
        if process.returncode is None:
            self._say(f"{self._name} (pid {process.pid}) did not die {_KILL_WAIT:g}s after SIGKILL")

    @staticmethod
    def _signal_group(process: Process, signum: signal.Signals) -> None:
        if process.returncode is not None:
            return
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:  # the group is gone; CMD itself is a zombie being reaped
            pass
        except PermissionError:  # CMD changed its user; reach CMD itself at least
            process.send_signal(signum)

    def _sweep(self, process: Process) -> None:
        """Kill what CMD left running in its process group: nothing may outlive the term."""
        if process.returncode is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        else:
            logger.warning(
                "killed what %s (pid %d) left running in its process group",
                self._name,
                process.pid,
            )
