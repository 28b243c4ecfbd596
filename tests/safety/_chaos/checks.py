"""Checks for the faults of deployments, on top of :func:`~leaderelect.testing.check_election`.

``check_election`` judges work intervals and holder changes. The faults of deployments need a
few more judgements, each made from what really happened (the work log, the server's write
history and request arrivals, and the runner's :class:`Journal` of what it did to whom):

* :func:`check_terms`: a term is a process's, not an identity's. Two candidates sharing one
  identity take the Lease from each other only once the other's claim ran out (at most one
  term per lease duration between them), and a Lease deleted while held is created again only
  once the deleted record's claim ran out.
* :func:`check_no_zombie_terms`: a term that has ended never renews (no renewal by a candidate
  after its work interval ended, and none of a term in which it never worked).
* :func:`check_cancelled_takeovers_released`: a Lease won by a campaign that was cancelled
  (or that a raising hook broke off) before its work began is released by its winner, and so
  is a term whose ``leading()`` a raising hook ended.
* :func:`check_crowded_leaders`: a leader whose API client the application crowds keeps its
  term.
* :func:`check_silent_watches`: a follower replaces a watch that went silent within
  ``SILENT_WATCH_BOUND`` lease durations of the Lease being held (and renewed) by another.

Each returns its findings as strings, prefixed with its category (``terms:``, ``zombie:``,
``unreleased:``, ``crowd:``, ``silent-watch:``); :func:`check_deployment` runs them all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from leaderelect import Timings
from leaderelect.testing import RequestInfo, WorkInterval, WriteRecord

from .schedules import SILENT_WATCH_BOUND

__all__ = [
    "CandidateRecord",
    "Disturbance",
    "Journal",
    "check_cancelled_takeovers_released",
    "check_crowded_leaders",
    "check_deployment",
    "check_no_zombie_terms",
    "check_silent_watches",
    "check_terms",
    "starts_term",
    "term_of",
]

Term = tuple[str, int]
"""A term: the Lease's uid and ``leaseTransitions``."""

