"""Checking an election from what really happened: work intervals and the Lease's write history.

Candidates record when their leader work *really* ran, on one reference clock shared by every
candidate (and by the server's write history), in a :class:`LeadershipLog`. The checks then
replay that record:

* :func:`check_safety`: no two work intervals overlap (the promise of ``leading()``);
* :func:`check_liveness`: after every end of leadership a new leader starts within a bound,
  except while a disturbance excuses it;
* :func:`check_lease_history`: every write of the Lease was based on its latest version, and
  no holder was replaced before its claim ran out on the server's clock;
* :func:`check_election`: all three, with the figures (leaderships, handovers, narrowest
  handover gap, slowest takeover) in an :class:`ElectionReport`.

A failed check raises :class:`ElectionViolation` (an ``AssertionError``) listing every finding,
so it reads as an ordinary test failure::

    log = LeadershipLog()
    async with elector.leading() as leadership:
        with log.working(elector.identity, leadership.token):
            await do_the_work()
    ...
    check_election(log.intervals, server.writes, lease="default/my-lease",
                   timings=elector.timings)

The reference clock defaults to :func:`time.monotonic`, which is also what the default asyncio
event loop uses, so it agrees with :attr:`WriteRecord.time` of an in-process
:class:`~leaderelect.testing.LeaseApiServer`, with candidates running in other threads, and
(on Linux, ``CLOCK_MONOTONIC`` being system-wide) with candidates in other processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .. import Timings
from ._requests import WriteRecord

__all__ = [
    "ElectionReport",
    "ElectionViolation",
    "LeadershipLog",
    "WorkInterval",
    "check_election",
    "check_lease_history",
    "check_liveness",
    "check_safety",
    "liveness_bound",
]

LIVENESS_EPSILON = 0.25
"""Seconds :func:`liveness_bound` allows beyond ``lease_duration + retry_period``: the watch
event's delivery, the takeover write's round trip and event-loop scheduling."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkInterval:
    """When one candidate's leader work ran: ``[start, end)`` on the reference clock.

    Attributes:
        candidate: who worked (its identity).
        token: the term's fencing token, as a string.
        start: when the work started.
        end: when it stopped; ``None`` while it still runs.
    """

    candidate: str
    token: str
    start: float
    end: float | None = None

    def end_or(self, default: float) -> float:
        """``end``, or ``default`` while the work still runs."""
        return default if self.end is None else self.end

    def __str__(self) -> str:
        end = "…" if self.end is None else f"{self.end:.3f}"
        return f"{self.candidate} [{self.start:.3f}, {end}) token {self.token}"


class ElectionViolation(AssertionError):
    """Raised by the checks when the record shows a broken promise; ``findings`` lists each."""

    def __init__(self, findings: Sequence[str], context: str = "") -> None:
        self.findings = tuple(findings)
        self.context = context
        head = f"{context}: " if context else ""
        lines = "\n  - ".join(self.findings)
        super().__init__(f"{head}{len(self.findings)} violation(s):\n  - {lines}")


