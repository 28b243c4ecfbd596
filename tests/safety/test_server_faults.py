"""Timed server faults: a schedule's fault windows, and ``play_faults`` next to other code.

What each fault kind does on the wire is tested on a plain ``LeaseApiServer`` in
``tests/testing/test_fault_kinds.py``.
"""

from __future__ import annotations

import aiohttp
import anyio
from _chaos import CandidateSpec, CutWatches, FaultWindow, Schedule, play_faults, run_schedule

from leaderelect.testing import ErrorResponse, LeaseApiServer

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


async def test_a_fault_window_applies_only_within_its_window() -> None:
    fault = ErrorResponse(user="c0", verb="update", status=500)
    schedule = Schedule(
        seed=0,
        candidates=(CandidateSpec("c0"), CandidateSpec("c1", start=0.1)),
        events=(FaultWindow(0.4, 0.55, fault),),
        duration=2.5,
    )
    seen: list[LeaseApiServer] = []
    result = await run_schedule(schedule, on_log=lambda _, server: seen.append(server))
    # Renewals run every 0.1 s: the window caught a few, and the leader kept its lease
    # (0.15 s of failures is well within its renew deadline).
    assert 1 <= result.fault_hits["ErrorResponse 500"] <= 5
    assert (
        seen[0].requests.count(verb="update", user="c0", code=500)
        == (result.fault_hits["ErrorResponse 500"])
    )
    assert result.report.handovers == 1  # the creation only: c0 led throughout


async def test_play_faults_opens_and_closes_windows_on_time() -> None:
    seen: list[tuple[float, int]] = []
    async with LeaseApiServer() as server, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {server.token('admin')}"}
        body = {"metadata": {"name": "lease"}, "spec": {"holderIdentity": "admin"}}
        async with http.post(server.url + LEASES, json=body, headers=headers) as r:
            assert r.status == 201

        async def probe() -> None:
            started = anyio.current_time()
            while anyio.current_time() - started < 0.7:
                sent = anyio.current_time() - started
                async with http.get(server.url + LEASES + "/lease", headers=headers) as r:
                    seen.append((sent, r.status))
                await anyio.sleep(0.02)

        windows: list[FaultWindow | CutWatches] = [
            FaultWindow(0.2, 0.4, ErrorResponse(user="admin", status=503)),
            CutWatches(0.1),
        ]
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            applied = await play_faults(server, windows)
    ((_, handle),) = applied
    assert handle.hits >= 3 and not handle.active
    # Sent well before, inside and after the window (0.05 s either side for scheduling).
    assert {status for at, status in seen if at < 0.15} == {200}
    assert {status for at, status in seen if 0.25 < at < 0.35} == {503}
    assert {status for at, status in seen if at > 0.5} == {200}
