"""Metrics hooks: what an elector reports, for Prometheus, OpenTelemetry or anything else.

An elector calls its ``MetricsSink`` at each event that matters; the default sink does nothing.
Every method takes the lease (``"namespace/name"``) so that one sink can serve several electors.
The events map onto client-go's series: ``leader_election_master_status`` follows
``leading_changed``, ``leader_election_slowpath_total`` counts ``slow_path``.
``PrometheusMetrics`` exports those two and a few more; it needs the ``prometheus`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, final

from ._errors import LossReason

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsSink", "NoopMetrics", "PrometheusMetrics"]


class MetricsSink(Protocol):
    """Receives an elector's events. Implementations must not block; what they raise is
    logged, never raised into the election."""

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


_ACQUIRE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
"""Seconds from the start of a campaign to winning: from an immediate win to an hour standby."""


@final
class PrometheusMetrics:
    """Exports an elector's events as Prometheus metrics, named as client-go's are.

    Every series has a ``name`` label: the Lease, as ``"namespace/name"``. With the default
    ``prefix`` the series are:

    - ``leader_election_master_status`` (gauge, client-go's): 1 while this candidate leads,
      else 0;
    - ``leader_election_slowpath_total`` (counter, client-go's): renewals that had to re-read
      the Lease after a conflict;
    - ``leader_election_transitions_total`` (counter): terms won by this candidate;
    - ``leader_election_acquire_duration_seconds`` (histogram): campaigning time before each
      win;
    - ``leader_election_renew_duration_seconds`` (histogram): latency of successful renewals;
    - ``leader_election_renew_failures_total`` (counter): failed renewal attempts, by
      ``error`` (the exception's class name);
    - ``leader_election_losses_total`` (counter): terms lost, by ``reason`` (a ``LossReason``
      name in lower case).

    One instance can serve any number of electors (share it: a registry refuses a second set
    of series with the same names).

    Args:
        registry: where to register the series; by default ``prometheus_client``'s global
            ``REGISTRY``.
        prefix: the start of every series name.

    Raises:
        ImportError: ``prometheus_client`` is not installed; install the extra:
            ``pip install 'leaderelect[prometheus]'``.

    Example:
        ```python
        metrics = PrometheusMetrics()
        elector = LeaderElector(lock, metrics=metrics)
        prometheus_client.start_http_server(9100)
        ```
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, prefix: str = "leader_election"
    ) -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImportError(
                "PrometheusMetrics needs prometheus_client: pip install 'leaderelect[prometheus]'"
            ) from exc
        from prometheus_client import Counter, Gauge, Histogram

        if registry is None:
            registry = prometheus_client.REGISTRY
        self._master_status = Gauge(
            f"{prefix}_master_status",
            "Leader election status of this candidate: 1 while it leads the lease, 0 otherwise.",
            ["name"],
            registry=registry,
        )
        self._slowpath = Counter(
            f"{prefix}_slowpath",
            "Renewals that had to re-read the lease because the optimistic write conflicted.",
            ["name"],
            registry=registry,
        )
        self._transitions = Counter(
            f"{prefix}_transitions",
            "Terms of leadership won by this candidate.",
            ["name"],
            registry=registry,
        )
        self._acquire = Histogram(
            f"{prefix}_acquire_duration_seconds",
            "Seconds this candidate campaigned before winning a term.",
            ["name"],
            buckets=_ACQUIRE_BUCKETS,
            registry=registry,
        )
        self._renew = Histogram(
            f"{prefix}_renew_duration_seconds",
            "Seconds from sending a successful renewal to its answer.",
            ["name"],
            registry=registry,
        )
        self._renew_failures = Counter(
            f"{prefix}_renew_failures",
            "Failed renewal attempts (each may be retried before the renew deadline).",
            ["name", "error"],
            registry=registry,
        )
        self._losses = Counter(
            f"{prefix}_losses",
            "Terms of leadership lost, by reason.",
            ["name", "reason"],
            registry=registry,
        )

    def leading_changed(self, lease: str, leading: bool) -> None:
        self._master_status.labels(name=lease).set(1 if leading else 0)

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        self._transitions.labels(name=lease).inc()
        self._acquire.labels(name=lease).observe(max(0.0, waited))

    def renewed(self, lease: str, latency: float) -> None:
        self._renew.labels(name=lease).observe(max(0.0, latency))

    def renew_failed(self, lease: str, error: str) -> None:
        self._renew_failures.labels(name=lease, error=error).inc()

    def slow_path(self, lease: str) -> None:
        self._slowpath.labels(name=lease).inc()

    def lost(self, lease: str, reason: LossReason) -> None:
        self._losses.labels(name=lease, reason=reason.name.lower()).inc()
