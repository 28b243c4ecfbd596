"""The one place retry delays are computed: jittered periods and capped exponential back-off."""

from __future__ import annotations

import random

from ._config import JITTER_FACTOR

__all__ = ["Backoff", "jittered"]


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