class LeadershipLog:
    """Records when each candidate's leader work started and stopped, on one reference clock.

    Thread-safe: candidates running in other threads (with event loops of their own) record
    into the same log. Intervals measured elsewhere (another process) can be added with
    :meth:`add`.

    Args:
        clock: the reference clock, in seconds (default :func:`time.monotonic`).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._intervals: list[WorkInterval] = []
        self._listeners: list[Callable[[], None]] = []

    @property
    def clock(self) -> Callable[[], float]:
        """The reference clock."""
        return self._clock

    def now(self) -> float:
        """The reference clock's current reading."""
        return self._clock()

    def start(self, candidate: str, token: object) -> int:
        """Record that ``candidate`` started working now, in the term of ``token``.

        Returns:
            the interval's index, for :meth:`stop`.
        """
        return self.add(candidate, token, self._clock())

    def stop(self, index: int) -> None:
        """Record that the work of interval ``index`` stopped now (no-op when already ended)."""
        at = self._clock()
        with self._lock:
            interval = self._intervals[index]
            if interval.end is None:
                self._intervals[index] = dataclasses.replace(interval, end=at)
        self._notify()

    def add(self, candidate: str, token: object, start: float, end: float | None = None) -> int:
        """Record an interval measured elsewhere (on the same reference clock)."""
        with self._lock:
            self._intervals.append(WorkInterval(candidate, str(token), start, end))
            index = len(self._intervals) - 1
        self._notify()
        return index

    @contextlib.contextmanager
    def working(self, candidate: str, token: object) -> Iterator[int]:
        """Record the block as ``candidate``'s work: started on entry, stopped on any exit.

        Put it directly around the work, inside ``leading()``: the interval then ends when the
        work has really stopped (its cancellation delivered and unwound).
        """
        index = self.start(candidate, token)
        try:
            yield index
        finally:
            self.stop(index)

    @property
    def intervals(self) -> tuple[WorkInterval, ...]:
        """Every interval so far, in the order they started."""
        with self._lock:
            return tuple(self._intervals)

    def running(self) -> tuple[WorkInterval, ...]:
        """The intervals that have not ended."""
        return tuple(i for i in self.intervals if i.end is None)

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (from the recording thread) after each change; returns a remover."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()


# -- the checks ---------------------------------------------------------------------------------


def check_safety(
    intervals: Iterable[WorkInterval], *, tolerance: float = 0.0, context: str = ""
) -> float:
    """Assert that no two work intervals overlap.

    Args:
        intervals: the record (see :class:`LeadershipLog`).
        tolerance: seconds of overlap to accept (the resolution of how intervals were
            measured); 0 for in-process candidates.
        context: a prefix for the failure message (a seed, a test name).

    Returns:
        The narrowest gap between one interval's end and the next one's start (``inf`` with
        fewer than two intervals); negative when an overlap within ``tolerance`` was accepted.

    Raises:
        ElectionViolation: two intervals overlap by more than ``tolerance``.
    """
    ordered = sorted(intervals, key=lambda i: i.start)
    findings: list[str] = []
    narrowest = math.inf
    # Every pair, not just neighbours: a long interval can overlap several later ones.
    latest: WorkInterval | None = None
    for interval in ordered:
        if latest is not None:
            gap = interval.start - latest.end_or(math.inf)
            narrowest = min(narrowest, gap)
            if gap < -tolerance:
                overlap = min(interval.end_or(math.inf), latest.end_or(math.inf)) - interval.start
                findings.append(f"two leaders at once for {overlap:.3f}s: {latest} and {interval}")
        if latest is None or interval.end_or(math.inf) > latest.end_or(math.inf):
            latest = interval
    if findings:
        raise ElectionViolation(findings, context)
    return narrowest


def liveness_bound(timings: Timings, epsilon: float = LIVENESS_EPSILON) -> float:
    """The promised takeover time: the record's ``leaseDurationSeconds`` + ``retry_period`` + ε.

    A leader written with ``lease_duration`` claims ``ceil(lease_duration)`` whole seconds
    (``leaseDurationSeconds``); a follower takes over that long after it last saw the record
    change, and learns of a release or of its chance at once from its watch. ``retry_period``
    covers a follower that fell back to polling; ``epsilon`` (default
    :data:`LIVENESS_EPSILON`) the event's delivery, the write's round trip and scheduling.
    """
    return max(1, math.ceil(timings.lease_duration)) + timings.retry_period + epsilon