_LAG_EXCUSE = 0.1
"""Seconds of event-loop lag within a stretch that excuse what happened in it (every candidate
on the loop, and the server, were paused meanwhile)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Disturbance:
    """Something done to a candidate (``target``) or to everyone (``None``) from ``start`` to
    ``end`` (the reference clock): a server fault, a stall, a kill..."""

    start: float
    end: float
    target: str | None
    kind: str


@dataclasses.dataclass
class Journal:
    """What the runner did to whom, and when, on the reference clock.

    Attributes:
        disturbances: everything done to a candidate or to everyone.
        crowds: ``(candidate, start, end)`` of each crowded API client.
        silences: ``(candidate, at, streams silenced)``.
        traps: ``(candidate, index in the write history)`` of each takeover whose caller was
            cancelled once its write had committed.
        deletions: ``(time, held)`` of each deletion of the Lease by an admin.
        acted: how many times each deployment fault acted.
    """

    disturbances: list[Disturbance] = dataclasses.field(default_factory=list)
    crowds: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)
    silences: list[tuple[str, float, int]] = dataclasses.field(default_factory=list)
    traps: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    deletions: list[tuple[float, bool]] = dataclasses.field(default_factory=list)
    acted: dict[str, int] = dataclasses.field(default_factory=dict)

    def disturb(self, start: float, end: float, target: str | None, kind: str) -> None:
        self.disturbances.append(Disturbance(start, end, target, kind))

    def count(self, kind: str, times: int = 1) -> None:
        self.acted[kind] = self.acted.get(kind, 0) + times

    def disturbed(
        self,
        target: str,
        low: float,
        high: float,
        *,
        ignore: Iterable[str] = (),
        lags: Sequence[tuple[float, float]] = (),
    ) -> bool:
        """True when something was done to ``target`` (or to everyone) within
        ``[low, high]``, other than the kinds in ``ignore``, or the loop lagged in it."""
        ignored = set(ignore)
        for event in self.disturbances:
            if event.kind in ignored or event.target not in (None, target):
                continue
            if event.start <= high and event.end >= low:
                return True
        return _lag_within(lags, low, high) >= _LAG_EXCUSE


@dataclasses.dataclass(frozen=True, slots=True)
class CandidateRecord:
    """What the checks need to know of one candidate after the run.

    Attributes:
        name: its name (server user, and name in the log).
        identity: the identity it wrote.
        watch: whether it followed with a watch.
        hook_failures: the chance its metrics hooks raised.
        terms: the terms it worked in, each with its work interval.
        losses: ``(time, reason)`` of each lost term.
        hook_aborts: when an injected hook failure came out of ``leading()`` before its
            body ran.
        hook_exits: when one came out of ``leading()`` after its body ran.
        ended: when it was killed or stopped (None: it ran to the end).
    """

    name: str
    identity: str
    watch: bool
    hook_failures: float
    terms: Mapping[Term, WorkInterval]
    losses: Sequence[tuple[float, str]]
    hook_aborts: Sequence[float]
    hook_exits: Sequence[float]
    ended: float | None


# -- the write history --------------------------------------------------------------------------


def _spec(lease: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = (lease or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _holder(lease: Mapping[str, Any] | None) -> str:
    holder = _spec(lease).get("holderIdentity")
    return holder if isinstance(holder, str) else ""


def term_of(lease: Mapping[str, Any] | None) -> Term | None:
    """The term a stored Lease records, or None when it is absent or free."""
    if lease is None or not _holder(lease):
        return None
    metadata = lease.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    transitions = _spec(lease).get("leaseTransitions")
    return (str(uid), transitions if isinstance(transitions, int) else 0)


def starts_term(write: WriteRecord) -> bool:
    """True for a write that starts a term: it leaves the Lease held, in another term than
    before (a create, a takeover of a free or expired Lease, a new ``leaseTransitions``)."""
    after = term_of(write.lease_after)
    if after is None:
        return False
    before = term_of(write.lease_before)
    return before != after or _holder(write.lease_before) != _holder(write.lease_after)


def _duration(lease: Mapping[str, Any] | None, fallback: float) -> float:
    value = _spec(lease).get("leaseDurationSeconds")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return float(value)
    return fallback


def _of_lease(writes: Iterable[WriteRecord], lease: str) -> list[WriteRecord]:
    namespace, _, name = lease.partition("/")
    return [w for w in writes if w.namespace == namespace and w.name == name]


def _lag_within(lags: Sequence[tuple[float, float]], low: float, high: float) -> float:
    return sum(max(0.0, min(end, high) - max(start, low)) for start, end in lags)


def check_terms(
    writes: Iterable[WriteRecord],
    *,
    lease: str,
    fallback_duration: float,
    rate_tolerance: float = 1.0,
    lags: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """A term belongs to the process (server user) that started it.

    For each write that starts a term, while the Lease was held by a term another process
    started:

    1. if the holder's identity does not change (two processes sharing one identity),
       the previous claim must have run out on the server's clock, as for any takeover
       (``check_lease_history`` judges those where the identity changes);
    2. a create after an admin deleted the Lease while it was held must also wait until the
       deleted record's claim ran out (counted from its last change), unless the creator is
       the process that held it. No compare-and-swap ties a create to the deleted record, so
       a follower that missed the last changes could create early: this catches it even when
       the holder happened to stop in time. Event-loop lag in between shortens the claim by
       its length: a paused loop pauses the holder too (its deadline passes meanwhile), and
       may hide the record from a follower altogether; the safety check still judges the
       work itself.
    """
    findings: list[str] = []
    writer: str | None = None  # the process that started the current term
    changed_at: float | None = None  # when the record last changed
    deleted: tuple[float, float, str | None, str] | None = None  # changed, claim, writer, holder
    for write in _of_lease(writes, lease):
        if write.verb in ("delete", "deletecollection"):
            if term_of(write.lease_before) is not None and changed_at is not None:
                claim = _duration(write.lease_before, fallback_duration) / rate_tolerance
                deleted = (changed_at, claim, writer, _holder(write.lease_before))
            writer, changed_at = None, write.time
            continue
        if starts_term(write):
            before = term_of(write.lease_before)
            same_identity = _holder(write.lease_before) == _holder(write.lease_after)
            if (
                before is not None
                and same_identity
                and writer is not None
                and writer != write.user
                and changed_at is not None
            ):
                claim = _duration(write.lease_before, fallback_duration) / rate_tolerance
                held_for = write.time - changed_at
                if held_for < claim:
                    findings.append(
                        f"terms: {write.user} started a term as {_holder(write.lease_after)!r} "
                        f"at {write.time:.3f}, {held_for:.3f}s after the record of {writer}'s "
                        f"term (same identity) last changed: its claim of {claim:.3f}s had "
                        "not run out"
                    )
            if write.lease_before is None and deleted is not None:
                last_change, claim, holder_process, holder = deleted
                held_for = write.time - last_change
                paused = _lag_within(lags, last_change, write.time)
                if holder_process != write.user and held_for + paused < claim:
                    findings.append(
                        f"terms: {write.user} created the Lease at {write.time:.3f}, "
                        f"{held_for:.3f}s after the deleted record of {holder!r} "
                        f"({holder_process}) last changed: its claim of {claim:.3f}s had not "
                        "run out"
                    )
            writer = write.user
        if write.lease_before is None:
            deleted = None
        if _spec(write.lease_before) != _spec(write.lease_after):
            changed_at = write.time
    return findings


# -- terms that outlive their work --------------------------------------------------------------


def check_no_zombie_terms(
    writes: Iterable[WriteRecord],
    candidates: Iterable[CandidateRecord],
    *,
    lease: str,
    timings: Timings,
    lags: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """No renewal by a candidate after its work interval ended.

    A renewal is a write by the candidate that keeps a held term as it was (same holder,
    uid and ``leaseTransitions``). One may still be on its way when the work stops: it is
    allowed ``renew_deadline`` (every request is bounded by it), plus any event-loop lag. A
    term in which the candidate never worked gets as long after its first write.
    """
    by_name = {c.name: c for c in candidates}
    history = _of_lease(writes, lease)
    started: dict[Term, float] = {}
    findings: list[str] = []
    for write in history:
        term = term_of(write.lease_after)
        if term is None:
            continue
        if starts_term(write):
            started[term] = write.time
            continue
        candidate = by_name.get(write.user)
        if candidate is None or term_of(write.lease_before) != term:
            continue
        interval = candidate.terms.get(term)
        if interval is not None:
            if interval.end is None:
                continue
            since, what = interval.end, "its work stopped"
        else:
            since, what = started.get(term, -math.inf), "it won it, and it never worked in it"
        late = write.time - since
        if late > timings.renew_deadline + _lag_within(lags, since, write.time):
            findings.append(
                f"zombie: {candidate.name} renewed the term {term[0]}:{term[1]} at "
                f"{write.time:.3f}, {late:.3f}s after {what}"
            )
    return findings


def check_cancelled_takeovers_released(
    writes: Sequence[WriteRecord],
    candidates: Iterable[CandidateRecord],
    journal: Journal,
    *,
    lease: str,
    timings: Timings,
    lags: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """A Lease won by a campaign that was then cancelled, or broken off by a raising hook, is
    released by its winner; so is a term whose ``leading()`` a raising hook ended.

    The terms judged:

    * each takeover trapped by an :class:`~.schedules.Interrupt` (its caller cancelled once
      the write had committed), unless the candidate worked in that term after all (its term
      then ended the ordinary way);
    * the latest takeover before an injected hook failure came out of ``leading()`` without
      its body having run;
    * the term whose work had just ended when an injected hook failure came out of
      ``leading()`` after its body ran, unless another holder had ended the term already
      (a loss: nothing to release).

    The next write that ends such a term must be the winner's own (a release, or a term of
    its own it then works in), within twice ``renew_deadline`` (plus event-loop lag) of the
    moment it was owed, unless something else was done to the winner (or to everyone)
    meanwhile, or the event loop lagged: a release can fail like any request, and the Lease
    then expires as after a crash.
    """
    by_name = {c.name: c for c in candidates}
    history = _of_lease(writes, lease)
    # (candidate, term, owed since, why)
    judged: list[tuple[str, Term, float, str]] = []
    for name, index in journal.traps:
        won = writes[index]
        term = term_of(won.lease_after)
        if term is not None and term not in by_name[name].terms:
            why = "its caller cancelled it before its work began"
            judged.append((name, term, won.time, why))
    for candidate in by_name.values():
        for aborted in candidate.hook_aborts:
            wins = [
                w
                for w in history
                if w.user == candidate.name
                and starts_term(w)
                and aborted - timings.renew_deadline <= w.time <= aborted
            ]
            term = term_of(wins[-1].lease_after) if wins else None
            if term is not None and term not in candidate.terms:
                why = "a raising hook broke off leading() before its work began"
                judged.append((candidate.name, term, wins[-1].time, why))
        for failed in candidate.hook_exits:
            ended = [
                (term, interval)
                for term, interval in candidate.terms.items()
                if interval.end is not None and interval.end <= failed
            ]
            if ended:
                term, interval = max(ended, key=lambda item: item[1].start)
                assert interval.end is not None
                why = "a raising hook came out of leading() after its work"
                judged.append((candidate.name, term, interval.end, why))
    findings: list[str] = []
    for name, term, since, why in judged:
        deadline = since + 2 * timings.renew_deadline
        deadline += _lag_within(lags, since, deadline)
        ignore = ("interrupt", "interrupt-stop", "silent-watch")
        low = since - timings.renew_deadline
        if journal.disturbed(name, low, deadline, ignore=ignore, lags=lags):
            continue  # a release can fail like any request: the Lease then expires
        ending = next(
            (
                w
                for w in history
                if term_of(w.lease_before) == term and term_of(w.lease_after) != term
            ),
            None,
        )
        if ending is not None and ending.time < since:
            continue  # another holder had ended the term: lost, nothing to release
        if ending is not None and ending.user == name and ending.time <= deadline:
            continue
        if ending is None:
            outcome = "it was never released"
        elif ending.user != name:
            outcome = f"{ending.user} ended it ({ending.verb}) at {ending.time:.3f}"
        else:
            outcome = f"it was released only at {ending.time:.3f}"
        findings.append(
            f"unreleased: {name}'s term {term[0]}:{term[1]}: {why} at {since:.3f}; "
            f"{outcome} (due by {deadline:.3f})"
        )
    return findings


# -- crowded clients, silent watches ------------------------------------------------------------


def check_crowded_leaders(
    candidates: Iterable[CandidateRecord],
    journal: Journal,
    *,
    timings: Timings,
    twins: Iterable[str] = (),
    lags: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """A leader keeps its term while the application crowds its API client.

    Every term a crowded candidate lost between the start of the crowd and ``renew_deadline``
    after its end is a finding, unless something else was done to it (or to everyone) in the
    ``renew_deadline + retry_period`` before the loss, or the candidate has a twin or hooks
    that raise (their own faults).
    """
    by_name = {c.name: c for c in candidates}
    excluded = set(twins)
    findings: list[str] = []
    for name, start, end in journal.crowds:
        candidate = by_name[name]
        if name in excluded or candidate.hook_failures:
            continue
        for lost_at, reason in candidate.losses:
            if not start <= lost_at <= end + timings.renew_deadline:
                continue
            before = lost_at - timings.renew_deadline - timings.retry_period
            if journal.disturbed(name, before, lost_at, ignore=("crowd",), lags=lags):
                continue
            findings.append(
                f"crowd: {name} lost its term at {lost_at:.3f} ({reason}) while the "
                f"application held its API client's connections ({start:.3f} to {end:.3f}), "
                "and nothing else was done to it"
            )
    return findings


def _held_by_others(
    history: Sequence[WriteRecord], name: str, timings: Timings, until: float
) -> list[tuple[float, float]]:
    """When the Lease was held, and renewed, by a process other than ``name``: each write by
    another that leaves it held counts for a lease duration, or until the next write."""
    spans: list[tuple[float, float]] = []
    for index, write in enumerate(history):
        if write.user == name or term_of(write.lease_after) is None:
            continue
        following = history[index + 1].time if index + 1 < len(history) else until
        spans.append((write.time, min(following, write.time + timings.lease_duration, until)))
    return spans


def _measure(spans: Iterable[tuple[float, float]], low: float, high: float) -> float:
    return sum(max(0.0, min(end, high) - max(start, low)) for start, end in spans)


def check_silent_watches(
    writes: Iterable[WriteRecord],
    arrivals: Sequence[tuple[float, RequestInfo]],
    candidates: Iterable[CandidateRecord],
    journal: Journal,
    *,
    lease: str,
    timings: Timings,
    until: float,
    lags: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """A follower replaces a watch that went silent.

    After its open watch went silent at ``t``, the candidate must send a new watch request
    before the Lease has been held and renewed by another process for
    ``SILENT_WATCH_BOUND * lease_duration`` seconds (counting only time in which it was
    following, and nothing else was done to it or to everyone).
    """
    namespace, _, lease_name = lease.partition("/")
    history = _of_lease(writes, lease)
    bound = SILENT_WATCH_BOUND * timings.lease_duration
    by_name = {c.name: c for c in candidates}
    findings: list[str] = []
    for name, at, silenced in journal.silences:
        candidate = by_name[name]
        if not silenced or not candidate.watch:
            continue
        replaced = next(
            (
                moment
                for moment, info in arrivals
                if moment > at
                and info.user == name
                and info.verb == "watch"
                and info.namespace == namespace
                and info.name == lease_name
            ),
            None,
        )
        end = min(
            replaced if replaced is not None else until,
            candidate.ended if candidate.ended is not None else until,
        )
        held = _held_by_others(history, name, timings, end)
        # Time that does not count: working (its own writes feed its view), and disturbances.
        gaps = [(i.start, i.end_or(until)) for i in candidate.terms.values()]
        gaps += [
            (d.start, d.end)
            for d in journal.disturbances
            if d.target in (None, name) and d.kind not in ("silent-watch", "crowd")
        ]
        gaps += [(low, high) for low, high in lags if high - low >= _LAG_EXCUSE]
        counted = _measure(held, at, end) - _measure(
            _intersect(_merged(gaps), _merged(held)), at, end
        )
        if counted > bound:
            still = "and had not replaced it" if replaced is None else "before replacing it"
            findings.append(
                f"silent-watch: {name}'s watch went silent at {at:.3f}; it followed a Lease "
                f"held and renewed by another for {counted:.3f}s {still} (bound {bound:.3f}s)"
            )
    return findings


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _intersect(
    first: Sequence[tuple[float, float]], second: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    return [(max(a, c), min(b, d)) for a, b in first for c, d in second if max(a, c) < min(b, d)]


def check_deployment(
    writes: Sequence[WriteRecord],
    arrivals: Sequence[tuple[float, RequestInfo]],
    candidates: Sequence[CandidateRecord],
    journal: Journal,
    *,
    lease: str,
    timings: Timings,
    until: float,
    twins: Iterable[str] = (),
    rate_tolerance: float = 1.0,
    lags: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """Every check of this module; returns all findings."""
    return [
        *check_terms(
            writes, lease=lease, fallback_duration=timings.lease_duration,
            rate_tolerance=rate_tolerance, lags=lags,
        ),
        *check_no_zombie_terms(writes, candidates, lease=lease, timings=timings, lags=lags),
        *check_cancelled_takeovers_released(
            writes, candidates, journal, lease=lease, timings=timings, lags=lags
        ),
        *check_crowded_leaders(candidates, journal, timings=timings, twins=twins, lags=lags),
        *check_silent_watches(
            writes, arrivals, candidates, journal, lease=lease, timings=timings, until=until,
            lags=lags,
        ),
    ]  # fmt: skip
