"""Go and Python candidates sharing one Lease on a real kube-apiserver.

The Go candidates are client-go v1.36's leader-election example (``le-example``); ours are
``LeaderElector``s. Every test records three views on the test's loop clock (our work intervals,
the Go candidates' log lines, and every version of the Lease from a watch) and checks them
against each other: one leader at a time, holders in the order the Lease names them, and every
write as client-go writes it (see ``_mixed.py``).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import anyio
import pytest
from _go import (
    REQUIRE_REAL_SERVER,
    GoCandidate,
    GoEventKind,
    GoTimings,
    le_example_missing,
    le_example_path,
    require_flag_set,
)
from _kube import KubeTarget
from _mixed import LeaseState, MixedFleet, Term, open_mixed_fleet, real_kube_variants

from leaderelect import Timings

# Real API servers only (``real``, and ``external`` with $LEADERELECT_KUBECONFIG); each skips,
# or fails with LEADERELECT_REQUIRE_REAL_SERVER=1, where the server or le-example is missing.
pytestmark = [
    pytest.mark.parametrize("kube", real_kube_variants(), indirect=True),
    pytest.mark.slow,
    pytest.mark.timeout(150),  # each test bounds itself with fail_after; this covers setup too
]


@pytest.fixture(scope="session")
def le_example() -> Path:
    """client-go's leader-election example binary."""
    missing = le_example_missing()
    if missing is not None:
        if require_flag_set():
            pytest.fail(f"{missing} [{REQUIRE_REAL_SERVER}=1 makes this a failure]", pytrace=False)
        pytest.skip(missing)
    return le_example_path()


logger = logging.getLogger("interop")

SAME_GO = GoTimings(lease_duration=4.0, renew_deadline=2.5, retry_period=0.5)
SAME_PY = Timings(lease_duration=4.0, renew_deadline=2.5, retry_period=0.5)
LEASE = SAME_PY.lease_duration

WATCH_LAG = 0.1
"""How far apart two watchers (the test's and a candidate's) may see the same write."""

CLOCK_SLACK = 0.02
"""Error of translating a ``renewTime`` (wall clock, microseconds) to the loop clock."""

PROMPT = 0.5
"""A takeover that follows an event (a watch event, an expiry timer) within this is at once."""


def _figure(what: str, seconds: float) -> None:
    logger.info("figure: %s: %.3f s", what, seconds)


def _released_after(fleet: MixedFleet, moment: float) -> LeaseState:
    release = fleet.history.first(lambda s: s.holder == "", after=moment)
    assert release is not None, f"no release after {moment:.3f}\n{fleet.describe()}"
    return release


def _last_write_by(fleet: MixedFleet, holder: str) -> LeaseState:
    last = fleet.history.last(lambda s: s.holder == holder)
    assert last is not None, f"{holder} never wrote the lease\n{fleet.describe()}"
    return last


def _as_client_go_sees_it(state: LeaseState) -> tuple[object, ...]:
    """The record as client-go compares it between two polls.

    client-go decides whether the record changed by comparing its JSON encoding of
    ``LeaderElectionRecord``, whose times are ``metav1.Time``: whole seconds. Two renewals in
    the same second look identical to a Go follower, so its expiry clock may start at the first
    renewal of that second rather than the last (we saw a Go follower take over 3.57 s after the
    last renewal of a 4 s lease renewed every 0.5 s).
    """
    spec = state.spec
    return (
        state.holder,
        state.duration,
        str(spec.get("acquireTime"))[:19],
        str(spec.get("renewTime"))[:19],
        state.transitions,
    )


