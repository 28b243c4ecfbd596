"""Timings of an election, validated once, at construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ._errors import ConfigError

__all__ = ["JITTER_FACTOR", "Timings"]

JITTER_FACTOR: Final = 1.2
"""client-go's factor: a retry waits ``retry_period * (1 + random() * JITTER_FACTOR)``."""


@dataclass(frozen=True, slots=True)
class Timings:
    """How long a lease lasts, how long a leader keeps trying to renew it, and how often.

    The defaults are those of Kubernetes' own components (15 s / 10 s / 2 s).

    Raises:
        ConfigError: when a value is not a positive number of seconds, or the three do not
            leave the safety margin described in ``lease_duration``.
    """

    lease_duration: float = 15.0
    """Seconds a follower waits, after it last saw the lease change, before taking it over.
    Written to the Lease as whole seconds, rounded up. Must exceed
    ``renew_deadline + retry_period``: the leader stops its work at most ``renew_deadline``
    after it *sent* its last successful renewal, and the rest is the margin that absorbs
    clock-rate drift and pauses."""

    renew_deadline: float = 10.0
    """Seconds after sending its last successful renewal at which a leader gives up: its work
    is cancelled then, whatever the network is doing. Must exceed ``1.2 * retry_period``."""

    retry_period: float = 2.0
    """Seconds between a leader's renewals, and the base of every retry back-off."""

    def __post_init__(self) -> None:
        for name in ("lease_duration", "renew_deadline", "retry_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be greater than 0 seconds, got {value!r}")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ConfigError(
                f"renew_deadline ({self.renew_deadline:g}s) must be greater than "
                f"{JITTER_FACTOR:g} * retry_period ({JITTER_FACTOR * self.retry_period:g}s), "
                "so that a leader can retry a failed renewal before its deadline"
            )
        if self.lease_duration <= self.renew_deadline + self.retry_period:
            raise ConfigError(
                f"lease_duration ({self.lease_duration:g}s) must be greater than "
                f"renew_deadline + retry_period ({self.renew_deadline + self.retry_period:g}s): "
                "followers take the lease over lease_duration after they last saw it renewed, "
                "while the leader may work until renew_deadline after sending its last "
                "renewal; the difference is the safety margin against clock drift and "
                "pauses, and it must be more than one retry_period"
            )

    @property
    def margin(self) -> float:
        """The safety margin in seconds: ``lease_duration - renew_deadline``."""
        return self.lease_duration - self.renew_deadline
