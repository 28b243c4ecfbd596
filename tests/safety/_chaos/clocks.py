"""Skewed clocks: a ``Clock`` that runs fast or slow, and an event loop whose every timer does.

* :class:`SkewedClock`: a ``Clock`` running ``rate`` times as fast, for
  ``LeaderElector(clock=...)``; it skews what a candidate *measures*.
* :func:`skewed_event_loop`: an asyncio loop whose clock, sleeps and deadlines all run at
  ``rate``, for a candidate in a thread of its own; :func:`suspend_loop` blocks such a loop with
  its clock stopped (a suspended host).
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import final

__all__ = ["SkewedClock", "skewed_event_loop", "suspend_loop"]


@final
class SkewedClock:
    """A ``Clock`` whose monotonic time runs ``rate`` times as fast as the real one.

    ``utcnow()`` drifts the same way from the real wall clock, plus ``offset``. Inject it with
    ``LeaderElector(clock=...)``. The elector turns its deadlines into the event loop's time
    when it sets them, so with this clock alone a fast or slow candidate is skewed in what it
    *measures* (expiry, time left, back-offs); :func:`skewed_event_loop` skews a whole loop.

    Args:
        rate: how fast the clock runs (1.05: 5 % fast).
        offset: a constant wall-clock offset (it must never matter).
        base: the real monotonic clock.
    """

    def __init__(
        self,
        rate: float,
        *,
        offset: timedelta = timedelta(0),
        base: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        self.rate = rate
        self.offset = offset
        self._base = base
        self._origin = base()

    def monotonic(self) -> float:
        return self._origin + (self._base() - self._origin) * self.rate

    def utcnow(self) -> datetime:
        drift = (self._base() - self._origin) * (self.rate - 1)
        return datetime.now(timezone.utc) + self.offset + timedelta(seconds=drift)

    def __repr__(self) -> str:
        return f"SkewedClock(rate={self.rate!r})"


class _ScaledSelector(selectors.DefaultSelector):
    """Waits ``1/rate`` of each timeout asked for, so that loop timers fire on skewed time."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self._rate = rate

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            timeout = timeout / self._rate
        events: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        return events


class _SkewedLoop(asyncio.SelectorEventLoop):
    def __init__(self, rate: float) -> None:
        super().__init__(selector=_ScaledSelector(rate))
        self._rate = rate
        self._origin = time.monotonic()
        self._lost = 0.0

    def time(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self._rate - self._lost

    def suspend(self, seconds: float) -> None:
        """Block for ``seconds`` during which this loop's clock does not advance."""
        time.sleep(seconds)
        self._lost += seconds * self._rate


def suspend_loop(seconds: float) -> None:
    """Block the running event loop for ``seconds`` with its clock stopped meanwhile.

    As a host resumed from suspend, or a VM whose monotonic clock was frozen: on waking, the
    loop believes no time has passed. Only on a loop made by :func:`skewed_event_loop`.

    Raises:
        TypeError: the running loop's clock cannot be stopped.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, _SkewedLoop):
        raise TypeError("suspend_loop() needs a loop made by skewed_event_loop()")
    loop.suspend(seconds)


def skewed_event_loop(rate: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory: an asyncio loop whose clock, sleeps and deadlines run at ``rate``.

    A candidate on such a loop (in a thread of its own) behaves like a process whose
    monotonic clock runs ``rate`` times as fast as everyone else's. Use it with
    ``anyio.run(..., backend_options={"loop_factory": skewed_event_loop(1.05)})``.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number, got {rate!r}")
    return lambda: _SkewedLoop(rate)