def _assert_expired(
    fleet: MixedFleet, holder: str, successor: Term, *, lease: float, go_poll: float
) -> float:
    """``successor`` waited out ``holder``'s lease, and not much longer.

    No sooner than ``lease`` seconds after the last write it could tell apart (ours: the last
    write; client-go: the first write of the last write's second). No later than ``lease`` plus
    a moment after the test's watch saw the last write, for our followers (a timer); plus up to
    two polls of ``go_poll`` for a Go follower (one to see the write, one to take the lease).

    Returns the wait counted from the last write as the watch saw it.
    """
    at_most = lease + PROMPT + (2 * go_poll if successor.side == "go" else 0.0)
    last = _last_write_by(fleet, holder)
    reference = last
    if successor.side == "go":
        key = _as_client_go_sees_it(last)
        reference = next(s for s in fleet.history.states if _as_client_go_sees_it(s) == key)
    since_sent = successor.start - reference.renewed_at
    since_seen = successor.start - last.at
    assert since_sent >= lease - CLOCK_SLACK, (
        f"{successor.identity} took {holder}'s {lease:g}s lease {since_sent:.3f}s after "
        f"{holder} sent rv={reference.resource_version}\n{fleet.describe()}"
    )
    assert since_seen <= at_most, (
        f"{successor.identity} took {holder}'s lease {since_seen:.3f}s after its last renewal "
        f"was seen (expected at most {at_most:g}s)\n{fleet.describe()}"
    )
    return since_seen


def _assert_go_read_each_holder(fleet: MixedFleet) -> None:
    """The Go candidates' logs agree with the Lease: they read our records as we read theirs.

    Each poll well inside a term names that term's holder (near its edges a poll may have read
    the lease just before or after the change), and each candidate's ``new leader elected``
    lines name holders in the order they held the lease.
    """
    terms = fleet.terms()
    holders = fleet.history.holders()
    for candidate in fleet.go.values():
        announced = [e.detail for e in candidate.of(GoEventKind.NEW_LEADER)]
        remaining = iter(holders)
        assert all(name in remaining for name in announced), (
            f"{candidate.identity} announced {announced}; the lease had {holders}"
        )
        for poll in candidate.of(GoEventKind.POLL):
            assert poll.detail, f"{candidate.identity} logged a free lease as held: {poll.line}"
            inside = [t for t in terms if t.start + WATCH_LAG < poll.at < t.end - WATCH_LAG]
            for term in inside:
                assert poll.detail == term.identity, (
                    f"{candidate.identity} saw {poll.detail} during {term}\n{fleet.describe()}"
                )


async def _expire(fleet: MixedFleet, leader: Term, *, others_leave: bool) -> tuple[float, Term]:
    """End ``leader``'s term without a release, right after one of its renewals.

    A Go leader is SIGKILLed; a Python leader (``release_on_cancel=False``) is cancelled.
    With ``others_leave``, the other Python candidates leave first, so that only Go followers
    remain. Returns (the time it stopped, the next term).
    """
    count = len(fleet.terms())
    if others_leave:
        for candidate in fleet.py.values():
            if candidate.identity != leader.identity and not candidate.done.is_set():
                await candidate.cancelled()
    await fleet.next_renewal(leader.identity)
    if leader.side == "go":
        stopped_at = fleet.go[leader.identity].kill()
    else:
        stopped_at = anyio.current_time()
        fleet.py[leader.identity].cancel()
    successor = await fleet.wait_for_terms(count + 1, within=LEASE + 10)
    return stopped_at, successor


