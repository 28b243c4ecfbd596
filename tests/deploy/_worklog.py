"""What the deployment tests share with their child processes: timings and the work log.

Child processes (uvicorn workers, candidate processes, commands run by ``leaderelect run``)
append one line per event to a work log, a plain file named by the test:

* ``ready <time> <pid> <identity>``: an elector was built (its identity as the process chose it);
* ``start <time> <pid> <identity> <token>``: leader-only work started in the term of ``<token>``;
* ``stop <time> <pid>``: that process's work stopped.

``<time>`` is ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so the test can
compare it with the embedded server's write history (``WriteRecord.time``) and with other
processes' lines. Each line is one ``write()`` on an ``O_APPEND`` file, so lines of several
processes never interleave. Only the standard library is used here: children import this module
by path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

LEASE_DURATION = 2.0
RENEW_DEADLINE = 1.5
RETRY_PERIOD = 0.2
"""Short timings, as the integration tests use: a lease duration is 2 s."""

WORK_LOG = "LEADERELECT_TEST_WORK_LOG"
"""The environment variable that names the work log for child processes."""


def record(path: str | os.PathLike[str], event: str, *fields: object) -> None:
    """Append ``<event> <time.monotonic()> <pid> <fields...>`` to the work log at ``path``."""
    line = " ".join([event, repr(time.monotonic()), str(os.getpid()), *map(str, fields)]) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Interval:
    """When one process's leader work ran; ``end`` is ``None`` while it runs."""

    pid: int
    identity: str
    token: str
    start: float
    end: float | None = None


@dataclass
class WorkLog:
    """A work log as read back: who got which identity, and when work ran."""

    identities: dict[int, str] = field(default_factory=dict)
    """Each process's identity, from its ``ready`` line (pid → identity)."""
    intervals: list[Interval] = field(default_factory=list)
    """Every work interval, in the order they started."""

    @classmethod
    def read(cls, path: Path) -> WorkLog:
        log = cls()
        running: dict[int, int] = {}  # pid → index of its open interval
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            event, at, pid, *rest = line.split()
            when, who = float(at), int(pid)
            if event == "ready":
                log.identities[who] = rest[0]
            elif event == "start":
                running[who] = len(log.intervals)
                log.intervals.append(Interval(who, rest[0], rest[1], when))
            elif event == "stop" and who in running:
                index = running.pop(who)
                interval = log.intervals[index]
                log.intervals[index] = Interval(
                    interval.pid, interval.identity, interval.token, interval.start, when
                )
        return log

    def starts_before(self, moment: float) -> list[Interval]:
        """The intervals that started before ``moment``."""
        return [i for i in self.intervals if i.start < moment]

    def overlaps(self) -> list[tuple[Interval, Interval, float]]:
        """Every pair of intervals of different processes that ran at once, with the overlap.

        An interval still running counts as running for ever.
        """
        found: list[tuple[Interval, Interval, float]] = []
        ordered = sorted(self.intervals, key=lambda i: i.start)
        for index, first in enumerate(ordered):
            first_end = float("inf") if first.end is None else first.end
            for second in ordered[index + 1 :]:
                if second.start >= first_end:
                    break
                if second.pid != first.pid:
                    second_end = float("inf") if second.end is None else second.end
                    found.append((first, second, min(first_end, second_end) - second.start))
        return found
