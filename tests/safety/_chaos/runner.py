"""Playing schedules: against a fresh server, checked, and many at once summed up.

:func:`run_schedule` plays a schedule against a fresh
:class:`~leaderelect.testing.LeaseApiServer` and checks the election with
:func:`~leaderelect.testing.check_election`; :func:`run_schedules` plays many at once and sums
them up in a :class:`SoakSummary`; :func:`play_faults` plays timed server faults next to code
under test.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from leaderelect.testing import (
    ElectionReport,
    ElectionViolation,
    Fault,
    FaultHandle,
    Hang,
    LeadershipLog,
    LeaseApiServer,
    RequestCounter,
    RequestInfo,
    StallWatch,
    WorkInterval,
    check_election,
)
from leaderelect.testing._checker import LIVENESS_EPSILON
from leaderelect.testing._faults import Exchange, Selector, When

from .candidate import ChaosCandidate
from .checks import CandidateRecord, Journal, check_deployment, starts_term, term_of
from .schedules import (
    LEADER,
    Crowd,
    CutWatches,
    DeleteLease,
    Event,
    FaultWindow,
    Interrupt,
    Kill,
    LoopStall,
    Schedule,
    SilentWatch,
    StallWatches,
    Stop,
    fault_kind,
)

__all__ = [
    "FINDINGS",
    "SHUTDOWN_GRACE",
    "LagMonitor",
    "ScheduleResult",
    "SoakSummary",
    "TakeoverTrap",
    "TimedRequests",
    "finding_counts",
    "play_faults",
    "run_schedule",
    "run_schedules",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleResult:
    """A schedule that ran and passed every check.

    Attributes:
        schedule: what ran.
        report: the checks' figures.
        fault_hits: requests each server fault kind acted on, and how many times each fault
            of deployments acted (a Lease deleted, a client crowded, a watch silenced, a
            ``leading()`` cancelled).
        wall_time: seconds it took.
    """

    schedule: Schedule
    report: ElectionReport
    fault_hits: collections.Counter[str]
    wall_time: float


class LagMonitor:
    """Measures how late the event loop runs: each lag is a pause of everything on it.

    A stalled shared loop delays every candidate and the server alike; the runner excuses
    liveness (never safety) while it lasts. Run :meth:`run` in a task group.

    Args:
        interval: how often to look, in seconds.
        threshold: lateness below this is not recorded.
    """

    def __init__(self, interval: float = 0.02, threshold: float = 0.03) -> None:
        self.interval = interval
        self.threshold = threshold
        self.episodes: list[tuple[float, float]] = []
        self.worst = 0.0

    async def run(self) -> None:
        """Watch the loop until cancelled."""
        while True:
            expected = time.monotonic() + self.interval
            await anyio.sleep(self.interval)
            late = time.monotonic() - expected
            self.worst = max(self.worst, late)
            if late > self.threshold:
                self.episodes.append((expected, expected + late))

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        """The lag episodes overlapping ``[start, end]``."""
        return [(low, high) for low, high in self.episodes if high > start and low < end]


class TimedRequests(RequestCounter):
    """A server's request counter that also keeps when each request arrived (the reference
    clock), for the checks that ask whether a candidate sent a request in time."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, RequestInfo]] = []
        self.readers: set[tuple[str | None, str | None, str | None]] = set()
        """(user, namespace, name) of each Lease a user has read (a GET answered 200)."""

    def record(self, info: RequestInfo) -> None:
        super().record(info)
        self.arrivals.append((time.monotonic(), info))

    def record_answer(self, info: RequestInfo, code: int) -> None:
        super().record_answer(info, code)
        if info.verb == "get" and code == 200:
            self.readers.add((info.user, info.namespace, info.name))


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TakeoverTrap(Fault):
    """Calls ``spring`` after each matching write has been handled (``when="after"``: a
    write that succeeded has committed); holds the answer the seconds ``spring`` returns.

    Lets nothing else happen: the request goes on to its answer.
    """

    verb: Selector = ("create", "update")
    when: When = "after"
    spring: Callable[[], float] = dataclasses.field(default=lambda: 0.0, compare=False)

    @property
    def terminal(self) -> bool:
        return False

    async def inflict(self, exchange: Exchange) -> web.StreamResponse | None:
        hold = self.spring()
        if hold > 0:
            await anyio.sleep(hold)
        return None


