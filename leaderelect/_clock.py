"""Time, in one place: a monotonic timebase for every decision, UTC wall time only for writing.

Expiry, deadlines and back-off are measured on ``Clock.monotonic()``; the default is the event
loop's clock, the same one anyio's cancel-scope deadlines use, so a deadline we compute and a
scope we set from it can never disagree. ``acquireTime``/``renewTime`` are written from
``Clock.utcnow()`` and never read back to decide anything: remote timestamps are compared only
for change, which is what makes the election tolerant of clock offsets between hosts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol, final, runtime_checkable

import anyio

__all__ = ["Clock", "LoopClock", "loop_time"]


@runtime_checkable
class Clock(Protocol):
    """The time source of an elector; inject one to test time-dependent logic."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences are meaningful."""
        ...

    def utcnow(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""
        ...


@final
class LoopClock:
    """The default clock: the running event loop's time, and the system's UTC wall time."""

    def monotonic(self) -> float:
        return anyio.current_time()

    def utcnow(self) -> datetime:
        return datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return "LoopClock()"


def loop_time(clock: Clock, moment: float) -> float:
    """``moment`` on ``clock`` translated to the event loop's clock, which cancel scopes and
    ``anyio.sleep_until`` use (the identity for the default ``LoopClock``)."""
    return anyio.current_time() + (moment - clock.monotonic())
