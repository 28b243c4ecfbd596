"""Two processes that share one explicit identity.

A misconfiguration that happens (an identity copied from a config map, a pod name in a pod
that runs two candidates). A record naming our identity is ours only if this very elector wrote
that term; to every other process it is another holder's, which expires like any other. So the
second process waits, and the first keeps its term.

Each run starts two candidates with the identity ``same``, either as two ``leaderelect run
--identity same`` wrappers (the work is ``_work_cmd.py``) or as two Python programs with
``LeaderElector(lock, identity="same")`` (``_candidate.py``), and observes them for three lease
durations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from _deploy import (
    HERE,
    PYTHON,
    child,
    child_environment,
    figures,
    most_terms_allowed,
    observe,
    terms_in,
    tokens_started,
    writes_between,
)
from _kube import KubeTarget, leases_path
from _worklog import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, WorkLog

logger = logging.getLogger(__name__)

IDENTITY = "same"
OBSERVE = 3 * LEASE_DURATION
MAX_WRITE_RATE = 1.5 / RETRY_PERIOD


def command(how: str, kubeconfig: Path, lease: str) -> list[str]:
    if how == "elector":
        return [PYTHON, str(HERE / "_candidate.py"), str(kubeconfig), lease, IDENTITY]
    return [
        PYTHON,
        "-m",
        "leaderelect",
        "run",
        "--lease",
        lease,
        "--namespace",
        "default",
        "--kubeconfig",
        str(kubeconfig),
        "--identity",
        IDENTITY,
        "--lease-duration",
        str(LEASE_DURATION),
        "--renew-deadline",
        str(RENEW_DEADLINE),
        "--retry-period",
        str(RETRY_PERIOD),
        "--recampaign",
        "--",
        PYTHON,
        str(HERE / "_work_cmd.py"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["elector", "cli"])
async def test_two_processes_with_one_identity_keep_one_term(
    kube: KubeTarget, lease_name: str, how: str, tmp_path: Path
) -> None:
    work_log = tmp_path / "work.log"
    kubeconfig = kube.kubeconfig("elector")
    env = child_environment(kubeconfig, work_log)
    argv = command(how, kubeconfig, lease_name)
    launch = anyio.current_time()
    stderr = tmp_path / "candidates.stderr"  # the wrappers log every term: too much to inherit
    async with child(argv, env, stderr), child(argv, env, stderr):
        end = await observe(work_log, until_work=15, observe=OBSERVE)
        log = WorkLog.read(work_log)
        lease = (await kube.raw("admin").get(leases_path("default", lease_name))).json()
        # leaving the block stops both: SIGTERM, the leader's work stops, it releases

    in_window = log.starts_before(end)
    # Every term starts at leaseTransitions + 1, and this Lease was created by the test.
    transitions = lease.get("spec", {}).get("leaseTransitions", -1)  # -1: no Lease
    terms = max(len(tokens_started(in_window)), transitions + 1)
    writes = None
    if kube.server is not None:
        history = kube.server.writes
        terms = max(
            terms, len([t for t in terms_in(history, "default", lease_name) if t.time < end])
        )
        writes = len(writes_between(history, "default", lease_name, launch, end))
    run = figures(WorkLog.read(work_log), window=end - launch, terms=terms, writes=writes)
    logger.info("%s on %s: %s", how, kube.kind, run)
    run.details = f"their stderr: {stderr}"

    assert in_window, f"no leader work: {run}"
    assert run.overlaps == 0, f"two processes did leader work at once: {run}"
    assert run.terms <= most_terms_allowed(run.window), f"more than one term per lease: {run}"
    if run.writes_per_second is not None:
        assert run.writes_per_second <= MAX_WRITE_RATE, f"more writes than renewals: {run}"
    assert lease["spec"].get("holderIdentity") == IDENTITY, lease
