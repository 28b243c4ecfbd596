"""What the demo shows and measures: the timeline, the Lease as its watch reports it, and
the takeovers timed from a signal to the first watch event naming a new holder."""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import final

import anyio

from .. import Timings
from ._output import Write
from ._target import LeaseSnapshot

__all__ = ["LeaseTracker", "StopKind", "Takeover", "Timeline", "summary"]


class StopKind(enum.Enum):
    """How the demo stops a leader."""

    GRACEFUL = "graceful"
    """SIGTERM: the candidate steps down, and its ``lead()`` releases the lease."""
    HARD = "hard kill"
    """SIGKILL: nothing is released; followers wait for the lease to expire."""

    @property
    def signal(self) -> signal.Signals:
        return signal.SIGTERM if self is StopKind.GRACEFUL else signal.SIGKILL


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


@final
class Timeline:
    """Writes ``  12.34s  who          what`` lines, time measured from the demo's start."""

    def __init__(self, write: Write, who_width: int) -> None:
        self._write = write
        self.width = who_width
        self._start = anyio.current_time()

    def line(self, who: str, what: str) -> None:
        elapsed = anyio.current_time() - self._start
        self._write(f"{elapsed:7.2f}s  {who:<{self.width}}  {what}".rstrip())

    def header(self, candidates: int, lease: str, url: str, timings: Timings) -> None:
        """What the demo runs, then the timeline's column heading."""
        self._write(f"leaderelect demo: {candidates} candidate processes, one Lease ({lease})")
        self._write(f"  api server   {url} (embedded, in this process)")
        self._write(
            f"  timings      lease duration {timings.lease_duration:g}s, renew deadline "
            f"{timings.renew_deadline:g}s, retry period {timings.retry_period:g}s"
        )
        self._write(
            "  script       SIGTERM the leader, then SIGKILL the next one; time each takeover"
        )
        self._write("")
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
class LeaseTracker:
    """Fed every observation of the Lease (by ``follow``'s watch); prints changes of holder."""

    def __init__(self, timeline: Timeline, lease_duration: float) -> None:
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


def summary(takeovers: Sequence[Takeover]) -> list[str]:
    """The closing table: one row per takeover, and what the times mean."""
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

    durations = ", ".join(f"{d:g}s" for d in sorted({t.lease_duration for t in takeovers}))
    return [
        "",
        "summary",
        row(header),
        *(row(cells) for cells in rows),
        "  a released lease is taken over at once; an abandoned one only when it",
        f"  expires, a lease duration ({durations}) after its holder's last renewal",
    ]
