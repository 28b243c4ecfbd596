"""Faults that real deployments bring, beyond the network's and the server's.

Shared identities, a Lease deleted under a cut-off holder, a metrics sink that raises, a
campaign cancelled while its winning write is in flight, watches that go silent or are
forbidden for a while. Each test failed before the library handled its fault.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from _fleet import FAST, Candidate, open_fleet
from _kube import KubeTarget, leases_path

from leaderelect import LeaderElector, LossReason
from leaderelect.testing import ErrorResponse, Hang, Latency, LeaseApiServer, partition

LEASE_DURATION = FAST["lease_duration"]
RENEW_DEADLINE = FAST["renew_deadline"]
RETRY_PERIOD = FAST["retry_period"]

embedded_only = pytest.mark.parametrize("kube", ["embedded"], indirect=True)


def _server(kube: KubeTarget) -> LeaseApiServer:
    assert kube.server is not None
    return kube.server


async def _delete_under_cut_off_holder(kube: KubeTarget, lease_name: str) -> None:
    """Cut "holder" off (it learns nothing of what follows: its open watch goes silent too),
    then delete its Lease as an administrator forcing a failover would."""
    server = _server(kube)
    server.faults.add(partition("holder"))
    assert server.faults.stall_watches(user="holder") == 1
    response = await kube.raw("admin").request("DELETE", leases_path(kube.namespace, lease_name))
    assert response.status == 200, response.body


async def test_a_shared_identity_never_takes_a_live_term_from_the_other_process(
    kube: KubeTarget, lease_name: str
) -> None:
    # Two worker processes of one pod, or two replicas given the same --identity.
    with anyio.fail_after(30):
        async with open_fleet(kube, lease_name) as fleet:
            first = await fleet.start("same", user="worker-1")
            await first.led.wait()
            second = await fleet.start("same", user="worker-2")
            # The record names "same", but the second elector did not write that term: it
            # must wait for the first to release or expire, however long that takes.
            with anyio.move_on_after(3 * LEASE_DURATION):
                await second.led.wait()
            assert not second.led.is_set(), "took a live term that merely named its identity"
            assert first.lost is None and first.leadership is not None
            first.stop()  # releases: the second takes over at once
            await second.led.wait()
            await first.done.wait()
    assert first.leadership is not None and second.leadership is not None
    assert second.leadership.token.transitions == first.leadership.token.transitions + 1
    fleet.log.assert_no_overlap()


@embedded_only
async def test_a_lease_deleted_under_a_cut_off_holder_is_not_created_again_while_it_works(
    kube: KubeTarget, lease_name: str
) -> None:
    server = _server(kube)
    with anyio.fail_after(30):
        async with open_fleet(kube, lease_name) as fleet:
            holder = await fleet.start("holder")
            await holder.led.wait()
            watching = server.faults.add(Latency(user="follower", verb="watch", seconds=0))
            follower = await fleet.start("follower")
            await watching.wait_hits(1)  # it has read the held Lease, and watches it
            await _delete_under_cut_off_holder(kube, lease_name)
            deleted_at = anyio.current_time()
            await follower.led.wait()
            await holder.done.wait()
    assert holder.lost is not None and holder.lost.reason is LossReason.RENEW_DEADLINE
    assert holder.interval is not None and follower.interval is not None
    # The cut-off holder worked on until its renew deadline; the follower waited it out.
    assert holder.interval.end > deleted_at
    assert follower.interval.start > holder.interval.end
    fleet.log.assert_no_overlap()


@embedded_only
async def test_a_campaign_started_again_still_waits_out_a_deleted_lease_holder(
    kube: KubeTarget, lease_name: str
) -> None:
    # The caller cancels the follower's campaign after it saw the deletion, and campaigns
    # again: the new campaign reads only a 404, yet must remember the holder's claim.
    with anyio.fail_after(30):
        async with open_fleet(kube, lease_name) as fleet, anyio.create_task_group() as tg:
            holder = await fleet.start("holder")
            await holder.led.wait()
            elector = await fleet.elector("follower")
            first = Candidate(elector, fleet.log)
            tg.start_soon(first.run)
            async with elector.observe() as leaders:
                assert await anext(leaders) == "holder"
                await _delete_under_cut_off_holder(kube, lease_name)
                assert await anext(leaders) is None  # the follower saw the deletion
            first.cancel()
            await first.done.wait()
            assert not first.led.is_set()
            again = Candidate(elector, fleet.log)
            tg.start_soon(again.run)
            await again.led.wait()
            await holder.done.wait()
            again.stop()
    assert holder.interval is not None and again.interval is not None
    assert again.interval.start > holder.interval.end
    fleet.log.assert_no_overlap()


class _RaisingSink:
    """A metrics sink whose every method raises, as a buggy exporter would."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def hook(*args: object) -> None:
            self.calls += 1
            raise RuntimeError(f"exporter down ({name})")

        return hook


