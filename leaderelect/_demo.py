"""``leaderelect demo``: an election among candidate processes, with two takeovers measured.

The parent process runs the embedded Lease API server, starts the candidates as child
processes, and follows the Lease with a watch (never by polling). It prints one line per
change of holder, relays each candidate's own lines under its identity, then:

1. stops the leader gracefully (SIGTERM): its ``leading()`` block ends and the lease is
   released, so a follower takes over at once;
2. kills the next leader (SIGKILL) right after a renewal: nothing is released, so followers
   take over only when the lease expires, ``leaseDurationSeconds`` after that renewal.

Both takeovers are timed from the signal to the first watch event naming a new holder.

Each candidate is ``python -m leaderelect._demo candidate ...`` (see :func:`candidate_main`):
``LeaseLock.from_kubeconfig`` plus ``LeaderElector.leading()``, doing visible work while it
leads. A candidate steps down on SIGTERM or SIGINT, and also when its stdin reaches end of file,
which is how it notices that the demo itself died (even by SIGKILL): no orphans either way.
"""

from __future__ import annotations

import argparse
import enum
import logging
import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, final

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskGroup, TaskStatus
from anyio.streams.text import TextReceiveStream

from ._clock import LoopClock
from ._config import Timings
from ._elector import LeaderElector, Leadership
from ._errors import ConfigError, LeaderElectionError, LeadershipLost
from ._lock import LeaseLock, LeaseSnapshot, _validate_name, _validate_namespace
from ._observer import LeaseView, follow

__all__ = [
    "DEMO_TIMINGS",
    "DemoReport",
    "DemoSettings",
    "StopKind",
    "Takeover",
    "candidate_main",
    "run_demo",
]

logger = logging.getLogger(__name__)

DEMO_TIMINGS: Final = Timings(lease_duration=4.0, renew_deadline=2.5, retry_period=0.5)
"""Short enough for a demo, and valid: 4 > 2.5 + 0.5, and 2.5 > 1.2 x 0.5."""

_WORK_INTERVAL = 1.0
"""Seconds between two lines of a leader's visible work."""
_STARTUP_TIMEOUT = 30.0
"""Seconds the candidates get to start and elect a first leader (interpreters start slowly)."""
_KILL_WAIT = 5.0
"""Seconds to wait for a process to die after SIGKILL."""
_FREE_WAIT = 1.0
"""Seconds to wait, at the end, for the watch to show the last leader's release."""

Write = Callable[[str], None]


class StopKind(enum.Enum):
    """How the demo stops a leader."""

    GRACEFUL = "graceful"
    """SIGTERM: the candidate leaves ``leading()``, which releases the lease."""
    HARD = "hard kill"
    """SIGKILL: nothing is released; followers wait for the lease to expire."""

    @property
    def signal(self) -> signal.Signals:
        return signal.SIGTERM if self is StopKind.GRACEFUL else signal.SIGKILL


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
        _validate_name(self.lease)
        _validate_namespace(self.namespace)


@dataclass(frozen=True, slots=True)
class Takeover:
    """One measured change of leader."""

    kind: StopKind
    """How the old leader was stopped."""
    leader: str
    """The identity that was stopped."""
    successor: str
    """The first other identity seen holding the lease afterwards."""
    seconds: float
    """From sending the signal to the watch event naming ``successor``."""
    lease_duration: float
    """The ``leaseDurationSeconds`` the stopped leader had written."""

    @property
    def excess(self) -> float:
        """``seconds - lease_duration``: negative when the takeover beat expiry."""
        return self.seconds - self.lease_duration


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


# --------------------------------------------------------------------------------------------
# The parent: timeline, lease tracker, candidate processes, the script
# --------------------------------------------------------------------------------------------


@final
class _Timeline:
    """Writes ``  12.34s  who          what`` lines, time measured from the demo's start."""

    def __init__(self, write: Write, who_width: int) -> None:
        self._write = write
        self.width = who_width
        self._start = anyio.current_time()

    def line(self, who: str, what: str) -> None:
        elapsed = anyio.current_time() - self._start
        self._write(f"{elapsed:7.2f}s  {who:<{self.width}}  {what}".rstrip())

    def heading(self) -> None:
        self._write(f"{'time':>8}  {'who':<{self.width}}  what")


@dataclass(frozen=True, slots=True)
class _Term:
    holder: str | None
    transitions: int


@dataclass(slots=True)
class _Expected:
    kind: StopKind
    leader: str
    since: float
    lease_duration: float


