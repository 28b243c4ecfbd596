"""PrometheusMetrics: client-go's series and ours, from real elections on the Lease API server."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import anyio
import pytest
from _integrations import fast_elector, take_over
from prometheus_client import CollectorRegistry

from leaderelect import Leadership, LeadershipLost, LeaseLock
from leaderelect.metrics import PrometheusMetrics
from leaderelect.testing import ErrorResponse, LeaseApiServer

LEASE = "prom"
NAME = {"name": f"default/{LEASE}"}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {**NAME, **labels})
    return 0.0 if value is None else value


def until(predicate: Callable[[], bool]) -> Callable[[Mapping[str, Any] | None], bool]:
    """A ``wait_for_lease`` predicate that ignores the lease: checked at each lease change."""
    return lambda _: predicate()


async def test_a_term_from_acquisition_to_loss(leaderelect_server: LeaseApiServer) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    leaderelect_server.add_user("measured")
    kubeconfig = leaderelect_server.kubeconfig("measured")
    led = anyio.Event()
    losses: list[LeadershipLost] = []

    async def lead(elector_lock: LeaseLock) -> None:
        elector = fast_elector(elector_lock, "measured", metrics=metrics)
        try:
            async with elector.leading():
                led.set()
                await anyio.sleep_forever()
        except LeadershipLost as lost:
            losses.append(lost)

    with anyio.fail_after(15):
        async with (
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lead, lock)
            await led.wait()
            assert sample(registry, "leader_election_master_status") == 1
            assert sample(registry, "leader_election_transitions_total") == 1
            assert sample(registry, "leader_election_acquire_duration_seconds_count") == 1
            await leaderelect_server.wait_for_lease(
                "default",
                LEASE,
                until(lambda: sample(registry, "leader_election_renew_duration_seconds_count") > 0),
            )

            # Someone else writes the lease, keeping us as holder: the next renewal conflicts,
            # re-reads the lease (client-go's slow path), finds it still ours and renews.
            async with await LeaseLock.from_kubeconfig(
                LEASE, config_file=leaderelect_server.kubeconfig()
            ) as admin:
                snapshot = await admin.get(timeout=5)
                assert snapshot is not None
                assert snapshot.record.renew_time is not None
                touched = replace(
                    snapshot.record,
                    renew_time=snapshot.record.renew_time + timedelta(microseconds=1),
                )
                await admin.update(touched, base=snapshot, timeout=5)
            await leaderelect_server.wait_for_lease(
                "default",
                LEASE,
                until(lambda: sample(registry, "leader_election_slowpath_total") > 0),
            )
            assert sample(registry, "leader_election_master_status") == 1

            # Renewals fail until the renew deadline passes.
            leaderelect_server.faults.add(ErrorResponse(user="measured", verb="update", status=503))
    assert losses and losses[0].reason.name == "RENEW_DEADLINE"
    assert sample(registry, "leader_election_renew_failures_total", error="ApiUnavailable") >= 1
    assert sample(registry, "leader_election_losses_total", reason="renew_deadline") == 1
    assert sample(registry, "leader_election_master_status") == 0
    assert sample(registry, "leader_election_transitions_total") == 1


async def test_losses_are_counted_by_reason_and_terms_by_win(
    leaderelect_server: LeaseApiServer,
) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    terms: list[int] = []

    async def work(leadership: Leadership) -> None:
        terms.append(leadership.token.transitions)
        if len(terms) == 1:
            await take_over(leaderelect_server, LEASE, "intruder", seconds=1)
            await anyio.sleep_forever()

    with anyio.fail_after(15):
        async with await LeaseLock.from_kubeconfig(
            LEASE, config_file=leaderelect_server.kubeconfig()
        ) as lock:
            await fast_elector(lock, "counted", metrics=metrics).run(work)
    assert terms == [0, 2]
    assert sample(registry, "leader_election_losses_total", reason="other_holder") == 1
    assert sample(registry, "leader_election_transitions_total") == 2
    assert sample(registry, "leader_election_acquire_duration_seconds_count") == 2
    assert sample(registry, "leader_election_master_status") == 0


def test_every_series_is_described_and_prefixed() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, prefix="billing_leader_election")
    metrics.leading_changed("ops/billing", True)
    names = {family.name: family.type for family in registry.collect()}
    assert names == {
        "billing_leader_election_master_status": "gauge",
        "billing_leader_election_slowpath": "counter",
        "billing_leader_election_transitions": "counter",
        "billing_leader_election_acquire_duration_seconds": "histogram",
        "billing_leader_election_renew_duration_seconds": "histogram",
        "billing_leader_election_renew_failures": "counter",
        "billing_leader_election_losses": "counter",
    }
    assert (
        registry.get_sample_value("billing_leader_election_master_status", {"name": "ops/billing"})
        == 1
    )
    assert all(family.documentation for family in registry.collect())


def test_a_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'leaderelect\[prometheus\]'"):
        PrometheusMetrics(CollectorRegistry())
