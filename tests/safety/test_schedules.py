"""Randomized fault schedules, each checked for safety, liveness and an unclobbered lease.

Every run draws ``LEADERELECT_SCHEDULES`` (default 200) schedules from consecutive seeds,
starting at ``LEADERELECT_SEED`` (default: a fresh random seed, shown in every failure). A
failure names its schedule's seed; replay exactly that schedule with::

    LEADERELECT_SEED=<seed> LEADERELECT_SCHEDULES=1 pytest tests/safety/test_schedules.py

Replaying reproduces the schedule (candidates, faults, times), not the exact interleaving of a
real network. The schedules run concurrently, each against a server and Lease of its own, in
batches on this test's event loop.

``LEADERELECT_SOAK_SCHEDULES=10000`` turns on ``test_soak`` (``nox -s soak``): that many
schedules over one process per CPU, with the totals printed at the end.

Every schedule also draws the faults of deployments (shared identities, raising hooks, deleted
Leases, crowded clients, silent watches, interrupts) from a random stream of its own;
``LEADERELECT_DEPLOYMENT_FAULTS=0`` leaves them out, replaying a seed exactly as before them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import random
import sys
import time

import anyio
import pytest
from _chaos import (
    Crowd,
    DeleteLease,
    Interrupt,
    Kill,
    LoopStall,
    Schedule,
    ScheduleResult,
    SilentWatch,
    SoakSummary,
    Stop,
    random_schedule,
    run_schedules,
)

import leaderelect
from leaderelect.testing import ElectionViolation

SEED_VARIABLE = "LEADERELECT_SEED"
COUNT_VARIABLE = "LEADERELECT_SCHEDULES"
SOAK_VARIABLE = "LEADERELECT_SOAK_SCHEDULES"
SOAK_REPORT_VARIABLE = "LEADERELECT_SOAK_REPORT"
DEPLOYMENT_VARIABLE = "LEADERELECT_DEPLOYMENT_FAULTS"

BASE_SEED = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(10**9))
SCHEDULES = int(os.environ.get(COUNT_VARIABLE) or 200)
BATCHES = max(1, min(8, SCHEDULES))
CONCURRENCY = 13
DEPLOYMENT = os.environ.get(DEPLOYMENT_VARIABLE, "1") not in ("0", "false", "no")


def _batch(index: int) -> list[Schedule]:
    seeds = range(BASE_SEED, BASE_SEED + SCHEDULES)
    return [random_schedule(seed, deployment=DEPLOYMENT) for seed in seeds[index::BATCHES]]


def _failure_report(summary: SoakSummary) -> str:
    seeds = [seed for seed, _ in summary.failures]
    replay = (
        f"replay one with: {SEED_VARIABLE}=<seed> {COUNT_VARIABLE}=1 "
        "pytest tests/safety/test_schedules.py"
    )
    details = "\n\n".join(message for _, message in summary.failures)
    return f"schedules failed, seeds {seeds} (base seed {BASE_SEED}); {replay}\n\n{details}"


@pytest.mark.parametrize("batch", range(BATCHES), ids=lambda b: f"batch{b}")
async def test_random_schedules_keep_one_leader_and_an_unclobbered_lease(batch: int) -> None:
    schedules = _batch(batch)
    summary = await run_schedules(schedules, concurrency=CONCURRENCY)
    assert summary.schedules == len(schedules)
    assert not summary.failures, _failure_report(summary)
    # The schedules did elect, and did hand over: the checks had something to check.
    assert summary.leaderships >= len(schedules)
    assert summary.handovers >= len(schedules)


def test_the_same_seed_always_draws_the_same_schedule() -> None:
    assert random_schedule(BASE_SEED) == random_schedule(BASE_SEED)
    assert random_schedule(BASE_SEED) != random_schedule(BASE_SEED + 1)


def test_schedules_stay_within_what_the_design_promises() -> None:
    for seed in range(BASE_SEED, BASE_SEED + 5000):
        schedule = random_schedule(seed)
        timings = schedule.timings
        rates = [r for c in schedule.candidates for r in (c.clock_rate, c.loop_rate)]
        stalls = [e.seconds for e in schedule.events if isinstance(e, LoopStall)]
        worst_stall = max(stalls, default=0.0)
        # The leader's deadline on the slowest clock, plus the longest stall, ends before the
        # lease runs out on the fastest clock, with 0.1 s to spare.
        slack = timings.lease_duration / max(rates) - (
            timings.renew_deadline / min(rates) + worst_stall
        )
        assert slack >= 0.1 - 1e-9, schedule.describe()
        # Stalls of one loop would run back to back: they never overlap.
        ordered = sorted(
            (e for e in schedule.events if isinstance(e, LoopStall)), key=lambda e: e.at
        )
        for before, after in itertools.pairwise(ordered):
            assert after.at >= before.at + before.seconds + 0.05 - 1e-9, schedule.describe()
        retired = len([e for e in schedule.events if isinstance(e, (Kill, Stop))])
        retired += len([e for e in schedule.events if isinstance(e, Interrupt) and e.stop])
        retired += len([c for c in schedule.candidates if c.stop_on_hook_error])
        assert len(schedule.candidates) - retired >= 2, schedule.describe()


def _projection(schedule: Schedule) -> tuple[object, ...]:
    """What a schedule drew, field by field (independent of how faults print)."""
    events = []
    for event in schedule.events:
        names = ("start", "end", "at", "seconds", "cut", "user", "candidate")
        fields = [type(event).__name__, *(getattr(event, f) for f in names if hasattr(event, f))]
        fault = getattr(event, "fault", None)
        if fault is not None:
            fields += [type(fault).__name__, fault.user, fault.verb, fault.times, fault.when]
            fields += [getattr(fault, f, None) for f in ("status", "seconds", "retry_after")]
        events.append(tuple(fields))
    candidates = [
        (c.name, c.start, c.clock_rate, c.loop_rate, c.own_loop, c.watch)
        for c in schedule.candidates
    ]
    return (schedule.seed, candidates, events, schedule.duration)


def test_seeds_draw_what_they_drew_before_the_faults_of_deployments() -> None:
    """Seeds 0-299 without the faults of deployments: exactly the schedules drawn before they
    were added (a digest of every field); with them, the same plus the new ones."""
    digest = hashlib.sha256()
    for seed in range(300):
        digest.update(repr(_projection(random_schedule(seed, deployment=False))).encode())
    assert digest.hexdigest() == (
        "f577d80a10a0eca4798775e6a33e2e0c67f1a4d77e953222dc22f890a4a28dd3"
    )
    for seed in range(BASE_SEED, BASE_SEED + 300):
        before, after = random_schedule(seed, deployment=False), random_schedule(seed)
        assert after.events[: len(before.events)] == before.events
        old = [dataclasses.replace(c, identity=None, hook_failures=0.0) for c in after.candidates]
        assert [dataclasses.replace(c, stop_on_hook_error=False) for c in old] == list(
            before.candidates
        )


def test_every_fault_of_deployments_is_drawn_within_its_limits() -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for seed in range(BASE_SEED, BASE_SEED + 2000):
        schedule = random_schedule(seed)
        kinds.update(schedule.kinds())
        # Every candidate has had time to read the Lease (times are drawn to the millisecond).
        settled = max(c.start for c in schedule.candidates) + 0.2 - 0.001
        for event in schedule.events:
            if isinstance(event, DeleteLease):
                assert event.at >= settled and 0 <= event.delete_after < event.partition
            elif isinstance(event, Crowd):
                assert event.start >= settled and event.end - event.start >= 0.8 - 0.002
                assert event.requests > 100  # more than the client's connection pool
            elif isinstance(event, SilentWatch):
                assert event.at >= settled
            elif isinstance(event, Interrupt) and event.takeover is not None:
                assert event.candidate in {c.name for c in schedule.candidates}
        for names in schedule.twins().values():
            assert len(names) == 2
        assert schedule.duration >= max(
            (e.at + 2 * schedule.timings.lease_duration for e in schedule.events
             if isinstance(e, SilentWatch)),
            default=0.0,
        )  # fmt: skip
    for kind in (
        "shared identity", "raising hooks", "DeleteLease", "Crowd", "SilentWatch", "Interrupt",
    ):  # fmt: skip
        assert kinds[kind] > 100, kinds


# -- soak ---------------------------------------------------------------------------------------


def _soak_slice(
    base: int, count: int, step: int, offset: int, deployment: bool = True
) -> SoakSummary:
    """One process's share of the soak: seeds base+offset, base+offset+step, ...

    It runs in a fresh (spawned) process: the elector's expected warnings would pile up by
    the hundred thousand, so only errors are logged (to stderr); failures are reported with
    their seed and timeline.
    """
    logging.getLogger("leaderelect").setLevel(logging.ERROR)
    # The metrics hooks that raise are our own injected faults: the elector logs each one.
    logging.getLogger("leaderelect.metrics").setLevel(logging.CRITICAL)
    seeds = range(base + offset, base + count, step)

    done = 0
    started = time.monotonic()

    def progress(result: ScheduleResult | ElectionViolation, schedule: Schedule) -> None:
        nonlocal done
        done += 1
        if isinstance(result, ElectionViolation):
            sys.stderr.write(f"\nFAILED seed {schedule.seed}\n{result}\n")
        if done % 500 == 0:
            elapsed = time.monotonic() - started
            sys.stderr.write(f"soak process {offset}: {done} schedules in {elapsed:.0f}s\n")

    async def main() -> SoakSummary:
        return await run_schedules(
            (random_schedule(seed, deployment=deployment) for seed in seeds),
            concurrency=CONCURRENCY,
            on_result=progress,
        )

    return anyio.run(main)


@pytest.mark.slow
@pytest.mark.timeout(0)
@pytest.mark.skipif(not os.environ.get(SOAK_VARIABLE), reason=f"set {SOAK_VARIABLE} to soak")
def test_soak(capsys: pytest.CaptureFixture[str]) -> None:
    count = int(os.environ[SOAK_VARIABLE])
    processes = max(1, min(count, os.cpu_count() or 1))
    started = time.monotonic()
    summary = SoakSummary()
    spawn = multiprocessing.get_context("spawn")  # no fork of a threaded pytest process
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=spawn) as pool:
        shares = [
            pool.submit(_soak_slice, BASE_SEED, count, processes, offset, DEPLOYMENT)
            for offset in range(processes)
        ]
        for share in shares:
            summary.merge(share.result())
    summary.wall_time = time.monotonic() - started
    library = os.path.dirname(leaderelect.__file__)
    text = f"soak: base seed {BASE_SEED}, {processes} processes, {library}\n{summary}\n"
    with capsys.disabled():
        sys.stdout.write("\n" + text)
    report = os.environ.get(SOAK_REPORT_VARIABLE)
    if report:
        figures = {
            "base_seed": BASE_SEED,
            "library": library,
            "deployment_faults": DEPLOYMENT,
            "schedules": summary.schedules,
            "failures": [seed for seed, _ in summary.failures],
            "overlaps": summary.findings()["overlaps"],
            "findings": dict(summary.findings()),
            "faults": dict(summary.faults),
            "fault_hits": dict(summary.fault_hits),
            "leaderships": summary.leaderships,
            "handovers": summary.handovers,
            "worst_takeover": summary.worst_takeover,
            "narrowest_gap": summary.narrowest_gap,
            "worst_loop_lag": summary.worst_loop_lag,
            "wall_time": summary.wall_time,
        }
        with open(report, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)
    assert summary.schedules == count
    assert not summary.failures, _failure_report(summary)
    # The schedules did elect, and did hand over: an overloaded loop can leave schedules
    # without a term (and excuse their liveness), which would pass while checking nothing.
    assert summary.leaderships >= count and summary.handovers >= count, text