@final
class _LeaseTracker:
    """Fed every observation of the Lease (by ``follow``'s watch); prints changes of holder."""

    def __init__(self, timeline: _Timeline, lease_duration: float) -> None:
        self._timeline = timeline
        self.term: _Term | None = None
        self.lease_duration = lease_duration
        """The last ``leaseDurationSeconds`` a holder wrote (ours until one has)."""
        self.renewals = 0
        self.takeovers: list[Takeover] = []
        self._renew_time: datetime | None = None
        self._expected: _Expected | None = None
        self._changed = anyio.Event()

    @property
    def holder(self) -> str | None:
        return self.term.holder if self.term is not None else None

    def observe(self, snapshot: LeaseSnapshot | None) -> None:
        record = snapshot.record if snapshot is not None else None
        term = _Term(
            holder=(record.holder_identity or None) if record is not None else None,
            transitions=record.lease_transitions if record is not None else 0,
        )
        previous, self.term = self.term, term
        if record is not None and term.holder is not None and record.lease_duration_seconds:
            self.lease_duration = float(record.lease_duration_seconds)
        renewed = record.renew_time if record is not None else None
        if term != previous and not (previous is None and snapshot is None):
            self.renewals = 0
            self._announce(term, previous)
        elif term.holder is not None and renewed != self._renew_time:
            self.renewals += 1
        self._renew_time = renewed
        self._changed.set()
        self._changed = anyio.Event()

    def _announce(self, term: _Term, previous: _Term | None) -> None:
        if term.holder is None:
            before = previous.holder if previous is not None else None
            self._timeline.line("lease", f"free (released by {before})" if before else "free")
            return
        what = f"holder {term.holder:<{self._timeline.width}}  transitions {term.transitions}"
        expected = self._expected
        if expected is not None and term.holder != expected.leader:
            seconds = anyio.current_time() - expected.since
            self.takeovers.append(
                Takeover(
                    kind=expected.kind,
                    leader=expected.leader,
                    successor=term.holder,
                    seconds=seconds,
                    lease_duration=expected.lease_duration,
                )
            )
            self._expected = None
            what += f"  <- took over {seconds:.3f}s after the {expected.kind.signal.name}"
            if expected.kind is StopKind.HARD:
                excess = seconds - expected.lease_duration
                what += f" (lease duration {expected.lease_duration:g}s {excess:+.3f}s)"
        self._timeline.line("lease", what)

    def expect_takeover(self, kind: StopKind, leader: str) -> None:
        """Time the next change of holder away from ``leader``, starting now."""
        self._expected = _Expected(kind, leader, anyio.current_time(), self.lease_duration)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()


@final
class _Candidate:
    """One candidate process, its output relayed to the timeline under its identity."""

    def __init__(
        self,
        identity: str,
        command: Sequence[str],
        timeline: _Timeline,
        on_unexpected_exit: Callable[[_Candidate, str], None],
    ) -> None:
        self.identity = identity
        self._command = list(command)
        self._timeline = timeline
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
        self._timeline.line(self.identity, f"started (pid {process.pid})")
        try:
            task_status.started()
            async with anyio.create_task_group() as relays:
                relays.start_soon(self._relay, process.stdout, True)
                relays.start_soon(self._relay, process.stderr, False)
            code = await process.wait()
            self._timeline.line(self.identity, _describe_exit(code))
            if not self._signalled:
                self._on_unexpected_exit(self, _describe_exit(code))
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    with anyio.move_on_after(_KILL_WAIT):
                        await process.wait()
                    self._timeline.line(self.identity, "killed (SIGKILL) while shutting down")
                with anyio.move_on_after(_KILL_WAIT):
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
        self._timeline.line(self.identity, line.rstrip())


def _describe_exit(code: int) -> str:
    if code == 0:
        return "exited (code 0)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@final
