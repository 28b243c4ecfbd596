"""run_while_leading() and BackgroundElection, against the in-process Lease API server."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from _integrations import example_process, fast_elector, held_by, hold, take_over

from leaderelect import LeaderElector, Leadership, LeaseLock
from leaderelect.integrations import BackgroundElection, ElectionStatus, Worker, run_while_leading
from leaderelect.integrations._common import liveness_problem, readiness_problem
from leaderelect.testing import LeaseApiServer

LEASE = "integrations"

MakeElector = Callable[[str], Awaitable[LeaderElector]]


@pytest.fixture
async def make_elector(
    leaderelect_server: LeaseApiServer,
) -> AsyncIterator[MakeElector]:
    """``await make_elector(identity)``: an elector with fast timings on its own client."""
    locks: list[LeaseLock] = []

    async def make(identity: str) -> LeaderElector:
        lock = await LeaseLock.from_kubeconfig(LEASE, config_file=leaderelect_server.kubeconfig())
        locks.append(lock)
        return fast_elector(lock, identity)

    yield make
    for lock in locks:
        await lock.aclose()


def is_leader(status: ElectionStatus) -> bool:
    return status.is_leader


# -- run_while_leading ---------------------------------------------------------------------------


async def test_run_while_leading_passes_the_term_and_args_and_releases_when_fn_returns(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    elector = await make_elector("solo")
    seen: list[tuple[str, str, int]] = []

    async def work(leadership: Leadership, label: str, count: int) -> None:
        assert elector.is_leader
        seen.append((leadership.identity, label, count))

    with anyio.fail_after(10):
        await run_while_leading(elector, work, "job", 3)
    assert seen == [("solo", "job", 3)]
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


async def test_run_while_leading_campaigns_again_after_a_loss(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    elector = await make_elector("again")
    terms: list[int] = []
    started = anyio.Event()
    cancelled: list[int] = []

    async def work(leadership: Leadership) -> None:
        terms.append(leadership.token.transitions)
        started.set()
        if len(terms) == 2:
            return  # the second term ends the run
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(leadership.token.transitions)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_while_leading, elector, work)
            await started.wait()
            # Another candidate takes the lease for one second: the work is cancelled, and
            # the elector takes the lease back once that claim expires.
            await take_over(leaderelect_server, LEASE, "intruder", seconds=1)
    assert terms == [0, 2]
    assert cancelled == [0]


async def test_run_while_leading_propagates_fn_errors_after_releasing(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    elector = await make_elector("failing")

    async def work(leadership: Leadership) -> None:
        raise LookupError("boom")

    with anyio.fail_after(10), pytest.raises(LookupError, match="boom"):
        await run_while_leading(elector, work)
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


# -- BackgroundElection ----------------------------------------------------------------------------


async def test_only_the_leader_runs_workers_and_a_shutdown_hands_over(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    log: list[tuple[str, str]] = []
    started = {"first": anyio.Event(), "second": anyio.Event()}

    def worker(name: str) -> Worker:
        async def run(leadership: Leadership) -> None:
            log.append((name, "start"))
            started[name].set()
            try:
                await anyio.sleep_forever()
            finally:
                log.append((name, "stop"))

        return run

    first = await make_elector("first")
    second = await make_elector("second")
    a = BackgroundElection(first, worker("first"))
    b = BackgroundElection(second, worker("second"))
    stop_a, stop_b = anyio.Event(), anyio.Event()
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            await tg.start(hold, a, stop_a)
            status = await a.wait_until(is_leader)
            await started["first"].wait()
            assert status.identity == "first" and status.leader == "first"
            assert status.token is not None and status.token.transitions == 0
            assert status.running and status.error is None
            assert a.leadership is not None and a.leadership.identity == "first"
            with pytest.raises(RuntimeError, match="only once"):
                await a.__aenter__()

            await tg.start(hold, b, stop_b)
            following = await b.wait_until(lambda s: s.leader == "first")
            assert not following.is_leader and following.token is None
            assert b.leadership is None
            assert readiness_problem(b, leader_only=False) is None
            problem = readiness_problem(b, leader_only=True)
            assert problem is not None and "the leader is 'first'" in problem
            assert log == [("first", "start")]

            # Shut the leader down: its worker stops, then the lease is released, and the
            # follower takes over at once.
            stop_a.set()
            taken = await b.wait_until(is_leader)
            assert taken.token is not None and taken.token.transitions == 1
            await started["second"].wait()
            assert log[:3] == [("first", "start"), ("first", "stop"), ("second", "start")]
            assert not a.status.running and not a.status.is_leader
            stop_b.set()
    assert log[3:] == [("second", "stop")]
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == ""


async def test_the_term_is_held_after_workers_return(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    elector = await make_elector("holder")
    done = anyio.Event()

    async def quick(leadership: Leadership) -> None:
        done.set()

    with anyio.fail_after(10):
        async with BackgroundElection(elector, quick) as election:
            await done.wait()
            # Renewals go on: wait for one past the worker's return.
            lease = leaderelect_server.lease("default", LEASE)
            assert lease is not None
            renewed = lease["spec"]["renewTime"]
            await leaderelect_server.wait_for_lease(
                "default",
                LEASE,
                lambda lease: lease is not None and lease["spec"]["renewTime"] != renewed,
            )
            assert election.status.is_leader


async def test_a_failing_worker_releases_stops_the_election_and_fails_liveness(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    elector = await make_elector("fragile")
    sibling_stopped = anyio.Event()

    async def fails(leadership: Leadership) -> None:
        raise LookupError("the database is gone")

    async def sibling(leadership: Leadership) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            sibling_stopped.set()

    election = BackgroundElection(elector, sibling, fails)
    with anyio.fail_after(10):
        await election.__aenter__()
        status = await election.wait_until(lambda s: not s.running)
        assert sibling_stopped.is_set()
        assert status.error == "LookupError: the database is gone"
        assert not status.is_leader
        problem = liveness_problem(election, tolerance=0)
        assert problem is not None and "the database is gone" in problem
        assert readiness_problem(election, leader_only=False) is not None
        lease = leaderelect_server.lease("default", LEASE)
        assert lease is not None and lease["spec"]["holderIdentity"] == ""
        # The error comes out when the context exits.
        with pytest.raises(LookupError, match="the database is gone"):
            await election.__aexit__(None, None, None)


async def test_status_renders_as_json(
    leaderelect_server: LeaseApiServer, make_elector: MakeElector
) -> None:
    elector = await make_elector("json")
    with anyio.fail_after(10):
        async with BackgroundElection(elector) as election:
            status = await election.wait_until(is_leader)
            assert liveness_problem(election, tolerance=0) is None
            assert status.to_dict() == {
                "lease": "default/integrations",
                "identity": "json",
                "leader": "json",
                "is_leader": True,
                "token": str(status.token),
                "running": True,
                "error": None,
                "problem": None,
            }
            assert repr(election) == "<BackgroundElection 'json' for default/integrations leading>"
        await leaderelect_server.wait_for_lease("default", LEASE, held_by(""))


# -- the example -------------------------------------------------------------------------------


async def test_the_background_work_example_hands_over_on_sigterm(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(30):
        async with example_process("background_work.py", kubeconfig, "worker-a") as (pa, out_a):
            first = await out_a.wait_for(lambda line: line.startswith("worker-a: reconciling"))
            assert first.rstrip().endswith(":0")
            async with example_process("background_work.py", kubeconfig, "worker-b") as (
                pb,
                out_b,
            ):
                pa.send_signal(signal.SIGTERM)
                assert await pa.wait() == 0
                assert (await out_a.rest())[-1] == "worker-a: stopped"
                line = await out_b.wait_for(lambda line: line.startswith("worker-b: reconciling"))
                assert line.rstrip().endswith(":1")
                pb.send_signal(signal.SIGINT)
                assert await pb.wait() == 0
    await leaderelect_server.wait_for_lease("default", "background-work", held_by(""))
