"""``leaderelect run``: run a command only while this process leads a Lease.

The command (CMD) is the work of :meth:`LeaderElector.lead`, so it inherits that contract:

1. CMD starts only once this candidate holds the lease, with the term in its environment
   (``LEADERELECT_TOKEN``, ``LEADERELECT_IDENTITY``, ``LEADERELECT_LEASE``);
2. when the lease is lost (another holder seen, or no renewal before the renew deadline), the
   work is cancelled: CMD's process group gets SIGTERM, then SIGKILL once the grace period has
   passed, and the work waits for CMD to exit before it ends;
3. the lease is released after the work has ended, so after CMD.

When CMD exits by itself, the wrapper releases the lease and exits with CMD's status. SIGTERM or
SIGINT set ``lead()``'s stop: while campaigning that ends the campaign; while leading CMD is
stopped the same way, with the lease still renewed (so it never runs unleased on a requested
stop), then released; the exit status is ``128 + signal``. A second signal skips the rest of
the grace period. After a loss the wrapper exits with :data:`EXIT_LEASE_LOST` (75) unless
``recampaign`` is set, in which case it campaigns again.

CMD runs in a session (and process group) of its own: a terminal's Ctrl-C reaches only the
wrapper, which stops CMD's whole group, and whatever CMD leaves behind in its group when it
exits is killed before the lease is released. On Linux, CMD is also started with a parent-death
signal (SIGKILL), so that it cannot outlive a wrapper that is itself SIGKILLed (in a container
the runtime kills them together anyway).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import signal
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Final, final

import anyio
from anyio.abc import Process, TaskStatus

from .. import ConfigError, LeaderElectionError, LeaderElector, Leadership, LeadershipLost, Timings
from .._tasks import BackgroundTasks
from ._options import (
    add_timings,
    connection_options,
    lease_target,
    seconds_or_zero,
    timings_of,
    usage_error,
    verbosity_options,
)
from ._output import Write, err
from ._process import (
    KILL_WAIT,
    cannot_run,
    describe_exit,
    exit_status,
    guarded,
    kill_leftovers,
    signal_group,
)
from ._target import LeaseTarget, open_lock

if TYPE_CHECKING:
    from ._options import Commands

__all__ = [
    "ENV_IDENTITY",
    "ENV_LEASE",
    "ENV_TOKEN",
    "EXIT_CANNOT_EXECUTE",
    "EXIT_LEASE_LOST",
    "EXIT_NOT_FOUND",
    "SidecarSettings",
    "add_parser",
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
    """The holder identity; ``None`` for :func:`leaderelect.default_identity`."""
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


def add_parser(commands: Commands) -> None:
    """Add ``leaderelect run``."""
    run = commands.add_parser(
        "run",
        parents=[verbosity_options(), connection_options()],
        usage="%(prog)s --lease NAME [options] -- CMD [ARG ...]",
        help="run a command only while leading a Lease (a sidecar or wrapper)",
        description=(
            "Campaign for the Lease and run CMD only while this process leads it. CMD gets "
            "LEADERELECT_TOKEN (the fencing token), LEADERELECT_IDENTITY and LEADERELECT_LEASE. "
            "On losing the lease, CMD's process group gets SIGTERM, then SIGKILL after the "
            "grace period; the lease is released only after CMD has exited. SIGTERM or SIGINT "
            "to this process stops CMD the same way, then releases the lease."
        ),
        epilog=(
            "exit status: CMD's own when it exits by itself (128+N if signal N killed it); "
            f"{EXIT_LEASE_LOST} after losing the lease (without --recampaign); 128+N after "
            "signal N stopped the wrapper (143 for SIGTERM, 130 for SIGINT); 126/127 when CMD "
            "cannot be run or is not found; 1 for a bad kubeconfig; 2 for bad arguments"
        ),
    )
    run.add_argument("--lease", required=True, metavar="NAME", help="the Lease's name")
    run.add_argument(
        "--identity",
        metavar="ID",
        help="holder identity, unique per candidate (default: <$POD_NAME>_<8 hex digits>, "
        "else <hostname>_<random uuid>)",
    )
    add_timings(
        run,
        Timings(),
        renew_deadline_help="how long CMD keeps running without a successful renewal",
    )
    run.add_argument(
        "--grace-period",
        type=seconds_or_zero,
        metavar="SECONDS",
        help="time between SIGTERM and SIGKILL when stopping CMD (default: --lease-duration "
        "minus --renew-deadline, the time no successor can start in)",
    )
    run.add_argument(
        "--recampaign",
        action="store_true",
        help=f"after losing the lease, campaign again instead of exiting {EXIT_LEASE_LOST}",
    )
    run.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD [ARG ...]",
        help="the command to run while leading, after --",
    )
    run.set_defaults(handler=_main, command_parser=run)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    usage: argparse.ArgumentParser = args.command_parser
    command: list[str] = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        usage.error("give the command to run after --, e.g. -- python -m http.server")
    try:
        settings = SidecarSettings(
            command=tuple(command),
            target=lease_target(usage, args, args.lease),
            identity=args.identity,
            timings=timings_of(args),
            grace_period=args.grace_period,
            recampaign=args.recampaign,
        )
    except ConfigError as exc:
        usage_error(usage, exc)
    try:
        return anyio.run(run_sidecar, settings, err)
    except LeaderElectionError as exc:
        err(f"leaderelect run: error: {exc}")
        return 1


async def run_sidecar(settings: SidecarSettings, write: Write) -> int:
    """Campaign, run CMD while leading, and return the wrapper's exit status.

    ``write`` receives the wrapper's own lines (campaigning, leading, stopping, released);
    CMD's output goes straight to the wrapper's stdout and stderr.

    Raises:
        ConfigError: the kubeconfig or service account cannot be loaded.
    """
    return await _Sidecar(settings, write).run()


@final
class _Sidecar:
    def __init__(self, settings: SidecarSettings, write: Write) -> None:
        self._settings = settings
        self._write = write
        self._name = os.path.basename(settings.command[0])
        self._stop = anyio.Event()
        """Set by the first SIGTERM/SIGINT: stop campaigning, or stop CMD and release."""
        self._hurry = anyio.Event()
        """Set by the second: SIGKILL at once."""
        self._stop_signal: signal.Signals | None = None
        self._leading = False

    def _say(self, text: str) -> None:
        self._write(_PREFIX + text)

    async def run(self) -> int:
        settings = self._settings
        if settings.grace > settings.timings.margin:
            logger.warning(
                "grace period %gs exceeds lease_duration - renew_deadline (%gs): after a missed "
                "renew deadline, %s may still run when a successor's starts",
                settings.grace,
                settings.timings.margin,
                self._name,
            )
        lost = False
        async with BackgroundTasks() as tasks:
            await tasks.start(self._watch_signals)  # a signal from here on stops us cleanly
            async with await open_lock(settings.target) as lock:
                elector = LeaderElector(lock, identity=settings.identity, timings=settings.timings)
                if not self._stop.is_set():
                    self._say(f"campaigning for lease {elector.lease} as {elector.identity}")
                try:
                    status = await elector.lead(
                        self._lead,
                        stop=self._stop,
                        recampaign=settings.recampaign,
                        on_term_end=partial(self._term_ended, elector),
                    )
                except LeadershipLost:
                    status, lost = EXIT_LEASE_LOST, True
        if self._stop_signal is not None:
            status = 128 + self._stop_signal
            self._say(f"exiting with status {status} ({self._stop_signal.name})")
            return status
        assert status is not None  # CMD's status, or EXIT_LEASE_LOST: no stop, so no None
        if lost:
            self._say(
                f"exiting with status {status}: the lease was lost (--recampaign campaigns "
                "again instead)"
            )
        else:
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
                elif not self._hurry.is_set():
                    self._hurry.set()
                    self._say(f"{name} received again; killing {self._name} now")

    async def _lead(self, leadership: Leadership) -> int | None:
        """The work of each term: run CMD until it exits; cancelled, stop it first."""
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
            problem = cannot_run(command[0], environment.get("PATH", os.defpath))
            if problem is not None:
                self._say(f"leading {leadership.lease}, but cannot start {command[0]}: {problem}")
                return EXIT_NOT_FOUND if problem == "not found" else EXIT_CANNOT_EXECUTE
            with anyio.CancelScope(shield=True):  # once started, CMD is always ours to stop
                try:
                    process = await anyio.open_process(
                        guarded(command),
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
                    # Cancelled on a stop (the lease still held and renewed) or a loss.
                    returncode = await process.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        if process.returncode is None:
                            await self._stop_child(process, self._why_stopping(leadership))
                        kill_leftovers(process, self._name)
                        if process.returncode is not None:
                            self._say(f"{self._name} {describe_exit(process.returncode)}")
            return exit_status(returncode)
        finally:
            self._leading = False

    async def _term_ended(self, elector: LeaderElector, leadership: Leadership) -> None:
        """After each term: say whether the lease was released; after a loss, that we
        campaign again (when we do)."""
        if leadership.loss_reason is None:
            if leadership.released:
                self._say(f"released lease {elector.lease}")
            else:
                self._say(
                    f"could not release lease {elector.lease}; followers take it over when "
                    "it expires"
                )
        elif self._settings.recampaign and not self._stop.is_set():
            self._say(f"campaigning for lease {elector.lease} as {elector.identity}")

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
        signal_group(process, signal.SIGTERM)
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
        signal_group(process, signal.SIGKILL)
        with anyio.move_on_after(KILL_WAIT):
            await process.wait()
        if process.returncode is None:
            self._say(f"{self._name} (pid {process.pid}) did not die {KILL_WAIT:g}s after SIGKILL")
