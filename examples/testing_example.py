"""Testing code that uses leaderelect, with the fixtures of ``leaderelect.testing``.

A real pytest file: ``pytest examples/testing_example.py``. It needs pytest and pytest-asyncio
(the ``testing`` extra: ``pip install 'leaderelect[testing] @ git+URL'``, the README's
Install); the fixtures are registered by leaderelect's pytest plugin, so there is nothing to
import or configure for them.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from leaderelect import LeaderElector, LeadershipLost, LeaseLock, LossReason
from leaderelect.testing import ErrorResponse, LeaseApiServer, partition

pytestmark = pytest.mark.asyncio


def make_elector(lock: LeaseLock, identity: str) -> LeaderElector:
    # Short timings keep the tests fast; they must still satisfy the safety-margin rule.
    return LeaderElector(
        lock, identity=identity, lease_duration=2.0, renew_deadline=1.5, retry_period=0.2
    )


# --8<-- [start:app]
async def run_singleton_job(kubeconfig: Path, identity: str, done: list[str]) -> None:
    """The code under test: a job that must run on one replica at a time."""
    async with await LeaseLock.connect("nightly-job", kubeconfig=kubeconfig) as lock:
        elector = make_elector(lock, identity)
        async with elector.leading() as leadership:
            await anyio.sleep(0.1)  # the job
            done.append(f"{identity} in term {leadership.token.transitions}")


# --8<-- [end:app]


# --8<-- [start:kubeconfig]
async def test_replicas_take_turns(leaderelect_kubeconfig: Path) -> None:
    done: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for identity in ("replica-a", "replica-b"):
                tg.start_soon(run_singleton_job, leaderelect_kubeconfig, identity, done)
    # One term each: the first released the lease, the second took it at once.
    assert sorted(entry[-1] for entry in done) == ["0", "1"]


# --8<-- [end:kubeconfig]


# --8<-- [start:fault]
async def test_a_failed_renewal_is_retried(leaderelect_server: LeaseApiServer) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    async with await LeaseLock.connect("nightly-job", kubeconfig=kubeconfig) as lock:
        elector = make_elector(lock, "replica-a")
        with anyio.fail_after(10):
            async with elector.leading() as leadership:
                failure = ErrorResponse(status=500, verb="update", times=1)
                with leaderelect_server.faults.add(failure) as fault:
                    # The next renewal fails; the first write after that is its retry.
                    await leaderelect_server.wait_for_lease(
                        "default", "nightly-job", lambda lease: fault.hits == 1
                    )
                assert leadership.is_valid  # one 500 is not a loss
        assert leaderelect_server.requests.count(verb="update", code=500) == 1


# --8<-- [end:fault]


# --8<-- [start:partition]
async def test_work_stops_when_the_leader_is_cut_off(leaderelect_server: LeaseApiServer) -> None:
    leaderelect_server.add_user("replica-a")  # its own user, so that a fault can single it out
    kubeconfig = leaderelect_server.kubeconfig("replica-a")
    async with await LeaseLock.connect("nightly-job", kubeconfig=kubeconfig) as lock:
        elector = make_elector(lock, "replica-a")
        with anyio.fail_after(10), pytest.raises(LeadershipLost) as lost:
            await lead_until_cut_off(elector, leaderelect_server)
    assert lost.value.reason is LossReason.RENEW_DEADLINE


async def lead_until_cut_off(elector: LeaderElector, server: LeaseApiServer) -> None:
    async with elector.leading():
        server.faults.add(partition(elector.identity))  # from now on, its requests hang
        await anyio.sleep_forever()  # cancelled at the renew deadline


# --8<-- [end:partition]


# --8<-- [start:counters]
async def test_a_follower_sends_no_requests_while_it_waits(
    leaderelect_server: LeaseApiServer,
) -> None:
    for user in ("replica-a", "replica-b"):
        leaderelect_server.add_user(user)
    locks = [
        await LeaseLock.connect("nightly-job", kubeconfig=leaderelect_server.kubeconfig(user))
        for user in ("replica-a", "replica-b")
    ]
    leader = make_elector(locks[0], "replica-a")
    follower = make_elector(locks[1], "replica-b")
    try:
        with anyio.fail_after(10):
            async with leader.leading(), anyio.create_task_group() as tg:
                tg.start_soon(follower_campaign, follower)
                await anyio.sleep(1.0)  # five renewals by the leader
                tg.cancel_scope.cancel()
    finally:
        for lock in locks:
            await lock.aclose()
    requests = leaderelect_server.requests
    assert requests.count(verb="update", user="replica-a") >= 4
    # The follower read the Lease once and watched it; it never polled.
    assert requests.count(verb="get", user="replica-b") == 1
    assert requests.count(verb="watch", user="replica-b") == 1


async def follower_campaign(elector: LeaderElector) -> None:
    async with elector.leading():
        pytest.fail("the follower should not lead while the leader renews")


# --8<-- [end:counters]
