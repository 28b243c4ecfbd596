"""End-to-end elections over HTTP, on the embedded server and on a real kube-apiserver."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
from _fleet import FAST, Candidate, Fleet, open_fleet
from _kube import KubeTarget, leases_path
from anyio.abc import TaskStatus

from leaderelect import Leadership, LossReason
from leaderelect._record import parse_micro_time

LEASE_DURATION = FAST["lease_duration"]
RENEW_DEADLINE = FAST["renew_deadline"]


async def test_one_leader_at_a_time_through_graceful_handovers(
    kube: KubeTarget, lease_name: str
) -> None:
    with anyio.fail_after(30):
        async with open_fleet(kube, lease_name) as fleet:
            candidates = [await fleet.start(f"cand-{i}") for i in range(4)]
            for term in range(1, 5):
                interval = await fleet.log.wait_for_starts(term)
                leader = next(c for c in candidates if c.identity == interval.identity)
                # Hold for longer than a lease: nobody else may start meanwhile.
                await anyio.sleep(LEASE_DURATION * 1.2)
                assert len(fleet.log.intervals) == term
                assert sum(1 for c in candidates if c.elector.is_leader) == 1
                lease = await fleet.lease()
                assert lease["spec"]["holderIdentity"] == leader.identity
                assert lease["spec"].get("leaseTransitions", 0) == term - 1
                leader.stop()
                await leader.done.wait()
                assert leader.lost is None and leader.error is None
            fleet.log.assert_no_overlap()
            # Every graceful handover went through a release, not an expiry.
            ordered = fleet.log.intervals
            for before, after in itertools.pairwise(ordered):
                assert after.start - before.end < LEASE_DURATION
            lease = await fleet.lease()
            assert lease["spec"]["holderIdentity"] == ""
            assert lease["spec"]["leaseDurationSeconds"] == 1


async def test_lease_written_as_client_go_writes_it(kube: KubeTarget, lease_name: str) -> None:
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            first = await fleet.start("writer-a")
            await first.led.wait()
            acquired = await fleet.lease()
            spec = acquired["spec"]
            assert spec["holderIdentity"] == "writer-a"
            assert spec["leaseDurationSeconds"] == 2
            assert spec["leaseTransitions"] == 0
            assert spec["acquireTime"].endswith("Z") and len(spec["acquireTime"]) == 27
            # A renewal changes renewTime only.
            renewed = await fleet.wait_for_spec(lambda s: s["renewTime"] != spec["renewTime"])
            assert renewed["acquireTime"] == spec["acquireTime"]
            assert renewed["leaseTransitions"] == 0
            assert parse_micro_time(renewed["renewTime"]) > parse_micro_time(spec["renewTime"])
            # Release: holder "", 1 second, transitions kept.
            first.stop()
            await first.done.wait()
            released = (await fleet.lease())["spec"]
            assert released["holderIdentity"] == ""
            assert released["leaseDurationSeconds"] == 1
            assert released["leaseTransitions"] == 0
            # Taking a released lease is a transition too.
            second = await fleet.start("writer-b")
            await second.led.wait()
            taken = (await fleet.lease())["spec"]
            assert taken["holderIdentity"] == "writer-b"
            assert taken["leaseTransitions"] == 1
            assert second.leadership is not None
            assert second.leadership.token.transitions == 1
            assert second.leadership.token.lease_uid == acquired["metadata"]["uid"]


async def test_takeover_after_leader_dies_without_release(
    kube: KubeTarget, lease_name: str
) -> None:
    with anyio.fail_after(20):
        async with open_fleet(kube, lease_name) as fleet:
            doomed = await fleet.start("doomed", release_on_cancel=False)
            await doomed.led.wait()
            survivor = await fleet.start("survivor")
            assert doomed.leadership is not None
            doomed.cancel()
            await doomed.done.wait()
            last_renewal_sent = doomed.leadership.deadline - RENEW_DEADLINE
            await survivor.led.wait()
            assert survivor.interval is not None
            # The survivor waited a full lease duration after the last renewal it could see.
            assert survivor.interval.start >= last_renewal_sent + LEASE_DURATION
            spec = (await fleet.lease())["spec"]
            assert spec["holderIdentity"] == "survivor"
            assert spec["leaseTransitions"] == 1
            fleet.log.assert_no_overlap()


async def test_work_is_cancelled_and_awaited_before_release_is_written(
    kube: KubeTarget, lease_name: str
) -> None:
    cleanup_finished: list[float] = []

    async def body(leadership: Leadership) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.3)  # slow cleanup that must finish before the release
                cleanup_finished.append(anyio.current_time())

    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.elector("careful")
            candidate = Candidate(leader, fleet.log)
            candidate.body = body
            release_seen: list[float] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(candidate.run)
                await candidate.led.wait()
                await tg.start(_record_release, fleet, release_seen)
                candidate.cancel()
                await candidate.done.wait()
            assert cleanup_finished and release_seen
            assert cleanup_finished[0] <= release_seen[0]
            assert (await fleet.lease())["spec"]["holderIdentity"] == ""


async def test_definite_loss_cancels_work_at_once(kube: KubeTarget, lease_name: str) -> None:
    slow = {"lease_duration": 10.0, "renew_deadline": 6.0, "retry_period": 3.0}
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("victim", **slow)
            await leader.led.wait()
            lease = await fleet.lease()
            intruded_at = anyio.current_time()
            await fleet.write_spec({**lease["spec"], "holderIdentity": "intruder"})
            await leader.done.wait()
            assert leader.lost is not None
            assert leader.lost.reason is LossReason.OTHER_HOLDER
            assert leader.interval is not None
            # Seen through the watch, not at the renew deadline 6 s away.
            assert leader.interval.end - intruded_at < slow["renew_deadline"] / 2
            # No release over the intruder.
            assert (await fleet.lease())["spec"]["holderIdentity"] == "intruder"


async def test_release_does_not_clobber_a_new_holder(kube: KubeTarget, lease_name: str) -> None:
    slow = {"lease_duration": 10.0, "renew_deadline": 6.0, "retry_period": 3.0}
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            leader = await fleet.start("old", **slow)
            await leader.led.wait()
            lease = await fleet.lease()
            # Another holder takes over between two renewals, and the old one exits at once.
            await fleet.write_spec(
                {**lease["spec"], "holderIdentity": "new", "leaseTransitions": 9}
            )
            leader.stop()
            await leader.done.wait()
            spec = (await fleet.lease())["spec"]
            assert spec["holderIdentity"] == "new"
            assert spec["leaseTransitions"] == 9


async def test_run_callbacks_fire_in_order(kube: KubeTarget, lease_name: str) -> None:
    events: list[tuple[str, Any]] = []

    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("runner")

            async def started(leadership: Leadership) -> None:
                events.append(("started", leadership.identity))

            async def stopped() -> None:
                events.append(("stopped", None))

            async def new_leader(identity: str | None) -> None:
                events.append(("leader", identity))

            await elector.run(started, on_stopped_leading=stopped, on_new_leader=new_leader)
    # Leader changes arrive in order; the term's own callbacks in order too.
    assert [e for e in events if e[0] == "leader"] == [("leader", "runner"), ("leader", None)]
    assert [e for e in events if e[0] != "leader"] == [("started", "runner"), ("stopped", None)]


async def test_body_exception_propagates_unchanged_after_release(
    kube: KubeTarget, lease_name: str
) -> None:
    class Boom(Exception):
        pass

    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("failing")
            with pytest.raises(Boom):
                async with elector.leading():
                    raise Boom
            assert not elector.is_leader
            assert (await fleet.lease())["spec"]["holderIdentity"] == ""


async def test_leading_context_is_single_use_and_one_term_at_a_time(
    kube: KubeTarget, lease_name: str
) -> None:
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("single")
            context = elector.leading()
            async with context as leadership:
                assert elector.is_leader
                assert leadership.time_left() > 0
                assert elector.leader == "single"
                with pytest.raises(RuntimeError, match="one term at a time"):
                    async with elector.leading():
                        pass
            assert not leadership.is_valid
            assert leadership.released
            with pytest.raises(RuntimeError, match="only once"):
                async with context:
                    pass


async def test_free_and_malformed_leases_are_taken_without_crashing(
    kube: KubeTarget, lease_name: str
) -> None:
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            # An empty spec is free: taken at once.
            await fleet.write_spec({})
            first = await fleet.start("first")
            await first.led.wait()
            first.stop()
            await first.done.wait()
            # A holder that never says how long its claim lasts is not trusted; we wait our
            # own lease duration from when we saw it.
            await fleet.write_spec({"holderIdentity": "ghost"})
            seen_at = anyio.current_time()
            second = await fleet.start("second")
            await second.led.wait()
            assert second.interval is not None
            assert second.interval.start - seen_at >= LEASE_DURATION * 0.9
            assert (await fleet.lease())["spec"]["holderIdentity"] == "second"


async def _record_release(
    fleet: Fleet, seen: list[float], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Watch the Lease and note the loop time at which its holder becomes empty."""
    raw = fleet.kube.raw("admin")
    path = leases_path(fleet.kube.namespace)
    async with raw.watch(path, {"fieldSelector": f"metadata.name={fleet.lease_name}"}) as stream:
        task_status.started()
        while True:
            event = await stream.next(timeout=10)
            if event is None:
                return
            if event.object.get("spec", {}).get("holderIdentity", "") == "":
                seen.append(anyio.current_time())
                return