def check_liveness(
    intervals: Iterable[WorkInterval],
    *,
    bound: float,
    until: float,
    since: float | None = None,
    excused: Iterable[tuple[float, float]] = (),
    context: str = "",
) -> float:
    """Assert that leadership never lapses for longer than ``bound`` unless excused.

    A lapse runs from the moment no candidate works (or from ``since``, before the first
    interval) to the next start, or to ``until``. ``excused`` windows (a fault, a partition, a
    stall: times when no takeover is owed) stop its clock, which starts again from zero when
    the window ends. No stretch of a lapse outside every excused window may be longer than
    ``bound``.

    Args:
        intervals: the record.
        bound: the promised takeover time (see :func:`liveness_bound`).
        until: the end of the observation; a lapse still open then is checked up to it.
        since: the start of the observation (default: the first interval's start).
        excused: ``(start, end)`` windows during which a lapse is not counted.
        context: a prefix for the failure message.

    Returns:
        The longest unexcused stretch of any lapse: the slowest takeover seen (0 when
        leadership never lapsed).

    Raises:
        ElectionViolation: a lapse lasted longer than ``bound`` outside excused windows.
    """
    ordered = sorted(intervals, key=lambda i: i.start)
    windows = _merged(excused)
    findings: list[str] = []
    slowest = 0.0
    covered = since if since is not None else (ordered[0].start if ordered else until)
    for interval in [*ordered, None]:
        start = until if interval is None else min(interval.start, until)
        if start > covered:
            stretch, at = _longest_unexcused(covered, start, windows)
            slowest = max(slowest, stretch)
            if stretch > bound:
                ended = "the end" if interval is None else f"{start:.3f}"
                findings.append(
                    f"no leader from {covered:.3f} until {ended}: {stretch:.3f}s without an "
                    f"excuse (from {at:.3f}), more than the promised {bound:.3f}s"
                )
        if interval is None:
            break
        covered = max(covered, interval.end_or(math.inf))
        if covered >= until:
            break
    if findings:
        raise ElectionViolation(findings, context)
    return slowest


