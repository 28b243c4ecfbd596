"""Schedules as data: who campaigns, what goes wrong and when, drawn from a seed.

A :class:`Schedule` is plain frozen data: candidates (:class:`CandidateSpec`) and timed events
(:class:`FaultWindow`, :class:`CutWatches`, :class:`StallWatches`, :class:`LoopStall`,
:class:`Kill`, :class:`Stop`); :func:`random_schedule` draws one from a seed, the same one for
the same seed.

Faults of deployments (issue 13) are drawn on top, from a random stream of their own so that
the faults above stay what they were for every seed: candidates sharing one identity
(``CandidateSpec.identity``), metrics hooks that raise (``CandidateSpec.hook_failures``), a
Lease deleted while its holder is cut off (:class:`DeleteLease`), an API client crowded by the
application's requests (:class:`Crowd`), watches that go silent for good
(:class:`SilentWatch`) and cancellations of ``leading()`` at any await, down to a takeover
whose write has committed while its answer is on the way (:class:`Interrupt`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random

from leaderelect import Timings
from leaderelect.testing import (
    DropConnection,
    ErrorResponse,
    ExpireWatch,
    Fault,
    Hang,
    Latency,
    deny_writes,
    liveness_bound,
)

from .candidate import CHAOS_TIMINGS

__all__ = [
    "LEADER",
    "SILENT_WATCH_BOUND",
    "CandidateSpec",
    "Crowd",
    "CutWatches",
    "DeleteLease",
    "Event",
    "FaultWindow",
    "Interrupt",
    "Kill",
    "LoopStall",
    "Schedule",
    "SilentWatch",
    "StallWatches",
    "Stop",
    "fault_kind",
    "random_schedule",
]

LEADER = "@leader"
"""A target that means "whoever holds the lease when the event happens"."""


@dataclasses.dataclass(frozen=True, slots=True)
class CandidateSpec:
    """A candidate of a schedule.

    Attributes:
        name: identity and server user.
        start: seconds after the schedule's start at which it begins campaigning.
        clock_rate: its :class:`SkewedClock` rate (1.0: none).
        loop_rate: its own loop's rate (1.0: the shared loop, unless ``own_loop``).
        own_loop: run in a thread with a loop of its own.
        watch: watch the Lease (False: poll).
        identity: an explicit identity (None: ``name``). Candidates given the same one are
            two worker processes of one pod; each is still a server user of its own.
        hook_failures: the chance that each call of its metrics sink raises (0: a sink that
            never raises).
        stop_on_hook_error: when a hook's error comes out of ``leading()``, the candidate
            stops for good (the application let the error end it) instead of campaigning
            again.
    """

    name: str
    start: float = 0.0
    clock_rate: float = 1.0
    loop_rate: float = 1.0
    own_loop: bool = False
    watch: bool = True
    identity: str | None = None
    hook_failures: float = 0.0
    stop_on_hook_error: bool = False

    @property
    def holder_identity(self) -> str:
        """The identity it writes to ``holderIdentity``."""
        return self.identity if self.identity is not None else self.name


@dataclasses.dataclass(frozen=True, slots=True)
class FaultWindow:
    """A server fault applied from ``start`` to ``end`` (seconds after the schedule's start).

    With ``cut=True`` the matching user's open watches are cut when the window opens (a
    partition also breaks established streams; an ``ExpireWatch`` needs a resume to act on).
    Requests still held by the fault when the window closes are released.
    """

    start: float
    end: float
    fault: Fault
    cut: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CutWatches:
    """At ``at``, end the open watch streams of ``user`` (None: everyone's)."""

    at: float
    user: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StallWatches:
    """From ``start`` to ``end``, the watch streams of ``user`` deliver nothing, silently.

    Open streams are silenced and new ones stall; at ``end`` they all end and their clients
    resume from the last version they saw.
    """

    start: float
    end: float
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class LoopStall:
    """At ``at``, block ``candidate``'s event loop for ``seconds`` (it needs a loop of its own)."""

    at: float
    candidate: str
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Kill:
    """At ``at``, kill ``candidate`` (see :meth:`ChaosCandidate.kill`)."""

    at: float
    candidate: str


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    """At ``at``, stop ``candidate`` gracefully (its term ends and it releases the lease)."""

    at: float
    candidate: str


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteLease:
    """At ``at``, cut ``holder`` off from the server for ``partition`` seconds (its requests
    hang, its watches end), and ``delete_after`` seconds later delete the Lease as an admin.

    A common way to force a failover. The deleted record's term may still be running: no
    follower may start before it could have ended.
    """

    at: float
    partition: float
    delete_after: float = 0.05
    holder: str = LEADER


@dataclasses.dataclass(frozen=True, slots=True)
class Crowd:
    """From ``start`` to ``end``, the application shares ``candidate``'s API client and holds
    ``requests`` long requests on it (watches of other Leases): more than its connection pool
    (100) has room for. The candidate's ``LeaseLock`` is built on that very client."""

    start: float
    end: float
    candidate: str
    requests: int = 120


SILENT_WATCH_BOUND = 2.0
"""Lease durations of silence (while another candidate holds and renews the Lease) after which
a follower must have replaced its watch: "about one lease duration", with as much again for
the check's peace of mind; the library's own bound is far below the 240-300 s of a watch's
``timeoutSeconds``."""


@dataclasses.dataclass(frozen=True, slots=True)
class SilentWatch:
    """At ``at``, the watch streams ``user`` has open go silent for good: they stay open and
    deliver nothing (a half-open connection, a stuck proxy). New watches work."""

    at: float
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class Interrupt:
    """At ``at``, cancel ``candidate``'s ``leading()`` as its caller would (a campaign, or a
    term); it campaigns again at once.

    With ``takeover`` set, wait instead for its next winning write after ``at`` (a create or an
    update that starts a term): once that write has committed, its answer is held ``hold``
    seconds and the candidate is cancelled ``takeover`` seconds after the commit, so that the
    cancellation lands while the answer is in flight (``takeover`` < ``hold``) or at one of the
    awaits that follow it. With ``stop`` the candidate then stops for good instead (its caller
    is gone).
    """

    at: float
    candidate: str
    takeover: float | None = None
    hold: float = 0.0
    stop: bool = False


Event = (
    FaultWindow
    | CutWatches
    | StallWatches
    | LoopStall
    | Kill
    | Stop
    | DeleteLease
    | Crowd
    | SilentWatch
    | Interrupt
)


def fault_kind(window: FaultWindow) -> str:
    """What a fault window counts as in the totals: its fault's kind, with the status of an
    error, the moment of a drop, and a hang that cuts watches counted as a partition."""
    fault = window.fault
    if isinstance(fault, ErrorResponse):
        return f"ErrorResponse {fault.status}"
    if isinstance(fault, DropConnection):
        return f"DropConnection {fault.when}"
    if isinstance(fault, Hang) and window.cut:
        return "partition"
    return type(fault).__name__


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """One election under faults, as data: who campaigns, what goes wrong and when.

    Times are seconds after the schedule's start. ``duration`` is when the election is
    judged; everything still running is then stopped.
    """

    seed: int
    candidates: tuple[CandidateSpec, ...]
    events: tuple[Event, ...]
    duration: float
    timings: Timings = CHAOS_TIMINGS

    def excused(self) -> list[tuple[float, float]]:
        """The windows (relative times) in which a lapse of leadership is excused."""
        windows: list[tuple[float, float]] = []
        for event in self.events:
            if isinstance(event, (FaultWindow, StallWatches)):
                windows.append((event.start, event.end))
            elif isinstance(event, LoopStall):
                windows.append((event.at, event.at + event.seconds))
            elif isinstance(event, DeleteLease):
                # The holder is cut off, then followers wait out the deleted record's term.
                deleted = event.at + event.delete_after
                windows.append((event.at, max(event.at + event.partition, deleted)))
                windows.append((deleted, deleted + self.timings.lease_duration))
            elif isinstance(event, SilentWatch):
                # Noticing the silence takes about a lease duration, like a stalled watch.
                windows.append((event.at, event.at + self.timings.lease_duration))
        return windows

    def fastest_clock(self) -> float:
        """The fastest clock rate of any candidate (for the history check's tolerance)."""
        return max([1.0, *(max(c.clock_rate, c.loop_rate) for c in self.candidates)])

    def kinds(self) -> collections.Counter[str]:
        """How many of each kind of fault the schedule injects."""
        counts: collections.Counter[str] = collections.Counter()
        for event in self.events:
            if isinstance(event, FaultWindow):
                counts[fault_kind(event)] += 1
            else:
                counts[type(event).__name__] += 1
        for spec in self.candidates:
            if spec.clock_rate != 1.0:
                counts["SkewedClock"] += 1
            if spec.loop_rate != 1.0:
                counts["skewed loop"] += 1
            if spec.hook_failures:
                counts["raising hooks"] += 1
        identities = collections.Counter(spec.holder_identity for spec in self.candidates)
        counts["shared identity"] += sum(1 for n in identities.values() if n > 1)
        if not counts["shared identity"]:
            del counts["shared identity"]
        return counts

    def twins(self) -> dict[str, list[str]]:
        """The candidates that share an identity with another, by identity."""
        by_identity: dict[str, list[str]] = collections.defaultdict(list)
        for spec in self.candidates:
            by_identity[spec.holder_identity].append(spec.name)
        return {identity: names for identity, names in by_identity.items() if len(names) > 1}

    def describe(self) -> str:
        """The schedule, one line per candidate and event, for failure messages."""
        lines = [f"schedule seed={self.seed} duration={self.duration:.2f}s {self.timings}"]
        lines += [f"  {spec}" for spec in self.candidates]
        lines += [f"  {event}" for event in sorted(self.events, key=_event_time)]
        return "\n".join(lines)


def _event_time(event: Event) -> float:
    return event.start if isinstance(event, (FaultWindow, StallWatches, Crowd)) else event.at


def random_schedule(
    seed: int,
    *,
    timings: Timings = CHAOS_TIMINGS,
    candidates: tuple[int, int] = (3, 4),
    faults: tuple[int, int] = (2, 5),
    fault_span: float = 1.4,
    own_loop_chance: float = 0.3,
    max_clock_skew: float = 0.06,
    max_loop_skew: float = 0.03,
    deployment: bool = True,
) -> Schedule:
    """Draw a schedule from ``seed`` (the same seed always gives the same schedule).

    Candidate ``c0`` starts first. Half of the targeted events target :data:`LEADER`, whoever
    holds the lease when the event happens. Everything drawn stays within what the design
    promises: loop stalls and clock-rate skew together keep
    ``renew_deadline / slowest + stall`` at least 0.1 s below ``lease_duration / fastest``,
    and stalls never overlap (they would add up);
    at least two candidates are never stopped or killed; after the last fault the election
    runs for the liveness bound and a little more.

    Args:
        seed: the seed.
        timings: the candidates' timings.
        candidates: how many candidates, at least and at most.
        faults: how many events, at least and at most.
        fault_span: events happen between 0.2 s and this many seconds.
        own_loop_chance: the chance that one candidate runs on a loop of its own (and may be
            stalled, or skewed as a whole).
        max_clock_skew: the largest ``|rate - 1|`` of an injected :class:`SkewedClock`.
        max_loop_skew: the largest ``|rate - 1|`` of a candidate's own loop.
        deployment: also draw the faults of deployments (see :func:`_deployment_faults`),
            from a random stream of their own: the faults drawn without them stay the same.
    """
    rng = random.Random(seed)
    count = rng.randint(*candidates)
    names = [f"c{i}" for i in range(count)]
    margin_budget = timings.lease_duration - timings.renew_deadline
    specs: list[CandidateSpec] = []
    threaded = names[0] if rng.random() < own_loop_chance / 2 else None
    if threaded is None and rng.random() < own_loop_chance:
        threaded = rng.choice(names)
    for index, name in enumerate(names):
        clock_rate = 1.0
        if rng.random() < 0.3:
            clock_rate = round(1 + rng.uniform(-max_clock_skew, max_clock_skew), 3)
        loop_rate = 1.0
        if name == threaded and rng.random() < 0.5:
            loop_rate = round(1 + rng.uniform(-max_loop_skew, max_loop_skew), 3)
        specs.append(
            CandidateSpec(
                name=name,
                start=0.0 if index == 0 else round(rng.uniform(0.05, 0.3), 3),
                clock_rate=clock_rate,
                loop_rate=loop_rate,
                own_loop=name == threaded,
                watch=rng.random() > 0.1,
            )
        )
    fastest = max(max(s.clock_rate, s.loop_rate) for s in specs)
    slowest = min(min(s.clock_rate, s.loop_rate) for s in specs)
    stall_budget = max(
        0.0, timings.lease_duration / fastest - timings.renew_deadline / slowest - 0.1
    )
    stall_budget = min(stall_budget, margin_budget - 0.1)

    def target() -> str:
        return LEADER if rng.random() < 0.5 else rng.choice(names)

    def window() -> tuple[float, float]:
        start = rng.uniform(0.2, fault_span - 0.1)
        end = min(fault_span, start + rng.uniform(0.1, 0.8))
        return round(start, 3), round(end, 3)

    events: list[Event] = []
    stalls: list[tuple[float, float]] = []
    retired = 0
    for _ in range(rng.randint(*faults)):
        kind = rng.choices(
            [
                "latency", "error", "429", "hang", "commit-drop", "refuse", "partition",
                "stall-watch", "expire-watch", "deny", "cut", "kill", "stop", "loop-stall",
            ],
            weights=[8, 8, 4, 5, 6, 4, 6, 5, 4, 5, 4, 4, 3, 6],
        )[0]  # fmt: skip
        user = target()
        start, end = window()
        verb = rng.choice([None, "update", "update", "get", "watch", ("create", "update")])
        fault: Fault
        if kind == "latency":
            seconds = round(rng.uniform(0.02, 0.4), 3)
            events.append(FaultWindow(start, end, Latency(user=user, verb=verb, seconds=seconds)))
        elif kind == "error":
            status = rng.choice([500, 503, 504])
            events.append(
                FaultWindow(start, end, ErrorResponse(user=user, verb=verb, status=status))
            )
        elif kind == "429":
            fault = ErrorResponse(user=rng.choice([user, None]), status=429, retry_after=1)
            events.append(FaultWindow(start, end, fault))
        elif kind == "hang":
            events.append(FaultWindow(start, end, Hang(user=user, verb=verb)))
        elif kind == "commit-drop":
            fault = DropConnection(user=user, verb="update", times=rng.randint(1, 2))
            events.append(FaultWindow(start, end, fault))
        elif kind == "refuse":
            fault = DropConnection(user=user, verb=verb, when="before")
            events.append(FaultWindow(start, end, fault))
        elif kind == "partition":
            events.append(FaultWindow(start, end, Hang(user=user), cut=True))
        elif kind == "stall-watch":
            events.append(StallWatches(start, end, user))
        elif kind == "expire-watch":
            events.append(FaultWindow(start, end, ExpireWatch(user=user), cut=True))
        elif kind == "deny":
            fault = deny_writes(user, status=rng.choice([403, 422]))
            events.append(FaultWindow(start, end, fault))
        elif kind == "cut":
            events.append(CutWatches(start, rng.choice([user, None])))
        elif kind in ("kill", "stop"):
            if retired >= count - 2:
                continue
            retired += 1
            events.append(Kill(start, user) if kind == "kill" else Stop(start, user))
        elif kind == "loop-stall":
            if threaded is None or stall_budget < 0.02:
                continue
            seconds = math.floor(rng.uniform(0.02, stall_budget) * 1000) / 1000
            # Stalls queued on one loop run back to back: overlapping ones would add up to a
            # longer stall than the budget. Keep them apart, with time for the loop to run.
            if any(start < end + 0.05 and low < start + seconds + 0.05 for low, end in stalls):
                continue
            stalls.append((start, start + seconds))
            events.append(LoopStall(start, threaded, seconds))
    if not any(_ends_a_term(e) for e in events):
        # Every schedule ends at least one term: a takeover is what the checks are about.
        start = round(rng.uniform(0.2, fault_span - 0.1), 3)
        end = round(start + timings.renew_deadline + rng.uniform(0.1, 0.4), 3)
        choice = rng.choice(["kill", "stop", "partition", "deny"])
        if choice in ("kill", "stop") and retired < count - 2:
            events.append(Kill(start, LEADER) if choice == "kill" else Stop(start, LEADER))
        elif choice == "deny":
            events.append(FaultWindow(start, end, deny_writes(LEADER)))
        else:
            events.append(FaultWindow(start, end, Hang(user=LEADER), cut=True))
    if deployment:
        retiring = sum(isinstance(e, (Kill, Stop)) for e in events)
        specs, more = _deployment_faults(seed, specs, fault_span, retirable=count - 2 - retiring)
        events += more
    last = max([0.3, *(_event_end(e, timings) for e in events)])
    duration = round(last + liveness_bound(timings) + 0.3, 3)
    return Schedule(seed, tuple(specs), tuple(events), duration, timings)


def _deployment_faults(
    seed: int, specs: list[CandidateSpec], fault_span: float, *, retirable: int
) -> tuple[list[CandidateSpec], list[Event]]:
    """The faults of deployments for ``seed``, each drawn with a chance of its own.

    They come from a random stream of their own (seeded with ``deployment/<seed>``), so the
    rest of the schedule is the same with or without them. Events aimed at a Lease everyone
    follows start once every candidate has had time to read it. ``retirable`` candidates may
    still be stopped (two always survive).
    """
    rng = random.Random(f"deployment/{seed}")
    specs = list(specs)
    names = [spec.name for spec in specs]
    settled = max(spec.start for spec in specs) + 0.2
    events: list[Event] = []
    if rng.random() < 0.2:
        # Two worker processes of one pod: one identity, two candidates.
        first, second = rng.sample(range(len(specs)), 2)
        for index in (first, second):
            specs[index] = dataclasses.replace(specs[index], identity="web-0")
    if rng.random() < 0.2:
        index = rng.randrange(len(specs))
        chance = round(rng.uniform(0.05, 0.5), 2)
        fatal = retirable > 0 and rng.random() < 0.5  # the error ends the application
        retirable -= fatal
        specs[index] = dataclasses.replace(
            specs[index], hook_failures=chance, stop_on_hook_error=fatal
        )
    if rng.random() < 0.2:
        at = round(rng.uniform(settled, fault_span + 0.3), 3)
        partition = round(rng.uniform(0.2, 1.0), 3)
        delete_after = round(rng.uniform(0.0, min(0.15, partition - 0.05)), 3)
        events.append(DeleteLease(at, partition, delete_after))
    if rng.random() < 0.15:
        start = round(rng.uniform(settled, fault_span), 3)
        end = round(start + rng.uniform(0.8, 1.5), 3)
        target = LEADER if rng.random() < 0.7 else rng.choice(names)
        events.append(Crowd(start, end, target))
    if rng.random() < 0.25:
        at = round(rng.uniform(settled, fault_span), 3)
        user = LEADER if rng.random() < 0.3 else rng.choice(names)
        events.append(SilentWatch(at, user))
    if rng.random() < 0.3:
        for _ in range(rng.randint(1, 3)):
            at = round(rng.uniform(0.0, fault_span), 3)
            mode = rng.random()
            if mode < 0.4:  # whatever it is doing: campaigning, or leading
                target = LEADER if rng.random() < 0.5 else rng.choice(names)
                events.append(Interrupt(at, target))
            else:
                target = rng.choice(names)
                if mode < 0.7:  # while the answer of its winning write is on the way
                    delay, hold = 0.0, round(rng.uniform(0.01, 0.05), 3)
                else:  # at one of the awaits after the answer
                    delay, hold = round(rng.uniform(0.0, 0.01), 4), 0.0
                stop = retirable > 0 and rng.random() < 0.3  # and its caller is gone
                retirable -= stop
                events.append(Interrupt(at, target, takeover=delay, hold=hold, stop=stop))
    return specs, events


def _ends_a_term(event: Event) -> bool:
    """True for an event sure to end the leader's term, whoever leads when it happens."""
    if isinstance(event, (Kill, Stop)):
        return event.candidate == LEADER
    if isinstance(event, FaultWindow) and event.fault.user == LEADER:
        fault = event.fault
        long_enough = event.end - event.start > CHAOS_TIMINGS.renew_deadline
        writes_fail = isinstance(fault, Hang) or (
            isinstance(fault, ErrorResponse) and fault.verb in (None, "update")
        )
        return long_enough and writes_fail and fault.verb != "get"
    return False


def _event_end(event: Event, timings: Timings) -> float:
    """When the event's effects are over: the election then owes a leader within the bound."""
    if isinstance(event, (FaultWindow, StallWatches)):
        return event.end
    if isinstance(event, LoopStall):
        return event.at + event.seconds
    if isinstance(event, DeleteLease):
        deleted = event.at + event.delete_after + timings.lease_duration
        return max(event.at + event.partition, deleted)
    if isinstance(event, Crowd):
        return event.end + timings.renew_deadline
    if isinstance(event, SilentWatch):
        return event.at + SILENT_WATCH_BOUND * timings.lease_duration
    return event.at