async def test_observe_reports_each_change_of_leader(kube: KubeTarget, lease_name: str) -> None:
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            observer = await fleet.elector("observer")
            async with observer.observe() as leaders:
                assert await anext(leaders) is None  # no lease yet
                first = await fleet.start("obs-a")
                assert await anext(leaders) == "obs-a"
                second = await fleet.start("obs-b")
                first.stop()
                # Released, then taken: the free moment may be too short to be seen.
                change = await anext(leaders)
                if change is None:
                    change = await anext(leaders)
                assert change == "obs-b"
                await second.led.wait()
            assert not observer.is_leader


async def test_cancellation_from_outside_releases_and_propagates(
    kube: KubeTarget, lease_name: str
) -> None:
    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            for attempt in range(5):  # the release must not depend on scheduling luck
                elector = await fleet.elector(f"shutdown-{attempt}")
                with anyio.CancelScope() as outer:
                    async with elector.leading():
                        outer.cancel()
                        await anyio.sleep_forever()
                assert outer.cancelled_caught
                spec = (await fleet.lease())["spec"]
                assert spec["holderIdentity"] == ""
                assert spec["leaseTransitions"] == attempt


async def test_run_with_callbacks_cancelled_from_outside_still_releases(
    kube: KubeTarget, lease_name: str
) -> None:
    seen: list[str | None] = []

    async def new_leader(identity: str | None) -> None:
        seen.append(identity)

    async def work(leadership: Leadership) -> None:
        outer.cancel()
        await anyio.sleep_forever()

    with anyio.fail_after(15):
        async with open_fleet(kube, lease_name) as fleet:
            elector = await fleet.elector("cancelled-runner")
            with anyio.CancelScope() as outer:
                await elector.run(work, on_new_leader=new_leader)
            assert outer.cancelled_caught
            assert (await fleet.lease())["spec"]["holderIdentity"] == ""
    assert seen[:1] == ["cancelled-runner"]