def _merged(windows: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for low, high in sorted(windows):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _longest_unexcused(
    low: float, high: float, windows: Sequence[tuple[float, float]]
) -> tuple[float, float]:
    """The longest stretch of ``[low, high]`` outside ``windows``, and where it starts."""
    longest, at, cursor = 0.0, low, low
    for start, end in windows:
        if end <= cursor or start >= high:
            continue
        if start - cursor > longest:
            longest, at = start - cursor, cursor
        cursor = max(cursor, end)
    if high - cursor > longest:
        longest, at = high - cursor, cursor
    return longest, at


def _spec(lease: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = (lease or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _duration(lease: Mapping[str, Any] | None, fallback: float) -> float:
    value = _spec(lease).get("leaseDurationSeconds")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return float(value)
    return fallback


def check_lease_history(
    writes: Iterable[WriteRecord],
    *,
    lease: str,
    fallback_duration: float,
    rate_tolerance: float = 1.0,
    context: str = "",
) -> int:
    """Assert that the Lease was never clobbered.

    Replays the server's committed writes of one Lease and checks, for each write:

    1. it was based on the latest version: its ``resource_version_before`` is the
       ``resource_version_after`` of the previous write of that Lease (a create follows
       nothing or a delete);
    2. when it changed the holder from one candidate to another, the previous holder's claim
       had run out on the server's clock: at least ``leaseDurationSeconds / rate_tolerance``
       had passed since the last write that changed the record. Every compliant follower
       restarts its clock at least then (client-go's only then; ours on any new version), so
       this is the bound that holds for a mixed fleet too. A free lease may be taken at once.

    Args:
        writes: the write history (``LeaseApiServer.writes``); other Leases are skipped.
        lease: ``"namespace/name"``.
        fallback_duration: the duration a follower assumes for a record without a valid
            ``leaseDurationSeconds`` (its own ``lease_duration``).
        rate_tolerance: how much faster than the server's clock a follower's clock may run
            (1.1 for 10 % fast); a faster clock ends a claim sooner.
        context: a prefix for the failure message.

    Returns:
        The number of writes that changed the holder.

    Raises:
        ElectionViolation: a write was not based on the latest version, or took a lease over
            early.
    """
    namespace, _, name = lease.partition("/")
    findings: list[str] = []
    previous: WriteRecord | None = None
    record_changed_at: float | None = None  # the last write that changed the spec
    changes = 0
    for write in writes:
        if write.namespace != namespace or write.name != name:
            continue
        expected = None
        if previous is not None and previous.verb not in ("delete", "deletecollection"):
            expected = previous.resource_version_after
        if write.resource_version_before != expected:
            findings.append(
                f"{write.verb} by {write.user} at {write.time:.3f} was based on "
                f"resourceVersion {write.resource_version_before}, not the latest ({expected})"
            )
        before, after = write.holder_before or "", write.holder_after or ""
        if after and after != before:
            changes += 1
            if before and record_changed_at is not None:
                claim = _duration(write.lease_before, fallback_duration) / rate_tolerance
                held_for = write.time - record_changed_at
                if held_for < claim:
                    findings.append(
                        f"{after!r} took the lease from {before!r} at {write.time:.3f}, "
                        f"{held_for:.3f}s after its record last changed: its claim of "
                        f"{claim:.3f}s had not run out"
                    )
        if _spec(write.lease_before) != _spec(write.lease_after):
            record_changed_at = write.time
        previous = write
    if findings:
        raise ElectionViolation(findings, context)
    return changes


@dataclasses.dataclass(frozen=True, slots=True)
class ElectionReport:
    """What :func:`check_election` found (all checks passed).

    Attributes:
        leaderships: work intervals recorded.
        handovers: writes that changed the holder.
        narrowest_gap: the smallest time between one leader's end and the next one's start.
        slowest_takeover: the longest lapse of leadership, from where its clock started.
        bound: the liveness bound that was checked.
    """

    leaderships: int
    handovers: int
    narrowest_gap: float
    slowest_takeover: float
    bound: float


def check_election(
    intervals: Iterable[WorkInterval],
    writes: Iterable[WriteRecord],
    *,
    lease: str,
    timings: Timings,
    until: float,
    since: float | None = None,
    excused: Iterable[tuple[float, float]] = (),
    epsilon: float = LIVENESS_EPSILON,
    rate_tolerance: float = 1.0,
    overlap_tolerance: float = 0.0,
    context: str = "",
) -> ElectionReport:
    """Run :func:`check_safety`, :func:`check_liveness` and :func:`check_lease_history`.

    Every finding of every check is reported together in one :class:`ElectionViolation`.

    Args:
        intervals: the work record.
        writes: the server's write history.
        lease: ``"namespace/name"``.
        timings: the candidates' timings (for the liveness bound and the fallback duration).
        until: the end of the observation.
        since: its start (default: the first interval's start).
        excused: windows in which a lapse of leadership is not counted.
        epsilon: see :func:`liveness_bound`.
        rate_tolerance: see :func:`check_lease_history`.
        overlap_tolerance: see :func:`check_safety`.
        context: a prefix for the failure message (say, the seed).
    """
    recorded = list(intervals)
    history = list(writes)
    bound = liveness_bound(timings, epsilon)
    findings: list[str] = []
    narrowest = slowest = math.nan
    handovers = 0
    try:
        narrowest = check_safety(recorded, tolerance=overlap_tolerance)
    except ElectionViolation as exc:
        findings += [f"safety: {f}" for f in exc.findings]
    try:
        slowest = check_liveness(recorded, bound=bound, until=until, since=since, excused=excused)
    except ElectionViolation as exc:
        findings += [f"liveness: {f}" for f in exc.findings]
    try:
        handovers = check_lease_history(
            history,
            lease=lease,
            fallback_duration=timings.lease_duration,
            rate_tolerance=rate_tolerance,
        )
    except ElectionViolation as exc:
        findings += [f"history: {f}" for f in exc.findings]
    if findings:
        raise ElectionViolation(findings, context)
    return ElectionReport(
        leaderships=len(recorded),
        handovers=handovers,
        narrowest_gap=narrowest,
        slowest_takeover=slowest,
        bound=bound,
    )