@embedded_only
async def test_a_metrics_sink_that_raises_never_stops_renewals_ending_or_the_release(
    kube: KubeTarget, lease_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = _server(kube)
    sink = _RaisingSink()
    with anyio.fail_after(20):
        async with open_fleet(kube, lease_name) as fleet:
            lock = await fleet.lock("hooked")
            elector = LeaderElector(lock, identity="hooked", metrics=sink, **FAST)  # type: ignore[arg-type]
            async with elector.leading() as leadership:
                await server.wait_for_lease(
                    kube.namespace,
                    lease_name,
                    lambda lease: (
                        lease is not None
                        and lease["spec"].get("renewTime") != lease["spec"].get("acquireTime")
                    ),
                )  # renewed at least once: renewed() raised too
            assert leadership.released
            ended = len([w for w in server.writes if w.name == lease_name])
            # A term that has ended never renews: nothing more is written, however long.
            await anyio.sleep(3 * RETRY_PERIOD)
    assert len([w for w in server.writes if w.name == lease_name]) == ended
    assert server.writes[-1].holder_after == ""
    assert sink.calls >= 3  # leading_changed, acquired, renewed...
    assert "metrics sink" in caplog.text and "exporter down" in caplog.text


@embedded_only
async def test_a_campaign_cancelled_while_its_winning_write_is_in_flight_releases_the_lease(
    kube: KubeTarget, lease_name: str
) -> None:
    server = _server(kube)
    with anyio.fail_after(20):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("hasty")
            # The create commits, then its answer never comes: the caller gives up meanwhile.
            hang = server.faults.add(Hang(user="hasty", verb="create", when="after", times=1))
            async with anyio.create_task_group() as tg:

                async def campaign() -> None:
                    async with elector.leading():
                        raise AssertionError("the campaign was cancelled; it cannot lead")

                tg.start_soon(campaign)
                await hang.wait_hits(1)
                tg.cancel_scope.cancel()
            lease = await server.wait_for_lease(
                kube.namespace,
                lease_name,
                lambda lease: lease is not None and lease["spec"].get("holderIdentity") == "",
                timeout=RENEW_DEADLINE,
            )
    assert lease is not None
    holders = [w.holder_after for w in server.writes if w.name == lease_name]
    assert holders == ["hasty", ""]  # won by the cancelled campaign, then released by it


@embedded_only
async def test_an_observer_whose_watch_goes_silent_sees_the_release_within_a_lease_duration(
    kube: KubeTarget, lease_name: str
) -> None:
    server = _server(kube)
    with anyio.fail_after(20):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("leader")
            await leader.led.wait()
            observer = await fleet.elector("observer")
            watching = server.faults.add(Latency(user="observer", verb="watch", seconds=0))
            async with observer.observe() as leaders:
                assert await leaders.__anext__() == "leader"
                await watching.wait_hits(1)
                # A half-open connection: the watch stays open and says nothing any more.
                assert server.faults.stall_watches(user="observer") == 1
                leader.stop()
                await leader.done.wait()
                released_at = anyio.current_time()
                assert await leaders.__anext__() is None
                noticed = anyio.current_time() - released_at
    # Before, the stale view lasted until the watch's own timeout (240-303 s).
    assert noticed <= LEASE_DURATION + RETRY_PERIOD + 0.5, noticed


@embedded_only
async def test_a_follower_forbidden_to_watch_watches_again_once_allowed(
    kube: KubeTarget, lease_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="leaderelect")
    server = _server(kube)
    with anyio.fail_after(20):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("leader")
            await leader.led.wait()
            denied = server.faults.add(
                ErrorResponse(user="follower", verb="watch", status=403, times=1)
            )
            follower = await fleet.elector("follower")
            async with follower:  # follows: a read, then the (forbidden) watch
                await denied.wait_hits(1)
                # RBAC fixed: the next watch is allowed, and the follower asks for it.
                watching = server.faults.add(Latency(user="follower", verb="watch", seconds=0))
                await watching.wait_hits(1)
                reads = server.requests.count(verb="get", user="follower", name=lease_name)
                leader.stop()
                await leader.done.wait()
                with anyio.fail_after(1.0):  # the release arrives on the watch, not by polling
                    while follower.leader is not None:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                assert server.requests.count(verb="get", user="follower", name=lease_name) == reads
    assert "cannot watch lease" in caplog.text
