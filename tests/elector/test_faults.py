"""Elections under injected faults (embedded server only: the faults are the server's).

Each test asserts from recorded timestamps: the candidates' work intervals on the loop clock,
and the server's write history on the same clock.
"""

from __future__ import annotations

import anyio
import pytest
from _fleet import FAST, Candidate, open_fleet
from _kube import KubeTarget, leases_path

from leaderelect import Leadership, LossReason
from leaderelect.testing import DropConnection, ErrorResponse, Fault, Hang, Latency, partition

pytestmark = pytest.mark.parametrize("kube", ["embedded"], indirect=True)

RENEW_DEADLINE = FAST["renew_deadline"]


def _renewal_faults(user: str) -> list[Fault]:
    return [
        ErrorResponse(user=user, verb="update", status=500),
        ErrorResponse(user=user, verb="update", status=429, retry_after=1),
        Hang(user=user, verb="update"),
        Latency(user=user, verb="update", seconds=RENEW_DEADLINE * 2),
        DropConnection(user=user, verb="update", when="before"),
        partition(user),
    ]


@pytest.mark.parametrize(
    "fault_index",
    range(6),
    ids=["500", "429 retry-after", "hang", "latency", "refused", "partition"],
)
async def test_leader_whose_renewals_fail_stops_before_anyone_else_acquires(
    kube: KubeTarget, lease_name: str, fault_index: int
) -> None:
    server = kube.server
    assert server is not None
    with anyio.fail_after(20):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("failing")
            await leader.led.wait()
            follower = await fleet.start("standby")
            server.faults.add(_renewal_faults("failing")[fault_index])
            await follower.led.wait()
            await leader.done.wait()
    assert leader.lost is not None
    assert leader.lost.reason is LossReason.RENEW_DEADLINE
    assert leader.interval is not None and follower.interval is not None
    # The old leader's work stopped before the new one's started ...
    assert leader.interval.end < follower.interval.start
    # ... and no later than the renew deadline after its last successful renewal committed.
    ours = [w for w in server.writes if w.user == "failing" and w.name == lease_name]
    last_renewal = max(w.time for w in ours if w.holder_after == "failing")
    assert leader.interval.end <= last_renewal + RENEW_DEADLINE + 0.05
    # The new holder's acquiring write came after the old leader stopped working.
    takeover = next(w for w in server.writes if w.holder_after == "standby")
    assert takeover.time > leader.interval.end
    fleet.log.assert_no_overlap()


