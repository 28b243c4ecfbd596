"""A user's metrics sink can never break an election.

The sink is called from inside the election's own steps: from a watch event that ends a term,
from the renewal loop, and on the way out of ``leading()``, before the lease is released. An
exception there would stop a follower's watch, or leave a lease unreleased; so each call is
guarded, and a failure is logged (once per method, until it succeeds again) instead.
"""

from __future__ import annotations

import logging
from typing import final

from ._errors import LossReason
from .metrics import MetricsSink

__all__ = ["GuardedMetrics"]

logger = logging.getLogger("leaderelect.metrics")


@final
class GuardedMetrics:
    """Forwards to ``sink``; logs what it raises instead of raising it."""

    def __init__(self, sink: MetricsSink) -> None:
        self._sink = sink
        self._failing: set[str] = set()

    def _call(self, method: str, *args: object) -> None:
        try:
            getattr(self._sink, method)(*args)
        except Exception:
            if method not in self._failing:
                self._failing.add(method)
                logger.exception("metrics sink %r failed in %s()", self._sink, method)
        else:
            self._failing.discard(method)

    def leading_changed(self, lease: str, leading: bool) -> None:
        self._call("leading_changed", lease, leading)

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        self._call("acquired", lease, waited, transitions)

    def renewed(self, lease: str, latency: float) -> None:
        self._call("renewed", lease, latency)

    def renew_failed(self, lease: str, error: str) -> None:
        self._call("renew_failed", lease, error)

    def slow_path(self, lease: str) -> None:
        self._call("slow_path", lease)

    def lost(self, lease: str, reason: LossReason) -> None:
        self._call("lost", lease, reason)