async def test_mixed_fleet_has_one_leader_at_a_time(
    le_example: Path, kube: KubeTarget, lease_name: str
) -> None:
    """Two Go and two Python candidates, same timings, four takeovers in every direction."""
    with anyio.fail_after(90):
        async with open_mixed_fleet(kube, lease_name, le_example) as fleet:
            go = [await fleet.start_go(f"go-{i}", SAME_GO) for i in (1, 2)]
            first = await fleet.wait_for_terms(1)
            assert first.side == "go"
            py = [await fleet.start_py(f"py-{i}", SAME_PY) for i in (1, 2)]
            # A Go leader renewing keeps our watching followers waiting, longer than a lease.
            await fleet.hold(first.identity, LEASE + 1)
            assert len(fleet.terms()) == 1

            # 1. Go -> Python after a graceful stop. SIGTERM right after the remaining Go
            #    follower polled: it cannot poll again for a retry period, our followers
            #    react to the watch event of the release.
            go_leader = fleet.go[first.identity]
            go_follower = next(c for c in go if c is not go_leader)
            poll = await fleet.next_poll(go_follower)
            signalled = go_leader.terminate()
            second = await fleet.wait_for_terms(2)
            assert second.side == "python", fleet.describe()
            release = _released_after(fleet, signalled)
            assert second.start < poll.at + SAME_GO.retry_period, fleet.describe()
            assert second.start - release.at < PROMPT, fleet.describe()
            _figure("Go release (watch event) -> Python leads", second.start - release.at)
            _figure("Go SIGTERM -> Python leads", second.start - signalled)
            # The Go follower's next poll reads our record and names our candidate.
            seen = await fleet.until(
                lambda: go_follower.first(GoEventKind.POLL, after=second.start),
                within=SAME_GO.longest_poll + 2,
                what="the Go follower's next poll",
            )
            assert seen.detail == second.identity
            assert await go_leader.wait_exit() == 0
            go.append(await fleet.start_go("go-3", SAME_GO))

            # A Python leader renewing keeps the Go followers waiting, longer than a lease.
            await fleet.hold(second.identity, LEASE + 1)
            assert len(fleet.terms()) == 2

            # 2. Python -> Go after a graceful stop: the other Python candidate leaves first;
            #    our release is taken by a Go follower at its next poll.
            py_leader = fleet.py[second.identity]
            await next(c for c in py if c is not py_leader).cancelled()
            await py_leader.stopped()
            third = await fleet.wait_for_terms(3)
            assert third.side == "go", fleet.describe()
            release = _released_after(fleet, second.start)
            delay = third.start - release.at
            assert 0 < delay <= SAME_GO.longest_poll + PROMPT, fleet.describe()
            # At its first poll after the release: no poll in between found the lease held.
            winner = fleet.go[third.identity]
            between = winner.of(GoEventKind.POLL, after=release.at + WATCH_LAG)
            assert [p for p in between if p.at < third.start] == [], fleet.describe()
            _figure("our release -> Go leads (next poll)", delay)

            # 3. Go -> (Python, most likely) after SIGKILL: expiry, judged from the record.
            py += [
                await fleet.start_py(f"py-{i}", SAME_PY, release_on_cancel=False) for i in (3, 4)
            ]
            await fleet.until(
                lambda: all(c.elector.leader == third.identity for c in py[2:]),
                within=10,
                what="the new Python followers to see the Go leader",
            )
            killed_at, fourth = await _expire(fleet, third, others_leave=False)
            waited = _assert_expired(
                fleet,
                third.identity,
                fourth,
                lease=LEASE,
                go_poll=SAME_GO.longest_poll,
            )
            _figure(f"last Go renewal -> {fourth.side} leads after SIGKILL", waited)
            _figure(f"Go SIGKILL -> {fourth.side} leads", fourth.start - killed_at)
            go.append(await fleet.start_go("go-4", SAME_GO))

            # 4. (Python ->) Go after a cancellation without release: expiry again.
            stopped_at, fifth = await _expire(fleet, fourth, others_leave=True)
            waited = _assert_expired(
                fleet,
                fourth.identity,
                fifth,
                lease=LEASE,
                go_poll=SAME_GO.longest_poll,
            )
            _figure(f"last {fourth.side} renewal -> Go leads after expiry", waited)
            _figure(f"{fourth.side} stopped without release -> Go leads", fifth.start - stopped_at)
            assert fifth.side == "go"
            assert fleet.history.first(lambda s: s.holder == "", after=fourth.start) is None

            fleet.assert_one_leader_at_a_time()
            fleet.history.assert_written_as_client_go_writes()
            _assert_go_read_each_holder(fleet)
            assert [s.transitions for _, s in fleet.history.takeovers()] == [1, 2, 3, 4]
            # A Go candidate that led logged its own term exactly once.
            for candidate in fleet.go.values():
                assert len(candidate.of(GoEventKind.ACQUIRED)) <= 1
            for term in fleet.terms():
                if term.side == "python":
                    leadership = fleet.py[term.identity].leadership
                    assert leadership is not None
                    state = fleet.history.first_by(term.identity)
                    assert state is not None
                    assert leadership.token.transitions == state.transitions
                    assert leadership.token.lease_uid == state.uid
            logger.info("mixed fleet\n%s", fleet.describe())