class _Demo:
    def __init__(self, settings: DemoSettings, write: Write) -> None:
        self._settings = settings
        self._write = write
        width = max(len("lease"), len(self._identity(settings.candidates)))
        self._timeline = _Timeline(write, width)
        self._tracker = _LeaseTracker(self._timeline, settings.timings.lease_duration)
        self._candidates: dict[str, _Candidate] = {}
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
            self._summary()

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
        from .testing import LeaseApiServer

        settings = self._settings
        async with LeaseApiServer() as server:
            self._kubeconfig = server.kubeconfig(user="admin")
            self._header(str(server.url))
            lock = await LeaseLock.from_kubeconfig(
                settings.lease, settings.namespace, config_file=self._kubeconfig
            )
            # The candidates' runners live in ``tg``; a signal cancels only the script, and
            # every candidate is then stopped the same way as at the end of a full run.
            async with lock, anyio.create_task_group() as tg:
                view = LeaseView()
                view.add_listener(self._tracker.observe)
                try:
                    with self._script_scope:
                        await tg.start(self._follow, lock, view)
                        await self._script(tg)
                except (_DemoFailed, LeaderElectionError, OSError) as exc:
                    self.error = str(exc) or type(exc).__name__
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._stop_everyone()
                    tg.cancel_scope.cancel()

    async def _follow(
        self, lock: LeaseLock, view: LeaseView, *, task_status: TaskStatus[None]
    ) -> None:
        await follow(
            lock,
            view,
            timings=self._settings.timings,
            clock=LoopClock(),
            rng=random.Random(),
            task_status=task_status,
        )

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

    async def _start(self, tg: TaskGroup, identity: str) -> _Candidate:
        assert self._kubeconfig is not None
        settings = self._settings
        timings = settings.timings
        command = [
            sys.executable,
            "-m",
            "leaderelect._demo",
            "candidate",
            f"--kubeconfig={self._kubeconfig}",
            f"--lease={settings.lease}",
            f"--namespace={settings.namespace}",
            f"--identity={identity}",
            f"--lease-duration={timings.lease_duration!r}",
            f"--renew-deadline={timings.renew_deadline!r}",
            f"--retry-period={timings.retry_period!r}",
            f"--work-interval={_WORK_INTERVAL!r}",
            "--stop-on-stdin-eof",
        ]
        command += ["--verbose"] * settings.verbosity
        candidate = _Candidate(identity, command, self._timeline, self._candidate_failed)
        self._candidates[identity] = candidate
        await tg.start(candidate.run)
        return candidate

    def _candidate_failed(self, candidate: _Candidate, how: str) -> None:
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
            what = f"SIGTERM -> {leader} (graceful stop: leaving leading() releases the lease)"
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
        with anyio.move_on_after(_KILL_WAIT):
            for candidate in running:
                await candidate.exited.wait()
        if not self.interrupted:
            with anyio.move_on_after(_FREE_WAIT):
                await self._tracker.wait_for(lambda: self._tracker.holder is None)

    # -- output ------------------------------------------------------------------------------

    def _header(self, url: str) -> None:
        settings = self._settings
        timings = settings.timings
        write = self._write
        write(
            f"leaderelect demo: {settings.candidates} candidate processes, "
            f"one Lease ({settings.namespace}/{settings.lease})"
        )
        write(f"  api server   {url} (embedded, in this process)")
        write(
            f"  timings      lease duration {timings.lease_duration:g}s, renew deadline "
            f"{timings.renew_deadline:g}s, retry period {timings.retry_period:g}s"
        )
        write("  script       SIGTERM the leader, then SIGKILL the next one; time each takeover")
        write("")
        self._timeline.heading()

    def _summary(self) -> None:
        takeovers = self._tracker.takeovers
        width = max(len("candidate"), *(len(t.leader) for t in takeovers))
        width = max(width, *(len(t.successor) for t in takeovers))
        rows = [
            (
                f"{t.kind.value} ({t.kind.signal.name})",
                t.leader,
                t.successor,
                f"{t.seconds:.3f}s",
                f"{t.excess:+.3f}s",
            )
            for t in takeovers
        ]
        header = ("takeover", "stopped", "new leader", "time", "vs lease duration")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
        widths[1] = widths[2] = max(widths[1], widths[2], width)

        def row(cells: Sequence[str]) -> str:
            return (
                f"  {cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:<{widths[2]}}"
                f"  {cells[3]:>{widths[3]}}  {cells[4]:>{widths[4]}}"
            )

        self._write("")
        self._write("summary")
        self._write(row(header))
        for cells in rows:
            self._write(row(cells))
        durations = ", ".join(f"{d:g}s" for d in sorted({t.lease_duration for t in takeovers}))
        self._write("  a released lease is taken over at once; an abandoned one only when it")
        self._write(f"  expires, a lease duration ({durations}) after its holder's last renewal")


async def run_demo(settings: DemoSettings, write: Write) -> DemoReport:
    """Run the demo, writing its timeline and summary line by line through ``write``.

    Returns when every candidate process has exited; SIGINT or SIGTERM cut it short (the
    candidates are still stopped, and the report says ``interrupted``).
    """
    demo = _Demo(settings, write)
    await demo.run()
    return demo.report()


# --------------------------------------------------------------------------------------------
# The child: one candidate
# --------------------------------------------------------------------------------------------


def _say(text: str) -> None:
    """A candidate's one way to speak: a line on stdout, which the demo relays."""
    try:
        print(text, flush=True)
    except (BrokenPipeError, ValueError):  # the demo is gone; the stdin watch stops us
        pass


