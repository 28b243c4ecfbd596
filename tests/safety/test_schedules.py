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
"""

from __future__ import annotations

import concurrent.futures
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
    Kill,
    LoopStall,
    Schedule,
    ScheduleResult,
    SoakSummary,
    Stop,
    random_schedule,
    run_schedules,
)

from leaderelect.testing import ElectionViolation

SEED_VARIABLE = "LEADERELECT_SEED"
COUNT_VARIABLE = "LEADERELECT_SCHEDULES"
SOAK_VARIABLE = "LEADERELECT_SOAK_SCHEDULES"
SOAK_REPORT_VARIABLE = "LEADERELECT_SOAK_REPORT"

BASE_SEED = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(10**9))
SCHEDULES = int(os.environ.get(COUNT_VARIABLE) or 200)
BATCHES = max(1, min(8, SCHEDULES))
CONCURRENCY = 13


def _batch(index: int) -> list[Schedule]:
    seeds = range(BASE_SEED, BASE_SEED + SCHEDULES)
    return [random_schedule(seed) for seed in seeds[index::BATCHES]]


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
        retired = [e for e in schedule.events if isinstance(e, (Kill, Stop))]
        assert len(schedule.candidates) - len(retired) >= 2, schedule.describe()


# -- soak ---------------------------------------------------------------------------------------


def _soak_slice(base: int, count: int, step: int, offset: int) -> SoakSummary:
    """One process's share of the soak: seeds base+offset, base+offset+step, ...

    It runs in a fresh (spawned) process: the elector's expected warnings would pile up by
    the hundred thousand, so only errors are logged (to stderr); failures are reported with
    their seed and timeline.
    """
    logging.getLogger("leaderelect").setLevel(logging.ERROR)
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
            (random_schedule(seed) for seed in seeds),
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
            pool.submit(_soak_slice, BASE_SEED, count, processes, offset)
            for offset in range(processes)
        ]
        for share in shares:
            summary.merge(share.result())
    summary.wall_time = time.monotonic() - started
    text = f"soak: base seed {BASE_SEED}, {processes} processes\n{summary}\n"
    with capsys.disabled():
        sys.stdout.write("\n" + text)
    report = os.environ.get(SOAK_REPORT_VARIABLE)
    if report:
        figures = {
            "base_seed": BASE_SEED,
            "schedules": summary.schedules,
            "failures": [seed for seed, _ in summary.failures],
            "overlaps": sum("safety:" in message for _, message in summary.failures),
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
