"""Faults on the candidates' side: stalled event loops, skewed clocks, killed processes.

Stalls and skew within the margin must never yield two leaders. Beyond it the design promises
nothing, and these tests show exactly what happens instead: the successor's fencing token is
larger, the stale leader learns it at its next renewal or watch event, a fenced resource
rejects its late write, and the checker reports the overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from _chaos import CHAOS_TIMINGS, ChaosCandidate, suspend_loop
from anyio.abc import TaskGroup

from leaderelect import FencingToken, Leadership, LossReason
from leaderelect.testing import (
    ElectionViolation,
    Hang,
    Latency,
    LeadershipLog,
    LeaseApiServer,
    StallWatch,
    check_lease_history,
    check_safety,
    liveness_bound,
)

LEASE = "default/chaos"
MARGIN = CHAOS_TIMINGS.lease_duration - CHAOS_TIMINGS.renew_deadline
BOUND = liveness_bound(CHAOS_TIMINGS)


class Election:
    """A server, a log and candidates, all stopped when the block ends."""

    def __init__(self, server: LeaseApiServer, tg: TaskGroup) -> None:
        self.server = server
        self.log = LeadershipLog()
        self.candidates: list[ChaosCandidate] = []
        self._tg = tg

    def start(self, name: str, **options: Any) -> ChaosCandidate:
        candidate = ChaosCandidate(self.server, name, self.log, **options)
        self.candidates.append(candidate)
        self._tg.start_soon(candidate.run)
        return candidate

    async def start_following(self, *names: str, **options: Any) -> list[ChaosCandidate]:
        """Start candidates; return once each has read the Lease and is watching it."""
        watching = self.server.faults.add(Latency(user=names, verb="watch", seconds=0))
        started = [self.start(name, **options) for name in names]
        await watching.wait_hits(len(names))
        watching.remove()
        return started

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10) -> None:
        """Wait until ``predicate()`` holds, re-checked at each change of the log or of a
        candidate."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def notify() -> None:
            loop.call_soon_threadsafe(changed.set)

        removers = [self.log.add_listener(notify)]
        removers += [candidate.add_listener(notify) for candidate in self.candidates]
        try:
            with anyio.fail_after(within):
                while not predicate():
                    await changed.wait()
                    changed.clear()
        finally:
            for remove in removers:
                remove()

    async def wait_leading(self, name: str, terms: int = 1) -> None:
        await self.wait_for(
            lambda: (
                sum(i.candidate == name for i in self.log.intervals) >= terms
                and any(i.candidate == name and i.end is None for i in self.log.intervals)
            )
        )

    def leader(self) -> str | None:
        running = self.log.running()
        return running[-1].candidate if running else None

    def cut_off(self, name: str) -> None:
        """A partition: every request of ``name`` hangs, its open watches are cut."""
        self.server.faults.add(Hang(user=name))
        self.server.faults.cut_watches(user=name)


@contextlib.asynccontextmanager
async def election() -> AsyncIterator[Election]:
    server = LeaseApiServer()
    async with server, anyio.create_task_group() as tg:
        run = Election(server, tg)
        try:
            yield run
        finally:
            server.faults.clear()
            server.faults.release()
            for candidate in run.candidates:
                candidate.stop()