@dataclass(frozen=True, slots=True)
class _CandidateOptions:
    kubeconfig: Path
    lease: str
    namespace: str
    identity: str
    timings: Timings
    work_interval: float
    stop_on_stdin_eof: bool


@final
class _CandidateRun:
    """Campaign, lead and work until asked to stop; stepping down leaves ``leading()``."""

    def __init__(self, elector: LeaderElector, stop: anyio.Event, work_interval: float) -> None:
        self._elector = elector
        self._stop = stop
        self._work_interval = work_interval
        self._leading = False

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._stop_campaigning, tg.cancel_scope)
            await self._campaign_and_lead()
            tg.cancel_scope.cancel()

    async def _stop_campaigning(self, scope: anyio.CancelScope) -> None:
        await self._stop.wait()
        if not self._leading:  # a leader leaves its leading() block by itself
            scope.cancel()

    async def _campaign_and_lead(self) -> None:
        elector = self._elector
        _say(f"campaigning for lease {elector.lease}")
        while not self._stop.is_set():
            try:
                async with elector.leading() as leadership:
                    self._leading = True
                    _say(f"leading: won term {leadership.token.transitions}, working")
                    async with anyio.create_task_group() as work:
                        work.start_soon(self._work, leadership)
                        await self._stop.wait()
                        work.cancel_scope.cancel()
                    _say("stepping down: leaving leading(), which releases the lease")
                _say("stepped down")
            except LeadershipLost as lost:
                _say(f"lost the lease ({lost}); campaigning again")
            finally:
                self._leading = False

    async def _work(self, leadership: Leadership) -> None:
        step = 0
        while True:
            await anyio.sleep(self._work_interval)
            step += 1
            _say(
                f"work step {step} (term {leadership.token.transitions}, "
                f"leadership guaranteed for {leadership.time_left():.1f}s)"
            )


async def _stop_on_signals(
    stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not stop.is_set():
                _say(f"{signal.Signals(signum).name} received")
                stop.set()


async def _stop_on_stdin_eof(stop: anyio.Event) -> None:
    """Stop when stdin reaches end of file: the demo that holds its other end has exited."""
    fd = sys.stdin.fileno()
    while True:
        await anyio.wait_readable(fd)
        if not os.read(fd, 4096):
            break
    if not stop.is_set():
        _say("the demo has gone away; stopping")
        stop.set()


async def _run_candidate(options: _CandidateOptions) -> int:
    timings = options.timings
    try:
        lock = await LeaseLock.from_kubeconfig(
            options.lease, options.namespace, config_file=options.kubeconfig
        )
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    stop = anyio.Event()
    async with lock:
        elector = LeaderElector(
            lock,
            identity=options.identity,
            lease_duration=timings.lease_duration,
            renew_deadline=timings.renew_deadline,
            retry_period=timings.retry_period,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(_stop_on_signals, stop)  # before saying "campaigning"
            if options.stop_on_stdin_eof:
                tg.start_soon(_stop_on_stdin_eof, stop)
            await _CandidateRun(elector, stop, options.work_interval).run()
            tg.cancel_scope.cancel()
    return 0


def candidate_main(argv: Sequence[str] | None = None) -> int:
    """``python -m leaderelect._demo candidate ...``: one candidate of the demo (internal)."""
    parser = argparse.ArgumentParser(
        prog="python -m leaderelect._demo",
        description="One candidate of `leaderelect demo` (started by the demo itself).",
    )
    parser.add_argument("role", choices=["candidate"])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--lease", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--identity", required=True)
    parser.add_argument("--lease-duration", type=float, default=DEMO_TIMINGS.lease_duration)
    parser.add_argument("--renew-deadline", type=float, default=DEMO_TIMINGS.renew_deadline)
    parser.add_argument("--retry-period", type=float, default=DEMO_TIMINGS.retry_period)
    parser.add_argument("--work-interval", type=float, default=_WORK_INTERVAL)
    parser.add_argument("--stop-on-stdin-eof", action="store_true")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    try:
        timings = Timings(args.lease_duration, args.renew_deadline, args.retry_period)
    except ConfigError as exc:
        parser.error(str(exc))
    from ._cli import configure_logging

    configure_logging(args.verbose, timestamps=False)
    options = _CandidateOptions(
        kubeconfig=args.kubeconfig,
        lease=args.lease,
        namespace=args.namespace,
        identity=args.identity,
        timings=timings,
        work_interval=args.work_interval,
        stop_on_stdin_eof=args.stop_on_stdin_eof,
    )
    try:
        return anyio.run(_run_candidate, options)
    except KeyboardInterrupt:  # only before the signal receiver is installed
        return 130


if __name__ == "__main__":
    sys.exit(candidate_main())