async def test_renewal_committed_but_answer_lost_keeps_leadership(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("lucky")
            await leader.led.wait()
            server.faults.add(DropConnection(user="lucky", verb="update", times=1))
            renewals = len(server.writes)
            # The lost answer makes the next renewal conflict (aiohttp may even resend the
            # PUT itself); the leader re-reads, sees the lease is still its own in this term,
            # and goes on renewing.
            await server.wait_for_lease(
                kube.namespace,
                lease_name,
                lambda lease: len(server.writes) >= renewals + 5,
                timeout=10,
            )
            assert leader.lost is None
            assert leader.elector.is_leader
            assert server.requests.count(verb="update", user="lucky", code=409) >= 1
            assert (await fleet.lease())["spec"]["holderIdentity"] == "lucky"


async def test_released_lease_is_taken_over_from_the_watch_without_polling(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    slow = {"lease_duration": 10.0, "renew_deadline": 6.0, "retry_period": 3.0}
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("first", **slow)
            await leader.led.wait()
            watches = server.faults.add(Latency(user="second", verb="watch", seconds=0))
            follower = await fleet.start("second", **slow)
            await watches.wait_hits(1)  # the follower has read the lease and is watching
            leader.stop()
            await follower.led.wait()
            assert leader.interval is not None and follower.interval is not None
            # Taken over long before a client-go follower's first poll (retry_period = 3 s).
            assert follower.interval.start - leader.interval.end < slow["retry_period"] / 2
            # The follower read once when it started, then only watched; its one write won.
            assert server.requests.count(verb="get", user="second") == 1
            assert server.requests.count(verb="update", user="second") == 1
            assert server.requests.count(verb="watch", user="second") == 1


async def test_followers_make_no_requests_in_steady_state(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    followers = 50
    with anyio.fail_after(60):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("steady-leader")
            await leader.led.wait()
            names = [f"steady-{i}" for i in range(followers)]
            watches = server.faults.add(Latency(user=names, verb="watch", seconds=0))
            for name in names:
                await fleet.start(name)
            await watches.wait_hits(followers)  # every follower has read the lease and watches
            server.requests.reset()
            window = 20 * FAST["retry_period"]
            await anyio.sleep(window)  # a window of steady state, measured
            per_user = server.requests.snapshot()
            leader_writes = server.requests.count(verb="update", user="steady-leader")
    follower_requests = {
        key: count for key, count in per_user.items() if key[2] not in (None, "steady-leader")
    }
    assert follower_requests == {}, f"followers polled: {follower_requests}"
    # The leader renews once per retry period (20 in the window, give or take one).
    assert 18 <= leader_writes <= 21


class RecordingMetrics:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def leading_changed(self, lease: str, leading: bool) -> None:
        self.events.append(("leading", leading))

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        self.events.append(("acquired", transitions))

    def renewed(self, lease: str, latency: float) -> None:
        self.events.append(("renewed", latency >= 0))

    def renew_failed(self, lease: str, error: str) -> None:
        self.events.append(("renew_failed", error))

    def slow_path(self, lease: str) -> None:
        self.events.append(("slow_path", None))

    def lost(self, lease: str, reason: LossReason) -> None:
        self.events.append(("lost", reason))


async def test_metrics_follow_a_term_from_acquisition_to_loss(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    metrics = RecordingMetrics()
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("measured", metrics=metrics)
            await leader.led.wait()
            await server.wait_for_lease(
                kube.namespace,
                lease_name,
                lambda _: ("renewed", True) in metrics.events,
                timeout=5,
            )
            server.faults.add(ErrorResponse(user="measured", verb="update", status=503))
            await leader.done.wait()
    kinds = [kind for kind, _ in metrics.events]
    # Like client-go, a new elector reports "not leading" before anything else.
    assert metrics.events[:3] == [("leading", False), ("acquired", 0), ("leading", True)]
    assert "renewed" in kinds
    assert ("renew_failed", "ApiUnavailable") in metrics.events
    assert metrics.events[-2:] == [("lost", LossReason.RENEW_DEADLINE), ("leading", False)]


async def test_check_reports_a_leader_whose_work_ignores_cancellation(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    lease_duration = FAST["lease_duration"]
    verdicts: list[str | None] = []

    async def stubborn(leadership: object) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                # Work that ignores its cancellation for longer than a lease.
                await anyio.sleep(lease_duration + 0.5)
                verdicts.append(leader.elector.check(tolerance=0.2))

    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("wedged")
            leader = Candidate(elector, fleet.log)
            leader.body = stubborn
            async with anyio.create_task_group() as tg:
                tg.start_soon(leader.run)
                await leader.led.wait()
                assert elector.check() is None
                server.faults.add(Hang(user="wedged", verb="update"))
                await leader.done.wait()
    assert verdicts and verdicts[0] is not None
    assert "has not renewed" in verdicts[0]
    assert elector.check() is None  # the term is over


async def test_entered_elector_shares_one_watch_across_terms_and_observers(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("sharer")
            async with elector:
                assert elector.leader is None
                async with elector.observe() as leaders:
                    assert await anext(leaders) is None
                    for _ in range(3):
                        async with elector.leading():
                            assert await anext(leaders) == "sharer"
                        assert await anext(leaders) is None
                    assert elector.leader is None
    # One read and one watch for three terms and an observer; one create, then takeovers.
    assert server.requests.count(verb="get", user="sharer") == 1
    assert server.requests.count(verb="watch", user="sharer") == 1


async def test_run_shares_one_watch_across_terms(kube: KubeTarget, lease_name: str) -> None:
    server = kube.server
    assert server is not None
    terms: list[int] = []
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("rerunner")
            intruders = kube.raw("admin")

            async def work(leadership: Leadership) -> None:
                terms.append(leadership.token.transitions)
                if len(terms) < 3:
                    # Someone else empties the lease: our term is lost; run() campaigns again.
                    lease = await fleet.lease()
                    lease["spec"] = {**lease["spec"], "holderIdentity": ""}
                    path = f"{leases_path(kube.namespace)}/{lease_name}"
                    assert (await intruders.request("PUT", path, lease)).status == 200
                    await anyio.sleep_forever()

            await elector.run(work)
    assert terms == [0, 1, 2]
    assert server.requests.count(verb="watch", user="rerunner") == 1


async def test_polling_leader_does_not_read_while_it_leads(
    kube: KubeTarget, lease_name: str
) -> None:
    server = kube.server
    assert server is not None
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("poller", watch=False)
            await leader.led.wait()

            async def renewals(count: int) -> None:
                await server.wait_for_lease(
                    kube.namespace,
                    lease_name,
                    lambda _: server.requests.count(verb="update", user="poller") >= count,
                    timeout=10,
                )

            # A read sent while campaigning may still arrive just after the term began; count
            # from the first renewal on, over ten renewals (two seconds of leading).
            await renewals(1)
            server.requests.reset()
            await renewals(10)
            assert server.requests.count(verb="get", user="poller") == 0
            assert server.requests.count(verb="watch", user="poller") == 0
