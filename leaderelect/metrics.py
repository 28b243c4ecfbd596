"""Metrics hooks: what an elector reports, for Prometheus, OpenTelemetry or anything else.

An elector calls its ``MetricsSink`` at each event that matters; the default sink does nothing.
Every method takes the lease (``"namespace/name"``) so that one sink can serve several electors.
The events map onto client-go's series: ``leader_election_master_status`` follows
``leading_changed``, ``leader_election_slowpath_total`` counts ``slow_path``.
"""

from __future__ import annotations

from typing import Protocol, final

from ._errors import LossReason

__all__ = ["MetricsSink", "NoopMetrics"]


class MetricsSink(Protocol):
    """Receives an elector's events. Implementations must not block or raise."""

    def leading_changed(self, lease: str, leading: bool) -> None:
        """This candidate started (``True``) or stopped (``False``) leading ``lease``."""
        ...

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        """A term began after campaigning for ``waited`` seconds; ``transitions`` as written."""
        ...

    def renewed(self, lease: str, latency: float) -> None:
        """A renewal succeeded; ``latency`` is the seconds from send to answer."""
        ...

    def renew_failed(self, lease: str, error: str) -> None:
        """A renewal attempt failed (it may be retried before the deadline); ``error`` names it."""
        ...

    def slow_path(self, lease: str) -> None:
        """A renewal had to re-read the Lease (its optimistic write conflicted)."""
        ...

    def lost(self, lease: str, reason: LossReason) -> None:
        """A term was lost."""
        ...


@final
class NoopMetrics:
    """The default sink: records nothing."""

    def leading_changed(self, lease: str, leading: bool) -> None:
        pass

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        pass

    def renewed(self, lease: str, latency: float) -> None:
        pass

    def renew_failed(self, lease: str, error: str) -> None:
        pass

    def slow_path(self, lease: str) -> None:
        pass

    def lost(self, lease: str, reason: LossReason) -> None:
        pass