async def test_each_side_reads_and_continues_the_others_record(
    le_example: Path, kube: KubeTarget, lease_name: str
) -> None:
    """Go creates, Python takes the released lease, Go takes ours, Python takes Go's again."""
    with anyio.fail_after(45):
        async with open_mixed_fleet(kube, lease_name, le_example) as fleet:
            go_a = await fleet.start_go("go-a", SAME_GO)
            await fleet.wait_for_terms(1)
            created = fleet.history.states[0]
            assert (created.holder, created.transitions, created.duration) == ("go-a", 0, 4), (
                fleet.describe()
            )
            for _ in range(2):
                await fleet.next_renewal("go-a")
            py_a = await fleet.start_py("py-a", SAME_PY)
            await fleet.until(lambda: py_a.elector.leader == "go-a", within=10, what="py-a")
            go_a.terminate()
            assert (await fleet.wait_for_terms(2)).identity == "py-a"
            assert py_a.leadership is not None
            assert py_a.leadership.token.transitions == 1
            assert py_a.leadership.token.lease_uid == created.uid
            for _ in range(2):
                await fleet.next_renewal("py-a")

            go_b = await fleet.start_go("go-b", SAME_GO)
            assert (await fleet.next_poll(go_b)).detail == "py-a"
            new_leader = await fleet.until(
                lambda: go_b.first(GoEventKind.NEW_LEADER), within=5, what="go-b's OnNewLeader"
            )
            assert new_leader.detail == "py-a"
            await py_a.stopped()
            assert (await fleet.wait_for_terms(3)).identity == "go-b"
            for _ in range(2):
                await fleet.next_renewal("go-b")

            py_b = await fleet.start_py("py-b", SAME_PY)
            await fleet.until(lambda: py_b.elector.leader == "go-b", within=10, what="py-b")
            go_b.terminate()
            assert (await fleet.wait_for_terms(4)).identity == "py-b"
            assert py_b.leadership is not None
            assert py_b.leadership.token.transitions == 3
            await py_b.stopped()
            await fleet.wait_for_state(
                lambda s: s.holder == "" and s.transitions == 3, what="py-b's release"
            )
            for candidate in (go_a, go_b):
                assert await candidate.wait_exit() == 0

            terms = [
                (holder, next(group))
                for holder, group in itertools.groupby(fleet.history.states, lambda s: s.holder)
            ]
            assert [(h, s.transitions, s.duration) for h, s in terms] == [
                ("go-a", 0, 4),
                ("", 0, 1),
                ("py-a", 1, 4),
                ("", 1, 1),
                ("go-b", 2, 4),
                ("", 2, 1),
                ("py-b", 3, 4),
                ("", 3, 1),
            ]
            # Every holder renewed (acquireTime kept, renewTime moved: checked below).
            for holder in ("go-a", "py-a", "go-b"):
                assert sum(s.holder == holder for s in fleet.history.states) >= 3
            fleet.history.assert_written_as_client_go_writes()
            fleet.assert_one_leader_at_a_time()
            logger.info("records\n%s", fleet.describe())


GO_LONG = GoTimings(lease_duration=6.0, renew_deadline=4.0, retry_period=2.5)
PY_SHORT = Timings(lease_duration=2.0, renew_deadline=1.5, retry_period=0.2)


