"""``uvicorn --workers 2`` serving an app that uses ``leaderelect.integrations.fastapi``.

A real uvicorn with two worker processes serves ``_uvicorn_app.py`` against the embedded
``LeaseApiServer``, with ``POD_NAME`` set as the how-tos tell users to set it: both workers
of the "pod" see the same ``POD_NAME``. Each worker is a candidate; only one may lead.

Embedded server only: the property is about the candidates (their identities, when they write
and work), and the embedded server's write history shows every write, which a real
kube-apiserver would only add latency to.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import anyio
import pytest
from _deploy import (
    PYTHON,
    child,
    child_environment,
    figures,
    most_terms_allowed,
    observe,
    terms_in,
    writes_between,
)
from _worklog import LEASE_DURATION, RETRY_PERIOD, WorkLog

from leaderelect.testing import LeaseApiServer

logger = logging.getLogger(__name__)

POD_NAME = "web-0"
LEASE = "uvicorn-workers"
OBSERVE = 3 * LEASE_DURATION
MAX_WRITE_RATE = 1.5 / RETRY_PERIOD
"""Writes per second a steady leader may make: one renewal per retry period, with room."""


@pytest.mark.slow
async def test_two_uvicorn_workers_of_one_pod_elect_one_leader(
    leaderelect_server: LeaseApiServer, tmp_path: Path
) -> None:
    work_log = tmp_path / "work.log"
    env = child_environment(
        leaderelect_server.kubeconfig(), work_log, POD_NAME=POD_NAME, LEASE_NAME=LEASE
    )
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        "_uvicorn_app:app",
        "--app-dir",
        str(Path(__file__).parent),
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    launch = anyio.current_time()
    async with child(command, env) as uvicorn:
        end = await observe(work_log, until_work=30, observe=OBSERVE)
        log = WorkLog.read(work_log)
        history = leaderelect_server.writes
        writes = writes_between(history, "default", LEASE, launch, end)
        terms = [t for t in terms_in(history, "default", LEASE) if t.time < end]
        uvicorn.send_signal(signal.SIGINT)  # as Ctrl-C does; the kubelet's SIGTERM does the same
        with anyio.fail_after(20):
            await uvicorn.wait()

    run = figures(log, window=end - launch, terms=len(terms), writes=len(writes))
    logger.info("uvicorn --workers 2: %s", run)
    identities = set(log.identities.values())
    assert len(log.identities) == 2, f"not two workers: {run}"
    assert len(identities) == 2, f"the two workers share an identity: {run}"
    assert all(i.startswith(POD_NAME) for i in identities), (
        f"an identity does not name the pod (for people reading `kubectl get lease`): {run}"
    )
    assert run.overlaps == 0, f"two workers did leader-only work at once: {run}"
    assert run.terms <= most_terms_allowed(run.window), f"more than one term per lease: {run}"
    assert run.writes_per_second is not None and run.writes_per_second <= MAX_WRITE_RATE, (
        f"more writes than renewals: {run}"
    )
    assert {t.holder for t in terms} <= identities

    # Shutdown: every worker's work stopped, and the leader released the lease.
    final = WorkLog.read(work_log)
    assert all(i.end is not None for i in final.intervals), final.intervals
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == "", lease