class FencedStore:
    """A resource that keeps the largest fencing token it accepted and refuses older ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.highest: FencingToken | None = None
        self.accepted: list[FencingToken] = []
        self.refused: list[FencingToken] = []

    def write(self, token: FencingToken) -> bool:
        with self._lock:
            if self.highest is not None and (
                token.lease_uid == self.highest.lease_uid and token < self.highest
            ):
                self.refused.append(token)
                return False
            self.highest = token
            self.accepted.append(token)
            return True


async def test_loop_stalls_within_the_margin_never_yield_two_leaders() -> None:
    stall = MARGIN - 0.2  # 0.2 s left for scheduling on a busy machine
    async with election() as run:
        c0 = run.start("c0", own_loop=True)
        await run.wait_leading("c0")
        await run.start_following("c1", "c2")
        for offset in (0.0, 0.03, 0.07):  # at different points of the renewal cycle
            c0.stall(stall)
            await anyio.sleep(stall + 0.4 + offset)
    check_safety(run.log.intervals)
    check_lease_history(
        run.server.writes, lease=LEASE, fallback_duration=CHAOS_TIMINGS.lease_duration
    )


async def test_a_loop_stall_longer_than_the_margin_is_caught_by_fencing_not_prevented() -> None:
    """A pause inside the work, longer than the lease: not covered by the timing rule.

    The successor takes over during the pause with a larger token; the stale leader's write,
    made right after the pause and before any ``await`` could cancel it, is refused by the
    fenced resource; its term has already ended by its own clock; the checker reports the
    overlap, no longer than the pause.
    """
    pause = CHAOS_TIMINGS.lease_duration + 0.5
    store = FencedStore()
    pause_now = threading.Event()
    after_pause: list[tuple[bool, float]] = []

    async def stale_work(leadership: Leadership) -> None:
        while True:
            await anyio.sleep(0.05)
            if pause_now.is_set():
                pause_now.clear()
                time.sleep(pause)  # noqa: ASYNC251 - the fault: a long pause amid the work
                after_pause.append((leadership.is_valid, leadership.time_left()))
            store.write(leadership.token)  # no await since the pause: nobody can stop it

    async def work(leadership: Leadership) -> None:
        store.write(leadership.token)

    async with election() as run:
        c0 = run.start("c0", own_loop=True, work=stale_work)
        await run.wait_leading("c0")
        (c1,) = await run.start_following("c1", work=work)
        pause_now.set()
        await run.wait_for(lambda: bool(c0.losses) and bool(c1.leaderships))
    old, new = c0.leaderships[0].token, c1.leaderships[0].token
    assert new.lease_uid == old.lease_uid and new.transitions > old.transitions
    assert store.refused == [old]  # the one write made after the pause
    assert store.accepted[-1] == new
    assert after_pause == [(False, 0.0)]  # the term had already ended by c0's own clock
    # It learned from whichever came first on waking: its passed deadline or the watch event.
    assert c0.losses[0].reason in (LossReason.RENEW_DEADLINE, LossReason.OTHER_HOLDER)
    # c0 wrote nothing to the Lease after c1 took it over.
    takeover = next(w for w in run.server.writes if w.holder_after == "c1")
    assert not [w for w in run.server.writes if w.user == "c0" and w.time > takeover.time]
    with pytest.raises(ElectionViolation, match="two leaders at once") as info:
        check_safety(run.log.intervals)
    (finding,) = info.value.findings
    overlap = float(finding.split(" for ")[1].split("s:")[0])
    assert 0 < overlap <= pause


async def test_a_host_whose_clock_stopped_believes_it_leads_until_the_lease_says_otherwise() -> (
    None
):
    """A suspended host whose monotonic clock did not advance: the one pause it cannot see.

    It wakes believing no time has passed (its term still "valid", time left), so the write
    it makes at once goes out: the fenced resource refuses it. Its next renewal is answered
    409, the read that follows shows the successor, and the term ends with OTHER_HOLDER.
    """
    suspend = CHAOS_TIMINGS.lease_duration + 0.5
    store = FencedStore()
    suspend_now = threading.Event()
    after_wake: list[tuple[bool, float]] = []

    async def stale_work(leadership: Leadership) -> None:
        while True:
            await anyio.sleep(0.05)
            if suspend_now.is_set():
                suspend_now.clear()
                suspend_loop(suspend)
                after_wake.append((leadership.is_valid, leadership.time_left()))
            store.write(leadership.token)

    async def work(leadership: Leadership) -> None:
        store.write(leadership.token)

    async with election() as run:
        c0 = run.start("c0", own_loop=True, work=stale_work)
        await run.wait_leading("c0")
        (c1,) = await run.start_following("c1", work=work)
        # c0's watch goes silent (it looks healthy: no fallback to reading), so only its own
        # next renewal can tell it about c1.
        run.server.faults.add(StallWatch(user="c0"))
        assert run.server.faults.stall_watches(user="c0") == 1
        suspend_now.set()
        await run.wait_for(lambda: bool(c0.losses) and bool(c1.leaderships))
        renewals_refused = run.server.requests.count(verb="update", user="c0", code=409)
    ((valid, left),) = after_wake
    assert renewals_refused >= 1  # its next renewal was answered 409: that is how it learned
    assert valid and left > 0  # by its own clock, nothing happened
    assert c0.losses[0].reason is LossReason.OTHER_HOLDER
    old, new = c0.leaderships[0].token, c1.leaderships[0].token
    assert new > old
    assert store.refused and set(store.refused) == {old}  # every write until it learned
    c0_end = next(i.end for i in run.log.intervals if i.candidate == "c0")
    c1_start = next(i.start for i in run.log.intervals if i.candidate == "c1")
    assert c0_end is not None
    assert c0_end - c1_start < suspend
    with pytest.raises(ElectionViolation, match="two leaders at once"):
        check_safety(run.log.intervals)


async def test_a_pause_of_the_whole_shared_loop_never_yields_two_leaders() -> None:
    """Stalling the loop every candidate (and the server) shares pauses them all alike.

    On waking, the old leader's deadline has passed on the same clock the followers read,
    and it stops in the first iteration; a follower's takeover needs a round trip first.
    """
    async with election() as run:
        c0 = run.start("c0")
        await run.wait_leading("c0")
        await run.start_following("c1", "c2")
        c0.stall(CHAOS_TIMINGS.lease_duration + 0.5)  # blocks this very loop
        await anyio.sleep(2 * BOUND)
    check_safety(run.log.intervals)
    check_lease_history(
        run.server.writes, lease=LEASE, fallback_duration=CHAOS_TIMINGS.lease_duration
    )


async def test_clock_rate_skew_within_tolerance_keeps_terms_apart() -> None:
    # Slow leaders and fast followers: the dangerous direction. 0.6 / 0.97 + 0.1 < 1 / 1.06.
    async with election() as run:
        run.start("slow", loop_rate=0.97)
        await run.wait_leading("slow")
        await run.start_following("fast", clock_rate=1.06)
        await run.start_following("fast-loop", loop_rate=1.03)
        run.cut_off("slow")
        await run.wait_for(lambda: run.leader() in ("fast", "fast-loop"))
        successor = run.leader()
        assert successor is not None
        await anyio.sleep(0.3)  # it holds the lease for a while
        run.cut_off(successor)
        await run.wait_for(lambda: run.leader() not in (None, successor))
    gap = check_safety(run.log.intervals)
    assert gap > 0
    check_lease_history(
        run.server.writes,
        lease=LEASE,
        fallback_duration=CHAOS_TIMINGS.lease_duration,
        rate_tolerance=1.06,
    )


async def test_clock_rate_skew_beyond_tolerance_can_overlap() -> None:
    """A leader whose clock runs at 0.4 times real time is outside the promise.

    Cut off, it cannot renew; its renew deadline passes after 1.5 real seconds (0.6 / 0.4),
    the lease expires for the follower after 1: the checker reports the overlap.
    """
    async with election() as run:
        slow = run.start("slow", loop_rate=0.4)
        await run.wait_leading("slow")
        await run.start_following("follower")
        run.cut_off("slow")
        await run.wait_for(lambda: bool(slow.losses) and run.leader() == "follower")
    assert slow.losses[0].reason is LossReason.RENEW_DEADLINE
    with pytest.raises(ElectionViolation, match="two leaders at once"):
        check_safety(run.log.intervals)


async def test_a_killed_leader_is_replaced_within_the_bound_and_never_releases() -> None:
    async with election() as run:
        c0 = run.start("c0")
        await run.wait_leading("c0")
        await run.start_following("c1", "c2")
        c0.kill()
        killed_at = run.log.now()
        await run.wait_for(lambda: run.leader() in ("c1", "c2"))
    check_safety(run.log.intervals)
    successor = next(i for i in run.log.intervals if i.candidate != "c0")
    assert successor.start - killed_at <= BOUND
    assert successor.start - killed_at >= MARGIN  # it waited for the lease to expire
    assert not [w for w in run.server.writes if w.user == "c0" and w.time > killed_at]


async def test_a_sigkilled_leader_process_is_replaced_within_the_bound() -> None:
    script = Path(__file__).with_name("_process_candidate.py")
    async with election() as run:
        run.server.add_user("proc")
        url = f"{run.server.url}/_token/{run.server.token('proc')}"
        process = await anyio.open_process([sys.executable, str(script), url, "proc", "chaos"])
        try:
            assert process.stdout is not None
            with anyio.fail_after(20):
                line = b""
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive(1)
            word, started, token = line.decode().split()
            assert word == "start"
            index = run.log.add("proc", token, float(started))
            await run.start_following("c1", "c2")
            process.send_signal(signal.SIGKILL)
            await process.wait()
            run.log.stop(index)  # it cannot work any longer than this
            killed_at = run.log.now()
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.aclose()
        await run.wait_for(lambda: run.leader() in ("c1", "c2"))
    assert process.returncode == -signal.SIGKILL
    check_safety(run.log.intervals)
    successor = next(i for i in run.log.intervals if i.candidate != "proc")
    assert successor.start - killed_at <= BOUND
    assert not [w for w in run.server.writes if w.user == "proc" and w.time > killed_at]


class _FrozenWallClock:
    """Monotonic time runs; the wall clock never moves (a fake clock in a test, a frozen VM)."""

    def monotonic(self) -> float:
        return anyio.current_time()

    def utcnow(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=timezone.utc)


async def test_a_leader_whose_wall_clock_stands_still_keeps_its_lease() -> None:
    async with election() as run:
        leader = run.start("frozen", clock=_FrozenWallClock())
        await run.wait_leading("frozen")
        await run.start_following("follower")
        await anyio.sleep(2 * CHAOS_TIMINGS.lease_duration)  # it renews all along
    assert leader.losses == []
    check_safety(run.log.intervals)