async def _sleep_until(log: LeadershipLog, moment: float) -> None:
    await anyio.sleep(max(0.0, moment - log.now()))


async def run_schedule(
    schedule: Schedule,
    *,
    epsilon: float = LIVENESS_EPSILON,
    lag: LagMonitor | None = None,
    on_log: Callable[[LeadershipLog, LeaseApiServer], None] | None = None,
) -> ScheduleResult:
    """Play ``schedule`` against a fresh :class:`LeaseApiServer`, then check the election.

    The election is judged by :func:`~leaderelect.testing.check_election`, and by the checks
    of :func:`~.checks.check_deployment` (terms per process, zombie terms, cancelled
    takeovers, crowded leaders, silent watches).

    Args:
        schedule: what to play.
        epsilon: the liveness slack (see :func:`~leaderelect.testing.liveness_bound`).
        lag: a running :class:`LagMonitor` of this loop (default: one for this run); its
            episodes excuse liveness.
        on_log: called with the log and the server once they exist (to watch a run).

    Raises:
        ElectionViolation: a check failed, or a candidate raised; the message starts with the
            seed and ends with the schedule.
    """
    started = time.monotonic()
    lease, namespace = "chaos", "default"
    log = LeadershipLog()
    hits: collections.Counter[str] = collections.Counter()
    server = LeaseApiServer()
    requests = TimedRequests()
    server.requests = requests
    journal = Journal()
    hangs: list[str] = []
    async with server:
        if on_log is not None:
            on_log(log, server)
        candidates = {
            spec.name: ChaosCandidate(
                server,
                spec.name,
                log,
                lease=lease,
                namespace=namespace,
                timings=schedule.timings,
                clock_rate=spec.clock_rate,
                own_loop=spec.own_loop,
                loop_rate=spec.loop_rate,
                watch=spec.watch,
                seed=schedule.seed * 100 + index,
                identity=spec.identity,
                hook_failures=spec.hook_failures,
                stop_on_hook_error=spec.stop_on_hook_error,
            )
            for index, spec in enumerate(schedule.candidates)
        }
        windows: list[tuple[FaultWindow, FaultHandle]] = []
        t0 = log.now()
        async with anyio.create_task_group() as tg:
            own_monitor = lag is None
            monitor = lag if lag is not None else LagMonitor()
            if own_monitor:
                tg.start_soon(monitor.run)
            timeline: list[tuple[float, int, Callable[[], None]]] = []

            def at(moment: float, action: Callable[[], None]) -> None:
                timeline.append((moment, len(timeline), action))

            for spec in schedule.candidates:
                at(spec.start, _starter(tg, candidates[spec.name]))

            stage = _Stage(
                server=server,
                lease=f"{namespace}/{lease}",
                candidates=candidates,
                windows=windows,
                journal=journal,
                spawn=tg.start_soon,
                timings=schedule.timings,
            )
            for event in schedule.events:
                _plan(event, at, stage)
            stopped = anyio.Event()

            async def watchdog() -> None:
                """A schedule whose candidates do not end is a finding too (a hang)."""
                await stopped.wait()
                with anyio.move_on_after(SHUTDOWN_GRACE) as grace:
                    # Candidates in threads of their own finish there: look, do not wait.
                    while not all(c.finished for c in candidates.values()):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                if grace.cancelled_caught:
                    hangs.append(_hang_report(candidates, t0))
                    # Said at once: a candidate stuck in a thread of its own keeps this
                    # schedule from ever returning its verdict.
                    sys.stderr.write(f"\nseed {schedule.seed}: {hangs[-1]}\n")
                    for candidate in candidates.values():
                        candidate.kill()
                    tg.cancel_scope.cancel()

            tg.start_soon(watchdog)
            for moment, _, action in sorted(timeline):
                await _sleep_until(log, t0 + moment)
                action()
            await _sleep_until(log, t0 + schedule.duration)
            until = log.now()
            for window, handle in windows:
                hits[fault_kind(window)] += handle.hits
            hits.update(journal.acted)
            server.faults.clear()
            server.faults.release()
            for candidate in candidates.values():
                candidate.uncrowd()
                candidate.stop()
            stopped.set()
            if own_monitor:
                tg.cancel_scope.cancel()
        writes = server.writes
    context = f"seed {schedule.seed}"
    errors = [f"{c.name} raised {c.error!r}" for c in candidates.values() if c.error]
    lags = monitor.between(t0, until)
    # The writes of the shutdown (releases, renewals on their way) commit after ``until``: a
    # lag then delays them as much as one before.
    lags_to_the_end = monitor.between(t0, time.monotonic())
    findings: list[str] = []
    report: ElectionReport | None = None
    try:
        report = check_election(
            log.intervals,
            writes,
            lease=f"{namespace}/{lease}",
            timings=schedule.timings,
            since=t0 + min(spec.start for spec in schedule.candidates),
            until=until,
            excused=[*((t0 + low, t0 + high) for low, high in schedule.excused()), *lags],
            epsilon=epsilon,
            rate_tolerance=schedule.fastest_clock(),
            context=context,
        )
    except ElectionViolation as exc:
        findings += exc.findings
    findings += check_deployment(
        writes,
        requests.arrivals,
        [_record(c, log) for c in candidates.values()],
        journal,
        lease=f"{namespace}/{lease}",
        timings=schedule.timings,
        until=until,
        twins=[name for names in schedule.twins().values() for name in names],
        rate_tolerance=schedule.fastest_clock(),
        lags=lags_to_the_end,
    )
    findings += errors
    findings += hangs
    if findings or report is None:
        details = _timeline(schedule, log, writes, t0, journal, requests.arrivals)
        raise ElectionViolation([*_abridged(findings), "\n" + details], context)
    return ScheduleResult(schedule, report, hits, time.monotonic() - started)


