"""``leaderelect demo``: an election among candidate processes, with two takeovers measured.

The parent process runs the embedded Lease API server, starts the candidates as child
processes, and follows the Lease with a watch (never by polling). It prints one line per
change of holder, relays each candidate's own lines under its identity, then:

1. stops the leader gracefully (SIGTERM): it steps down and the lease is released, so a
   follower takes over at once;
2. kills the next leader (SIGKILL) right after a renewal: nothing is released, so followers
   take over only when the lease expires, ``leaseDurationSeconds`` after that renewal.

Both takeovers are timed from the signal to the first watch event naming a new holder (see
``_timeline``). Each candidate is ``python -m leaderelect._cli._candidate ...``, a program of
its own (``_candidate``).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import anyio
from anyio.abc import TaskGroup

from .. import ConfigError, LeaderElectionError, LeaseLock, Timings
from .._kube._names import validate_name, validate_namespace
from ._options import add_timings, seconds_or_zero, timings_of, usage_error, verbosity_options
from ._output import EXIT_INTERRUPTED, Write, err, out
from ._process import KILL_WAIT, CandidateProcess
from ._target import follow_lease
from ._timeline import LeaseTracker, StopKind, Takeover, Timeline, summary

if TYPE_CHECKING:
    from ._options import Commands

__all__ = [
    "CANDIDATE_PROGRAM",
    "DEMO_TIMINGS",
    "WORK_INTERVAL",
    "DemoReport",
    "DemoSettings",
    "add_parser",
    "run_demo",
]

DEMO_TIMINGS: Final = Timings(lease_duration=4.0, renew_deadline=2.5, retry_period=0.5)
"""Short enough for a demo, and valid: 4 > 2.5 + 0.5, and 2.5 > 1.2 x 0.5."""
CANDIDATE_PROGRAM: Final = "leaderelect._cli._candidate"
"""The candidates' program, run as ``python -m``."""
WORK_INTERVAL: Final = 1.0
"""Seconds between two lines of a leader's visible work."""

_STARTUP_TIMEOUT = 30.0
"""Seconds the candidates get to start and elect a first leader (interpreters start slowly)."""
_FREE_WAIT = 1.0
"""Seconds to wait, at the end, for the watch to show the last leader's release."""


def add_parser(commands: Commands) -> None:
    """Add ``leaderelect demo``."""
    defaults = DemoSettings()
    demo = commands.add_parser(
        "demo",
        parents=[verbosity_options()],
        help="watch candidate processes elect a leader, and time two takeovers",
        description=(
            "Start an embedded Lease API server and N candidate processes, show who leads, "
            "then stop the leader gracefully (SIGTERM) and kill the next one (SIGKILL), "
            "timing each takeover. No cluster needed."
        ),
    )
    demo.add_argument(
        "--candidates",
        type=_candidates,
        default=defaults.candidates,
        metavar="N",
        help="candidate processes to start (at least 2; default %(default)s)",
    )
    add_timings(
        demo,
        DEMO_TIMINGS,
        renew_deadline_help="how long a leader keeps working without a renewal",
    )
    demo.add_argument(
        "--hold",
        type=seconds_or_zero,
        default=defaults.hold,
        metavar="SECONDS",
        help="how long each leader works before it is stopped (default %(default)gs)",
    )
    demo.add_argument(
        "--lease",
        default=defaults.lease,
        metavar="NAME",
        help="the Lease's name (default %(default)s)",
    )
    demo.set_defaults(handler=_main)