async def test_short_timed_python_followers_wait_the_go_holders_lease(
    le_example: Path, kube: KubeTarget, lease_name: str
) -> None:
    """A Go holder renewing every 2.5 s with a 6 s lease; our followers' own lease is 2 s."""
    with anyio.fail_after(45):
        async with open_mixed_fleet(kube, lease_name, le_example) as fleet:
            go = await fleet.start_go("go-long", GO_LONG)
            await fleet.wait_for_terms(1)
            followers = [await fleet.start_py(f"py-s{i}", PY_SHORT) for i in (1, 2)]
            await fleet.until(
                lambda: all(c.elector.leader == "go-long" for c in followers),
                within=10,
                what="our followers to see the Go holder",
            )
            # Gaps between Go renewals are longer than our own lease duration: judging by our
            # 2 s instead of the record's 6 s would take the lease from a live holder.
            first = await fleet.next_renewal("go-long")
            second = await fleet.next_renewal("go-long")
            assert second.at - first.at > PY_SHORT.lease_duration
            assert second.duration == GO_LONG.record_seconds
            assert len(fleet.terms()) == 1

            killed_at = go.kill()
            successor = await fleet.wait_for_terms(2, within=GO_LONG.lease_duration + 5)
            assert successor.side == "python"
            lease = GO_LONG.record_seconds
            waited = _assert_expired(
                fleet, "go-long", successor, lease=lease, go_poll=GO_LONG.longest_poll
            )
            _figure("last Go renewal (6 s lease) -> our 2 s follower leads", waited)
            _figure("Go SIGKILL -> our 2 s follower leads", successor.start - killed_at)

            fleet.assert_one_leader_at_a_time()
            fleet.history.assert_written_as_client_go_writes()
            assert fleet.history.takeovers()[0][1].transitions == 1
            assert fleet.history.states[-1].duration == PY_SHORT.lease_duration


PY_LONG = Timings(lease_duration=7.0, renew_deadline=4.0, retry_period=2.5)
GO_SHORT = GoTimings(lease_duration=2.0, renew_deadline=1.5, retry_period=0.5)


async def test_short_timed_go_followers_wait_our_lease_and_the_reverse(
    le_example: Path, kube: KubeTarget, lease_name: str
) -> None:
    """Our 7 s holder renewing every 2.5 s keeps 2 s Go followers waiting 7 s after it dies;
    then our 7 s follower takes the 2 s Go holder's lease 2 s after it dies, not 7 s."""
    with anyio.fail_after(50):
        async with open_mixed_fleet(kube, lease_name, le_example) as fleet:
            ours = await fleet.start_py("py-long", PY_LONG, release_on_cancel=False)
            await fleet.wait_for_terms(1)
            go: GoCandidate = await fleet.start_go("go-short", GO_SHORT)
            assert (await fleet.next_poll(go)).detail == "py-long"
            first = await fleet.next_renewal("py-long")
            second = await fleet.next_renewal("py-long")
            assert second.at - first.at > GO_SHORT.lease_duration
            assert second.duration == PY_LONG.lease_duration
            # The Go follower kept polling between our renewals, and kept waiting.
            assert len(go.of(GoEventKind.POLL, after=first.at)) >= 2
            assert len(fleet.terms()) == 1

            # Our holder dies without releasing (cancelled, release_on_cancel=False).
            stopped_at = anyio.current_time()
            await ours.cancelled()
            successor = await fleet.wait_for_terms(2, within=PY_LONG.lease_duration + 5)
            assert successor.identity == "go-short"
            lease = PY_LONG.lease_duration
            waited = _assert_expired(
                fleet,
                "py-long",
                successor,
                lease=lease,
                go_poll=GO_SHORT.longest_poll,
            )
            _figure("our last renewal (7 s lease) -> 2 s Go follower leads", waited)
            _figure("our cancellation -> 2 s Go follower leads", successor.start - stopped_at)
            assert fleet.history.first(lambda s: s.holder == "") is None

            # The reverse: our long-timed follower judges the Go holder's 2 s record.
            follower = await fleet.start_py("py-long2", PY_LONG)
            await fleet.until(
                lambda: follower.elector.leader == "go-short",
                within=10,
                what="our follower to see the Go holder",
            )
            await fleet.next_renewal("go-short")
            killed_at = go.kill()
            third = await fleet.wait_for_terms(3, within=GO_SHORT.lease_duration + 5)
            assert third.identity == "py-long2"
            lease = GO_SHORT.record_seconds
            waited = _assert_expired(
                fleet, "go-short", third, lease=lease, go_poll=GO_SHORT.longest_poll
            )
            _figure("last Go renewal (2 s lease) -> our 7 s follower leads", waited)
            _figure("Go SIGKILL -> our 7 s follower leads", third.start - killed_at)

            fleet.assert_one_leader_at_a_time()
            fleet.history.assert_written_as_client_go_writes()
            assert [s.transitions for _, s in fleet.history.takeovers()] == [1, 2]
