"""The one place retry delays are computed: jittered periods, capped exponential back-off, and
the pacing (and quiet logging) of a loop that retries a failing request."""

from __future__ import annotations

import logging
import random

from ._config import JITTER_FACTOR
from ._errors import LeaseError

__all__ = ["Backoff", "RetryPacer", "jittered"]

logger = logging.getLogger(__name__)


def jittered(period: float, rng: random.Random, factor: float = JITTER_FACTOR) -> float:
    """``period`` stretched by up to ``factor`` of itself, uniformly (client-go's wait.Jitter)."""
    return period * (1.0 + rng.random() * factor)


class Backoff:
    """Exponential back-off with full jitter, from ``initial`` up to ``maximum`` seconds.

    ``next()`` gives the delay before the next attempt; ``reset()`` after a success.
    A server's ``Retry-After`` wins when it asks for longer.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self._initial = initial
        self._maximum = max(initial, maximum)
        self._rng = rng
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last reset."""
        return self._failures

    def next(self, retry_after: float | None = None) -> float:
        ceiling = min(self._maximum, self._initial * (2.0**self._failures))
        self._failures += 1
        delay = jittered(ceiling / (1.0 + JITTER_FACTOR), self._rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._maximum))
        return delay

    def reset(self) -> None:
        self._failures = 0


class RetryPacer:
    """Paces a loop that retries a request every jittered ``period`` (client-go's cadence).

    ``failed(exc)`` logs the error (a warning the first time it is seen, then quietly until
    something succeeds) and returns the delay before the next attempt: the jittered period, or
    longer when the server asked for it (``Retry-After``). ``succeeded()`` resets the log.
    """

    def __init__(self, what: str, lease: str, period: float, rng: random.Random) -> None:
        self._what = what
        self._lease = lease
        self._period = period
        self._rng = rng
        self._last: str | None = None

    def failed(self, exc: LeaseError) -> float:
        text = f"{type(exc).__name__}: {exc}"
        level = logging.DEBUG if text == self._last else logging.WARNING
        logger.log(level, "%s lease %s failed: %s", self._what, self._lease, text)
        self._last = text
        return max(jittered(self._period, self._rng), exc.retry_after or 0.0)

    def succeeded(self) -> None:
        self._last = None
