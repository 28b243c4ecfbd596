"""Playing schedules: against a fresh server, checked, and many at once summed up.

:func:`run_schedule` plays a schedule against a fresh
:class:`~leaderelect.testing.LeaseApiServer` and checks the election with
:func:`~leaderelect.testing.check_election`; :func:`run_schedules` plays many at once and sums
them up in a :class:`SoakSummary`; :func:`play_faults` plays timed server faults next to code
under test.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio

from leaderelect.testing import (
    ElectionReport,
    ElectionViolation,
    Fault,
    FaultHandle,
    LeadershipLog,
    LeaseApiServer,
    StallWatch,
    check_election,
)
from leaderelect.testing._checker import LIVENESS_EPSILON

from .candidate import ChaosCandidate
from .schedules import (
    LEADER,
    CutWatches,
    Event,
    FaultWindow,
    Kill,
    LoopStall,
    Schedule,
    StallWatches,
    fault_kind,
)

__all__ = [
    "LagMonitor",
    "ScheduleResult",
    "SoakSummary",
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
        fault_hits: requests each server fault kind acted on.
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

            def leader() -> str | None:
                stored = server.lease(namespace, lease)
                holder = ((stored or {}).get("spec") or {}).get("holderIdentity")
                return holder if isinstance(holder, str) and holder else None

            for event in schedule.events:
                _plan(event, at, server, candidates, windows, leader)
            for moment, _, action in sorted(timeline):
                await _sleep_until(log, t0 + moment)
                action()
            await _sleep_until(log, t0 + schedule.duration)
            until = log.now()
            for window, handle in windows:
                hits[fault_kind(window)] += handle.hits
            server.faults.clear()
            server.faults.release()
            for candidate in candidates.values():
                candidate.stop()
            if own_monitor:
                tg.cancel_scope.cancel()
        writes = server.writes
    context = f"seed {schedule.seed}"
    errors = [f"{c.name} raised {c.error!r}" for c in candidates.values() if c.error]
    try:
        report = check_election(
            log.intervals,
            writes,
            lease=f"{namespace}/{lease}",
            timings=schedule.timings,
            since=t0 + min(spec.start for spec in schedule.candidates),
            until=until,
            excused=[
                *((t0 + low, t0 + high) for low, high in schedule.excused()),
                *monitor.between(t0, until),
            ],
            epsilon=epsilon,
            rate_tolerance=schedule.fastest_clock(),
            context=context,
        )
    except ElectionViolation as exc:
        findings = [*exc.findings, *errors]
        raise ElectionViolation(
            [*findings, "\n" + _timeline(schedule, log, writes, t0)], context
        ) from None
    if errors:
        raise ElectionViolation([*errors, "\n" + _timeline(schedule, log, writes, t0)], context)
    return ScheduleResult(schedule, report, hits, time.monotonic() - started)


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
    namespace, _, name = lease.partition("/")
    applied: list[tuple[FaultWindow, FaultHandle]] = []
    timeline: list[tuple[float, int, Callable[[], None]]] = []

    def at(moment: float, action: Callable[[], None]) -> None:
        timeline.append((moment, len(timeline), action))

    def leader() -> str | None:
        stored = server.lease(namespace, name)
        holder = ((stored or {}).get("spec") or {}).get("holderIdentity")
        return holder if isinstance(holder, str) and holder else None

    for event in events:
        _plan(event, at, server, {}, applied, leader)
    started = time.monotonic()
    for moment, _, action in sorted(timeline):
        await anyio.sleep(max(0.0, started + moment - time.monotonic()))
        action()
    return applied


def _starter(tg: Any, candidate: ChaosCandidate) -> Callable[[], None]:
    return lambda: tg.start_soon(candidate.run, name=f"candidate {candidate.name}")


def _plan(
    event: Event,
    at: Callable[[float, Callable[[], None]], None],
    server: LeaseApiServer,
    candidates: dict[str, ChaosCandidate],
    windows: list[tuple[FaultWindow, FaultHandle]],
    leader: Callable[[], str | None],
) -> None:
    """Put ``event`` on the timeline; :data:`LEADER` targets are resolved when it happens."""

    def resolve(name: str | None) -> str | None:
        if name != LEADER:
            return name
        holder = leader()
        if not candidates:
            return holder
        alive = holder in candidates and not candidates[holder].killed
        return holder if alive else None

    if isinstance(event, FaultWindow):
        window = event
        opened: list[Fault] = []

        def open_window() -> None:
            fault = window.fault
            if fault.user == LEADER:
                user = resolve(LEADER)
                if user is None:
                    return
                fault = dataclasses.replace(fault, user=user)
            opened.append(fault)
            windows.append((dataclasses.replace(window, fault=fault), server.faults.add(fault)))
            if window.cut:
                assert fault.user is None or isinstance(fault.user, str)
                server.faults.cut_watches(user=fault.user)

        def close_window() -> None:
            for fault in opened:
                for applied, handle in windows:
                    if applied.fault is fault:
                        handle.remove()
                server.faults.release(fault)

        at(window.start, open_window)
        at(window.end, close_window)
    elif isinstance(event, StallWatches):
        stall = event
        stalled: list[tuple[str, Fault]] = []

        def open_stall() -> None:
            user = resolve(stall.user)
            if user is None:
                return
            fault = StallWatch(user=user)
            stalled.append((user, fault))
            applied = FaultWindow(stall.start, stall.end, fault)
            windows.append((applied, server.faults.add(fault)))
            server.faults.stall_watches(user=user)

        def close_stall() -> None:
            for user, fault in stalled:
                for applied, handle in windows:
                    if applied.fault is fault:
                        handle.remove()
                server.faults.release(fault)
                server.faults.resume_watches(user=user)

        at(stall.start, open_stall)
        at(stall.end, close_stall)
    elif isinstance(event, CutWatches):
        cut = event

        def cut_now() -> None:
            user = resolve(cut.user)
            if user is not None or cut.user is None:
                server.faults.cut_watches(user=user)

        at(cut.at, cut_now)
    elif isinstance(event, LoopStall):
        loop_stall = event

        def stall_now() -> None:
            name = resolve(loop_stall.candidate)
            if name is not None and candidates[name].own_loop:
                candidates[name].stall(loop_stall.seconds)

        at(loop_stall.at, stall_now)
    else:
        ending = event

        def end_now() -> None:
            name = resolve(ending.candidate)
            if name is None or candidates[name].stopping:
                return
            if isinstance(ending, Kill):
                candidates[name].kill()
            else:
                candidates[name].stop()

        at(ending.at, end_now)


def _timeline(schedule: Schedule, log: LeadershipLog, writes: Sequence[Any], t0: float) -> str:
    """The schedule, then what happened (relative times), for a failure message."""
    lines = [schedule.describe(), "work intervals (relative):"]
    for interval in log.intervals:
        end = "…" if interval.end is None else f"{interval.end - t0:.3f}"
        lines.append(f"  {interval.candidate} [{interval.start - t0:.3f}, {end}) {interval.token}")
    lines.append("holder changes (relative):")
    for write in writes:
        if (write.holder_before or "") != (write.holder_after or ""):
            lines.append(
                f"  {write.time - t0:.3f} {write.user} {write.verb} rv "
                f"{write.resource_version_before}->{write.resource_version_after} "
                f"{write.holder_before!r}->{write.holder_after!r}"
            )
    return "\n".join(lines)


@dataclasses.dataclass
class SoakSummary:
    """Totals over many schedules.

    Attributes:
        schedules: schedules run.
        failures: the failed schedules' seeds and messages.
        faults: faults injected, by kind.
        fault_hits: requests the server faults acted on, by kind.
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

    def __str__(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        hits = ", ".join(f"{kind} {n}" for kind, n in sorted(self.fault_hits.items()))
        return (
            f"schedules {self.schedules}, failed {len(self.failures)}, "
            f"overlaps {sum('safety:' in m for _, m in self.failures)}, "
            f"leaderships {self.leaderships}, handovers {self.handovers}, "
            f"worst takeover {self.worst_takeover:.3f}s, "
            f"narrowest handover gap {self.narrowest_gap:.3f}s, "
            f"worst event-loop lag {self.worst_loop_lag:.3f}s, "
            f"wall time {self.wall_time:.1f}s\n"
            f"faults injected: {kinds}\nrequests hit by server faults: {hits}"
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

    async def worker(index: int) -> None:
        # Staggered: candidates starting together would load the CPU all at once.
        await anyio.sleep(index * 0.1)
        while True:
            async with lock:
                schedule = next(pending, None)
            if schedule is None:
                return
            try:
                result = await run_schedule(schedule, epsilon=epsilon, lag=monitor)
            except ElectionViolation as exc:
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
        async with anyio.create_task_group() as workers:
            for index in range(concurrency):
                workers.start_soon(worker, index)
        tg.cancel_scope.cancel()
    summary.wall_time = time.monotonic() - started
    summary.worst_loop_lag = max(summary.worst_loop_lag, monitor.worst)
    return summary