def _candidates(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 (one leader and one to take over), got {value}"
        )
    return value


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        settings = DemoSettings(
            candidates=args.candidates,
            timings=timings_of(args),
            hold=args.hold,
            lease=args.lease,
            verbosity=args.verbose,
        )
    except ConfigError as exc:
        usage_error(parser, exc)
    report = anyio.run(run_demo, settings, out)
    if report.interrupted:
        return EXIT_INTERRUPTED
    if not report.ok:
        err(f"leaderelect demo: error: {report.error or 'a takeover was not measured'}")
        return 1
    return 0


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What ``leaderelect demo`` runs.

    Raises:
        ConfigError: fewer than two candidates, a negative ``hold``, or an invalid Lease name
            or namespace.
    """

    candidates: int = 3
    """How many candidate processes to start (at least 2)."""
    timings: Timings = DEMO_TIMINGS
    """The candidates' lease duration, renew deadline and retry period."""
    hold: float = 2.0
    """Seconds each leader works before the demo stops it, and after the last takeover."""
    lease: str = "demo"
    """The Lease's name."""
    namespace: str = "default"
    """The Lease's namespace."""
    verbosity: int = 0
    """0: the timeline only; 1: candidates also log INFO; 2: DEBUG."""

    def __post_init__(self) -> None:
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int):
            raise ConfigError(f"candidates must be an integer, got {self.candidates!r}")
        if self.candidates < 2:
            raise ConfigError(
                f"candidates must be at least 2 for a takeover to happen, got {self.candidates}"
            )
        if not math.isfinite(self.hold) or self.hold < 0:
            raise ConfigError(f"hold must be 0 or more seconds, got {self.hold!r}")
        validate_name(self.lease)
        validate_namespace(self.namespace)


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What happened in a demo run."""

    takeovers: tuple[Takeover, ...] = ()
    """The takeovers measured, in order."""
    error: str | None = None
    """Why the demo failed, if it did."""
    interrupted: bool = False
    """True when SIGINT or SIGTERM cut the demo short."""

    @property
    def ok(self) -> bool:
        """True when both takeovers were measured and nothing failed."""
        return self.error is None and not self.interrupted and len(self.takeovers) == 2


class _DemoFailed(Exception):
    """Raised inside the demo when a step did not happen in time; the message says which."""


@final
class _Demo:
    def __init__(self, settings: DemoSettings, write: Write) -> None:
        self._settings = settings
        self._write = write
        width = max(len("lease"), len(self._identity(settings.candidates)))
        self._timeline = Timeline(write, width)
        self._tracker = LeaseTracker(self._timeline, settings.timings.lease_duration)
        self._candidates: dict[str, CandidateProcess] = {}
        self._kubeconfig: Path | None = None
        self._script_scope = anyio.CancelScope()
        self.error: str | None = None
        self.interrupted = False

    @staticmethod
    def _identity(number: int) -> str:
        return f"candidate-{number}"

    def report(self) -> DemoReport:
        return DemoReport(
            takeovers=tuple(self._tracker.takeovers),
            error=self.error,
            interrupted=self.interrupted,
        )

    # -- lifetime ----------------------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._interrupt_on_signals)
            try:
                await self._serve()
            except (_DemoFailed, LeaderElectionError, OSError) as exc:
                self.error = str(exc) or type(exc).__name__
            tg.cancel_scope.cancel()
        if self.interrupted:
            self._write("")
            self._write("interrupted; every candidate has exited")
        elif self.error is None:
            for line in summary(self._tracker.takeovers):
                self._write(line)

    async def _interrupt_on_signals(self) -> None:
        """On SIGINT or SIGTERM, cancel the script; the candidates are then stopped as usual."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self.interrupted:
                    self.interrupted = True
                    self._timeline.line("demo", f"{signal.Signals(signum).name}: stopping")
                    self._script_scope.cancel()
                else:
                    self._timeline.line("demo", "still stopping the candidates; please wait")

    async def _serve(self) -> None:
        from ..testing import LeaseApiServer

        settings = self._settings
        timings = settings.timings
        async with LeaseApiServer() as server:
            self._kubeconfig = server.kubeconfig(user="admin")
            lease = f"{settings.namespace}/{settings.lease}"
            self._timeline.header(settings.candidates, lease, str(server.url), timings)
            lock = await LeaseLock.from_kubeconfig(
                settings.lease, settings.namespace, config_file=self._kubeconfig
            )
            # The candidates' runners live in ``tg``; a signal cancels only the script, and
            # every candidate is then stopped the same way as at the end of a full run.
            async with lock, anyio.create_task_group() as tg:
                try:
                    with self._script_scope:
                        tracker = self._tracker.observe
                        await tg.start(partial(follow_lease, lock, tracker, timings=timings))
                        await self._script(tg)
                except (_DemoFailed, LeaderElectionError, OSError) as exc:
                    self.error = str(exc) or type(exc).__name__
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._stop_everyone()
                    tg.cancel_scope.cancel()

    # -- the script --------------------------------------------------------------------------

    async def _script(self, tg: TaskGroup) -> None:
        settings = self._settings
        timings = settings.timings
        tracker = self._tracker
        for number in range(1, settings.candidates + 1):
            await self._start(tg, self._identity(number))

        with anyio.move_on_after(_STARTUP_TIMEOUT) as startup:
            await tracker.wait_for(lambda: tracker.holder is not None)
            for candidate in self._candidates.values():
                await candidate.ready.wait()
        if startup.cancelled_caught:
            raise _DemoFailed(
                f"the candidates did not start and elect a leader within {_STARTUP_TIMEOUT:g}s"
            )
        await anyio.sleep(settings.hold)

        stopped = await self._takeover(
            StopKind.GRACEFUL, bound=timings.lease_duration + timings.renew_deadline + 5
        )
        followers = [
            c
            for c in self._candidates.values()
            if c.running and c.identity not in (stopped, self._tracker.holder)
        ]
        if not followers:  # nobody would be left to take over from the next leader
            await self._restart(tg, stopped)
        await anyio.sleep(settings.hold)

        await self._takeover(StopKind.HARD, bound=2 * timings.lease_duration + 5)
        await anyio.sleep(settings.hold)

    async def _start(self, tg: TaskGroup, identity: str) -> CandidateProcess:
        assert self._kubeconfig is not None
        settings = self._settings
        timings = settings.timings
        command = [
            sys.executable,
            "-m",
            CANDIDATE_PROGRAM,
            f"--kubeconfig={self._kubeconfig}",
            f"--lease={settings.lease}",
            f"--namespace={settings.namespace}",
            f"--identity={identity}",
            f"--lease-duration={timings.lease_duration!r}",
            f"--renew-deadline={timings.renew_deadline!r}",
            f"--retry-period={timings.retry_period!r}",
            f"--work-interval={WORK_INTERVAL!r}",
            "--stop-on-stdin-eof",
        ]
        command += ["--verbose"] * settings.verbosity
        show = partial(self._timeline.line, identity)
        candidate = CandidateProcess(identity, command, show, self._candidate_failed)
        self._candidates[identity] = candidate
        await tg.start(candidate.run)
        return candidate

    def _candidate_failed(self, candidate: CandidateProcess, how: str) -> None:
        """A candidate ended by itself: nothing it shows can be trusted, so stop the script."""
        if self.error is None:
            self.error = f"{candidate.identity} {how} unexpectedly (its output is above)"
        self._script_scope.cancel()

    async def _restart(self, tg: TaskGroup, identity: str) -> None:
        old = self._candidates[identity]
        with anyio.move_on_after(self._settings.timings.renew_deadline + 5):
            await old.exited.wait()
        if not old.exited.is_set():
            raise _DemoFailed(f"{identity} did not exit after SIGTERM")
        self._timeline.line("demo", f"restarting {identity}, so that a follower is left")
        candidate = await self._start(tg, identity)
        with anyio.move_on_after(_STARTUP_TIMEOUT):
            await candidate.ready.wait()
        if not candidate.ready.is_set():
            raise _DemoFailed(f"{identity} did not start again within {_STARTUP_TIMEOUT:g}s")

    async def _takeover(self, kind: StopKind, *, bound: float) -> str:
        """Stop the leader the ``kind`` way and wait for a new holder; returns the stopped one."""
        tracker = self._tracker
        leader = tracker.holder
        if leader is None or leader not in self._candidates:
            raise _DemoFailed(f"no leader to stop (the lease is held by {leader!r})")
        if kind is StopKind.HARD:
            # Just after a renewal, so that followers wait out a whole lease duration.
            renewals = tracker.renewals
            with anyio.move_on_after(self._settings.timings.renew_deadline) as waiting:
                await tracker.wait_for(lambda: tracker.renewals > renewals)
            if waiting.cancelled_caught or tracker.holder != leader:
                raise _DemoFailed(f"{leader} stopped renewing the lease before it was killed")
            what = f"SIGKILL -> {leader}, just after it renewed (hard kill: nothing is released)"
        else:
            what = f"SIGTERM -> {leader} (graceful stop: it steps down and releases the lease)"
        self._timeline.line("demo", what)
        count = len(tracker.takeovers)
        tracker.expect_takeover(kind, leader)
        self._candidates[leader].send(kind.signal)
        with anyio.move_on_after(bound) as waiting:
            await tracker.wait_for(lambda: len(tracker.takeovers) > count)
        if waiting.cancelled_caught:
            raise _DemoFailed(
                f"no candidate took the lease over within {bound:g}s after the "
                f"{kind.signal.name} to {leader}"
            )
        return leader

    async def _stop_everyone(self) -> None:
        """SIGTERM every candidate still running, wait (bounded), then SIGKILL stragglers."""
        running = [c for c in self._candidates.values() if c.running]
        if not running:
            return
        self._timeline.line("demo", "SIGTERM -> " + ", ".join(c.identity for c in running))
        for candidate in running:
            candidate.send(signal.SIGTERM)
        with anyio.move_on_after(self._settings.timings.renew_deadline + 3):
            for candidate in running:
                await candidate.exited.wait()
        for candidate in running:
            if not candidate.exited.is_set():
                self._timeline.line("demo", f"SIGKILL -> {candidate.identity} (did not stop)")
                candidate.send(signal.SIGKILL)
        with anyio.move_on_after(KILL_WAIT):
            for candidate in running:
                await candidate.exited.wait()
        if not self.interrupted:
            with anyio.move_on_after(_FREE_WAIT):
                await self._tracker.wait_for(lambda: self._tracker.holder is None)


async def run_demo(settings: DemoSettings, write: Write) -> DemoReport:
    """Run the demo, writing its timeline and summary line by line through ``write``.

    Returns when every candidate process has exited; SIGINT or SIGTERM cut it short (the
    candidates are still stopped, and the report says ``interrupted``).
    """
    demo = _Demo(settings, write)
    await demo.run()
    return demo.report()