SHUTDOWN_GRACE = 15.0
"""Seconds the candidates of a schedule have to end once stopped (a release is bounded by the
renew deadline); past that the schedule fails as a hang, with the stacks of what still runs."""


def _hang_report(candidates: dict[str, ChaosCandidate], t0: float) -> str:
    """What still runs when a schedule hangs: each unfinished candidate, and the await chain of
    every task (and the stack of every candidate thread) that runs our code."""
    stuck = sorted(name for name, c in candidates.items() if not c.finished)
    lines = [
        f"hang: candidates {', '.join(stuck)} still running {SHUTDOWN_GRACE:g}s after they "
        f"were stopped (at {time.monotonic() - t0:.3f})"
    ]
    for task in asyncio.all_tasks():
        chain = _await_chain(task.get_coro())
        if any("leaderelect" in where or "_chaos" in where for where in chain):
            lines.append(f"  task {task.get_name()}:")
            lines += [f"    {where}" for where in chain]
    threads = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        name = threads.get(ident, "")
        if name.startswith("candidate "):
            lines.append(f"  thread {name}:")
            lines += [f"    {line.strip()}" for line in traceback.format_stack(frame)[-12:]]
    return "\n".join(lines)


def _await_chain(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: each frame down its chain of awaits."""
    chain: list[str] = []
    while coro is not None and len(chain) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            frame = getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return chain


def _abridged(findings: Sequence[str], most: int = 5) -> list[str]:
    """At most ``most`` findings of each category (a thrashing Lease makes hundreds)."""
    kept: list[str] = []
    left_out: collections.Counter[str] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()
    for finding in findings:
        category = finding.split(":", 1)[0]
        seen[category] += 1
        if seen[category] <= most:
            kept.append(finding)
        else:
            left_out[category] += 1
    kept += [f"{category}: … and {n} more like these" for category, n in left_out.items()]
    return kept


def _record(candidate: ChaosCandidate, log: LeadershipLog) -> CandidateRecord:
    """What the checks need to know of ``candidate``, from its run and the log."""
    intervals = [i for i in log.intervals if i.candidate == candidate.name]
    terms: dict[tuple[str, int], WorkInterval] = dict(
        zip(candidate.term_tokens, intervals, strict=False)
    )
    return CandidateRecord(
        name=candidate.name,
        identity=candidate.identity,
        watch=candidate.watch,
        hook_failures=candidate.metrics.chance if candidate.metrics is not None else 0.0,
        terms=terms,
        losses=[
            (moment, lost.reason.name)
            for moment, lost in zip(candidate.loss_times, candidate.losses, strict=True)
        ],
        hook_aborts=[moment for moment, entered in candidate.hook_errors if not entered],
        hook_exits=[moment for moment, entered in candidate.hook_errors if entered],
        ended=candidate.ended_at,
    )


ServerEvent = FaultWindow | CutWatches | StallWatches


async def play_faults(
    server: LeaseApiServer,
    events: Iterable[ServerEvent],
    *,
    lease: str = "default/chaos",
) -> list[tuple[FaultWindow, FaultHandle]]:
    """Play timed server faults against ``server``; returns when the last has ended.

    Times are seconds from the call. Run it next to the code under test, in the same task
    group. A :data:`LEADER` target is resolved to the holder of ``lease`` when the event
    happens.

    Returns:
        every fault applied (with :data:`LEADER` resolved) and its handle, for hit counts.
    """
    applied: list[tuple[FaultWindow, FaultHandle]] = []
    timeline: list[tuple[float, int, Callable[[], None]]] = []

    def at(moment: float, action: Callable[[], None]) -> None:
        timeline.append((moment, len(timeline), action))

    async with anyio.create_task_group() as tg:
        stage = _Stage(server=server, lease=lease, windows=applied, spawn=tg.start_soon)
        for event in events:
            _plan(event, at, stage)
        started = time.monotonic()
        for moment, _, action in sorted(timeline):
            await anyio.sleep(max(0.0, started + moment - time.monotonic()))
            action()
    return applied


def _starter(tg: Any, candidate: ChaosCandidate) -> Callable[[], None]:
    return lambda: tg.start_soon(candidate.run, name=f"candidate {candidate.name}")


@dataclasses.dataclass
class _Stage:
    """What planned events act on: the server, the candidates (none for ``play_faults``), and
    where they record what they did."""

    server: LeaseApiServer
    lease: str
    windows: list[tuple[FaultWindow, FaultHandle]]
    spawn: Callable[..., Any]
    candidates: dict[str, ChaosCandidate] = dataclasses.field(default_factory=dict)
    journal: Journal = dataclasses.field(default_factory=Journal)
    timings: Any = None

    @property
    def namespace(self) -> str:
        return self.lease.partition("/")[0]

    @property
    def name(self) -> str:
        return self.lease.partition("/")[2]

    def holder(self) -> str | None:
        """Who holds the Lease now: the server user that wrote its current term (a candidate's
        name), or its ``holderIdentity`` when no candidate did."""
        stored = self.server.lease(self.namespace, self.name)
        holder = ((stored or {}).get("spec") or {}).get("holderIdentity")
        if not isinstance(holder, str) or not holder:
            return None
        if not self.candidates:
            return holder
        term = term_of(stored)
        for write in reversed(self.server.writes):
            if (
                write.namespace == self.namespace
                and write.name == self.name
                and term_of(write.lease_after) == term
                and starts_term(write)
            ):
                return write.user
        return holder

    def resolve(self, name: str | None) -> str | None:
        """A target: :data:`LEADER` becomes the holder (a live candidate), else None."""
        if name != LEADER:
            return name
        holder = self.holder()
        if not self.candidates:
            return holder
        alive = holder in self.candidates and not self.candidates[holder].killed
        return holder if alive else None


def _plan(event: Event, at: Callable[[float, Callable[[], None]], None], stage: _Stage) -> None:
    """Put ``event`` on the timeline; :data:`LEADER` targets are resolved when it happens."""
    server, journal, candidates, windows = (
        stage.server,
        stage.journal,
        stage.candidates,
        stage.windows,
    )
    now = time.monotonic

    if isinstance(event, FaultWindow):
        window = event
        opened: list[tuple[Fault, float]] = []

        def open_window() -> None:
            fault = window.fault
            if fault.user == LEADER:
                user = stage.resolve(LEADER)
                if user is None:
                    return
                fault = dataclasses.replace(fault, user=user)
            opened.append((fault, now()))
            windows.append((dataclasses.replace(window, fault=fault), server.faults.add(fault)))
            if window.cut:
                assert fault.user is None or isinstance(fault.user, str)
                server.faults.cut_watches(user=fault.user)

        def close_window() -> None:
            for fault, since in opened:
                for applied, handle in windows:
                    if applied.fault is fault:
                        handle.remove()
                server.faults.release(fault)
                target = fault.user if isinstance(fault.user, str) else None
                journal.disturb(since, now(), target, fault_kind(window))

        at(window.start, open_window)
        at(window.end, close_window)
    elif isinstance(event, StallWatches):
        stall = event
        stalled: list[tuple[str, Fault, float]] = []

        def open_stall() -> None:
            user = stage.resolve(stall.user)
            if user is None:
                return
            fault = StallWatch(user=user)
            stalled.append((user, fault, now()))
            applied = FaultWindow(stall.start, stall.end, fault)
            windows.append((applied, server.faults.add(fault)))
            server.faults.stall_watches(user=user)

        def close_stall() -> None:
            for user, fault, since in stalled:
                for applied, handle in windows:
                    if applied.fault is fault:
                        handle.remove()
                server.faults.release(fault)
                server.faults.resume_watches(user=user)
                journal.disturb(since, now(), user, "StallWatches")

        at(stall.start, open_stall)
        at(stall.end, close_stall)
    elif isinstance(event, CutWatches):
        cut = event

        def cut_now() -> None:
            user = stage.resolve(cut.user)
            if user is not None or cut.user is None:
                server.faults.cut_watches(user=user)
                journal.disturb(now(), now(), user, "CutWatches")

        at(cut.at, cut_now)
    elif isinstance(event, LoopStall):
        loop_stall = event

        def stall_now() -> None:
            name = stage.resolve(loop_stall.candidate)
            if name is not None and candidates[name].own_loop:
                journal.disturb(now(), now() + loop_stall.seconds, name, "LoopStall")
                candidates[name].stall(loop_stall.seconds)

        at(loop_stall.at, stall_now)
    elif isinstance(event, (Kill, Stop)):
        ending = event

        def end_now() -> None:
            name = stage.resolve(ending.candidate)
            if name is None or candidates[name].stopping:
                return
            if isinstance(ending, Kill):
                journal.disturb(now(), math.inf, name, "kill")
                candidates[name].kill()
            else:
                journal.disturb(now(), math.inf, name, "stop")
                candidates[name].stop()

        at(ending.at, end_now)
    elif isinstance(event, DeleteLease):
        _plan_deletion(event, at, stage)
    elif isinstance(event, Crowd):
        crowd = event
        crowded: list[tuple[str, float]] = []

        def crowd_now() -> None:
            name = stage.resolve(crowd.candidate)
            if name is None or candidates[name].stopping:
                return
            crowded.append((name, now()))
            journal.count("Crowd")
            candidates[name].crowd(crowd.requests)

        def uncrowd_now() -> None:
            for name, since in crowded:
                candidates[name].uncrowd()
                journal.crowds.append((name, since, now()))
                journal.disturb(since, now(), name, "crowd")

        at(crowd.start, crowd_now)
        at(crowd.end, uncrowd_now)
    elif isinstance(event, SilentWatch):
        silent = event

        def silence_now() -> None:
            name = stage.resolve(silent.user)
            if name is None:
                return
            silenced = server.faults.stall_watches(
                user=name, namespace=stage.namespace, name=stage.name
            )
            journal.silences.append((name, now(), silenced))
            journal.disturb(now(), now(), name, "silent-watch")
            if silenced:
                journal.count("SilentWatch")

        at(silent.at, silence_now)
    else:
        _plan_interrupt(event, at, stage)


def _plan_deletion(
    event: DeleteLease, at: Callable[[float, Callable[[], None]], None], stage: _Stage
) -> None:
    """Cut the holder off, delete the Lease as an admin, heal the partition."""
    server, journal = stage.server, stage.journal
    cut_off: list[tuple[str, FaultHandle, float]] = []

    def partition_now() -> None:
        name = stage.resolve(event.holder)
        if name is None:
            return
        handle = server.faults.add(Hang(user=name))
        server.faults.cut_watches(user=name)
        cut_off.append((name, handle, time.monotonic()))

    def delete_now() -> None:
        if not cut_off:
            return
        blind = [
            name
            for name, candidate in stage.candidates.items()
            if not candidate.stopping and not _has_seen_lease(stage, name)
        ]
        if blind:
            # A candidate that has never seen the Lease cannot know it was held: to it, a
            # 404 is a Lease that never existed (so to client-go). Deleting a held Lease is
            # safe only once every candidate has seen it; docs/safety.md says so.
            journal.count("DeleteLease skipped (a candidate had not seen the Lease yet)")
            return
        stored = server.lease(stage.namespace, stage.name)
        held = term_of(stored) is not None
        journal.deletions.append((time.monotonic(), held))
        journal.disturb(time.monotonic(), time.monotonic(), None, "DeleteLease")
        journal.count("DeleteLease" if held else "DeleteLease (not held)")
        stage.spawn(_delete_lease, server, stage.namespace, stage.name, journal)

    def heal_now() -> None:
        for name, handle, since in cut_off:
            handle.remove()
            server.faults.release(handle.fault)
            journal.disturb(since, time.monotonic(), name, "DeleteLease partition")
            journal.count("DeleteLease partition hits", handle.hits)

    at(event.at, partition_now)
    at(event.at + event.delete_after, delete_now)
    at(event.at + event.partition, heal_now)


def _has_seen_lease(stage: _Stage, name: str) -> bool:
    """True once ``name`` has read the Lease or written it (the server says so)."""
    requests = stage.server.requests
    if isinstance(requests, TimedRequests) and (
        (name, stage.namespace, stage.name) in requests.readers
    ):
        return True
    return any(write.user == name for write in stage.server.writes)


async def _delete_lease(
    server: LeaseApiServer, namespace: str, name: str, journal: Journal
) -> None:
    """``kubectl delete lease``, as the admin. A fault for everyone (a 429, a refused
    connection) can refuse it, as it would refuse kubectl: counted, not raised."""
    url = f"{server.url}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
    headers = {"Authorization": f"Bearer {server.token('admin')}"}
    try:
        async with aiohttp.ClientSession() as http, http.delete(url, headers=headers) as answer:
            await answer.read()
            status = answer.status
    except aiohttp.ClientError:
        status = 0
    if status not in (200, 404):
        journal.count(f"DeleteLease refused ({status or 'no answer'})")


def _plan_interrupt(
    event: Interrupt, at: Callable[[float, Callable[[], None]], None], stage: _Stage
) -> None:
    """Cancel a candidate's ``leading()`` now, or once its next winning write has committed."""
    server, journal, candidates = stage.server, stage.journal, stage.candidates

    def cancel(name: str) -> None:
        journal.disturb(time.monotonic(), time.monotonic(), name, "interrupt")
        if event.stop:  # its caller is gone: no campaign again, and no graceful step-down
            journal.disturb(time.monotonic(), math.inf, name, "interrupt-stop")
            candidates[name].stop()
        candidates[name].interrupt()

    if event.takeover is None:

        def interrupt_now() -> None:
            name = stage.resolve(event.candidate)
            if name is not None and not candidates[name].stopping:
                journal.count("Interrupt")
                cancel(name)

        at(event.at, interrupt_now)
        return
    delay = event.takeover

    def set_trap() -> None:
        name = stage.resolve(event.candidate)
        if name is None or candidates[name].stopping:
            return
        seen = len(server.writes)
        handles: list[FaultHandle] = []

        def spring() -> float:
            writes = server.writes
            if not handles or len(writes) <= seen:
                return 0.0
            write = writes[-1]
            if write.user != name or not starts_term(write) or candidates[name].stopping:
                return 0.0
            handles.pop().remove()
            journal.traps.append((name, len(writes) - 1))
            journal.count("Interrupt at a takeover" + (" (then stop)" if event.stop else ""))
            asyncio.get_running_loop().call_later(delay, cancel, name)
            return event.hold

        handles.append(server.faults.add(TakeoverTrap(user=name, spring=spring)))

    at(event.at, set_trap)


def _timeline(
    schedule: Schedule,
    log: LeadershipLog,
    writes: Sequence[Any],
    t0: float,
    journal: Journal | None = None,
    arrivals: Sequence[tuple[float, RequestInfo]] = (),
) -> str:
    """The schedule, then what happened (relative times), for a failure message."""
    lines = [schedule.describe(), "work intervals (relative):"]
    for interval in log.intervals:
        end = "…" if interval.end is None else f"{interval.end - t0:.3f}"
        lines.append(f"  {interval.candidate} [{interval.start - t0:.3f}, {end}) {interval.token}")
    lines.append("terms, holder changes and deletions (relative):")
    for write in writes:
        if (
            (write.holder_before or "") != (write.holder_after or "")
            or starts_term(write)
            or write.verb in ("delete", "deletecollection")
        ):
            term = term_of(write.lease_after)
            lines.append(
                f"  {write.time - t0:.3f} {write.user} {write.verb} rv "
                f"{write.resource_version_before}->{write.resource_version_after} "
                f"{write.holder_before!r}->{write.holder_after!r}"
                + (f" term {term[1]}" if term is not None else "")
            )
    if journal is not None and journal.disturbances:
        lines.append("what was done (relative):")
        for d in sorted(journal.disturbances, key=lambda d: d.start):
            end = "" if d.end == d.start else f" to {d.end - t0:.3f}"
            lines.append(f"  {d.start - t0:.3f}{end} {d.kind} {d.target or 'everyone'}")
    silenced = {name for name, _, _ in journal.silences} if journal is not None else set()
    for name in sorted(silenced):
        moments = [
            f"{info.verb}@{moment - t0:.3f}"
            for moment, info in arrivals
            if info.user == name and info.verb in ("watch", "get") and info.name == "chaos"
        ]
        lines.append(f"reads and watches of {name} (relative): {' '.join(moments)}")
    return "\n".join(lines)


#: What each category of finding is called in the totals.
FINDINGS = {
    "safety:": "overlaps",
    "history:": "clobbers",
    "terms:": "clobbers",
    "liveness:": "liveness misses",
    "zombie:": "zombie terms",
    "unreleased:": "unreleased takeovers",
    "crowd:": "crowded leaders lost",
    "silent-watch:": "silent watches kept",
    "hang:": "hangs",
    "error:": "harness errors",
}


def finding_counts(messages: Iterable[str]) -> collections.Counter[str]:
    """How many failed schedules had each category of finding (one schedule counts once per
    category)."""
    counts: collections.Counter[str] = collections.Counter()
    for message in messages:
        counts.update({name for prefix, name in FINDINGS.items() if f"- {prefix}" in message})
        if " raised " in message:
            counts["candidate errors"] += 1
    return counts


@dataclasses.dataclass
class SoakSummary:
    """Totals over many schedules.

    Attributes:
        schedules: schedules run.
        failures: the failed schedules' seeds and messages.
        faults: faults injected, by kind.
        fault_hits: requests the server faults acted on, by kind (and the faults of
            deployments that acted).
        leaderships: work intervals over all schedules.
        handovers: holder changes over all schedules.
        worst_takeover: the slowest takeover (longest unexcused lapse) in any schedule.
        narrowest_gap: the smallest gap between two leaders' work in any schedule.
        worst_loop_lag: the longest the shared event loop ran late.
        wall_time: seconds the whole run took.
    """

    schedules: int = 0
    failures: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    fault_hits: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    leaderships: int = 0
    handovers: int = 0
    worst_takeover: float = 0.0
    narrowest_gap: float = math.inf
    worst_loop_lag: float = 0.0
    wall_time: float = 0.0

    def merge(self, other: SoakSummary) -> None:
        """Add another summary's totals (from another process, say)."""
        self.schedules += other.schedules
        self.failures += other.failures
        self.faults.update(other.faults)
        self.fault_hits.update(other.fault_hits)
        self.leaderships += other.leaderships
        self.handovers += other.handovers
        self.worst_takeover = max(self.worst_takeover, other.worst_takeover)
        self.narrowest_gap = min(self.narrowest_gap, other.narrowest_gap)
        self.worst_loop_lag = max(self.worst_loop_lag, other.worst_loop_lag)

    def add(self, result: ScheduleResult) -> None:
        """Count one passed schedule."""
        self.schedules += 1
        self.faults.update(result.schedule.kinds())
        self.fault_hits.update(result.fault_hits)
        self.leaderships += result.report.leaderships
        self.handovers += result.report.handovers
        self.worst_takeover = max(self.worst_takeover, result.report.slowest_takeover)
        if not math.isnan(result.report.narrowest_gap):
            self.narrowest_gap = min(self.narrowest_gap, result.report.narrowest_gap)

    def findings(self) -> collections.Counter[str]:
        """Failed schedules by category of finding (overlaps, clobbers, liveness misses...)."""
        return finding_counts(message for _, message in self.failures)

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        hits = ", ".join(f"{kind} {n}" for kind, n in sorted(self.fault_hits.items()))
        found = self.findings()
        categories = dict.fromkeys(FINDINGS.values(), 0) | dict(found)
        findings = ", ".join(f"{name} {n}" for name, n in categories.items())
        return (
            f"schedules {self.schedules}, failed {len(self.failures)} ({findings}), "
            f"leaderships {self.leaderships}, handovers {self.handovers}, "
            f"worst takeover {self.worst_takeover:.3f}s, "
            f"narrowest handover gap {self.narrowest_gap:.3f}s, "
            f"worst event-loop lag {self.worst_loop_lag:.3f}s, "
            f"wall time {self.wall_time:.1f}s\n"
            f"faults injected: {kinds}\nrequests hit by server faults, faults that acted: {hits}"
        )


async def run_schedules(
    schedules: Iterable[Schedule],
    *,
    concurrency: int = 16,
    epsilon: float = LIVENESS_EPSILON,
    on_result: Callable[[ScheduleResult | ElectionViolation, Schedule], None] | None = None,
) -> SoakSummary:
    """Play many schedules, ``concurrency`` at a time, each on a server of its own.

    Failures are collected, not raised: see ``SoakSummary.failures``.
    """
    summary = SoakSummary()
    started = time.monotonic()
    pending = iter(schedules)
    lock = anyio.Lock()
    running: dict[int, tuple[Schedule, float]] = {}

    async def overruns() -> None:
        """Say (once per seed, on stderr) what a schedule that never returns is stuck in."""
        reported: set[int] = set()
        while True:
            await anyio.sleep(1.0)
            for index, (schedule, since) in list(running.items()):
                late = time.monotonic() - since - schedule.duration
                if late > 2 * SHUTDOWN_GRACE and schedule.seed not in reported:
                    reported.add(schedule.seed)
                    chains = [
                        f"  task {task.get_name()}:\n"
                        + "\n".join(f"    {where}" for where in _await_chain(task.get_coro()))
                        for task in asyncio.all_tasks()
                    ]
                    sys.stderr.write(
                        f"\nseed {schedule.seed} (worker {index}) has not returned "
                        f"{late:.0f}s after its end; every task:\n" + "\n".join(chains) + "\n"
                    )

    async def worker(index: int) -> None:
        # Staggered: candidates starting together would load the CPU all at once.
        await anyio.sleep(index * 0.1)
        while True:
            async with lock:
                schedule = next(pending, None)
            if schedule is None:
                return
            running[index] = (schedule, time.monotonic())
            try:
                result = await run_schedule(schedule, epsilon=epsilon, lag=monitor)
            except Exception as exc:
                # A broken harness fails its schedule, with the seed, and the soak goes on.
                if not isinstance(exc, ElectionViolation):
                    trace = "".join(traceback.format_exception(exc))
                    finding = f"error: the schedule raised\n{trace}"
                    exc = ElectionViolation([finding], f"seed {schedule.seed}")
                summary.schedules += 1
                summary.failures.append((schedule.seed, str(exc)))
                if on_result is not None:
                    on_result(exc, schedule)
                continue
            summary.add(result)
            if on_result is not None:
                on_result(result, schedule)

    monitor = LagMonitor()
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        tg.start_soon(overruns)
        async with anyio.create_task_group() as workers:
            for index in range(concurrency):
                workers.start_soon(worker, index)
        tg.cancel_scope.cancel()
    summary.wall_time = time.monotonic() - started
    summary.worst_loop_lag = max(summary.worst_loop_lag, monitor.worst)
    return summary
