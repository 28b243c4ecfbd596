"""A misconfiguration speaks: ``LeaderElector.problem`` names it while the election retries,
and clears itself once the next request of the same kind gets through.

Each test runs on the embedded server and on the real kube-apiserver, changing what the
``reader`` user may do in a namespace of the test's own (``_rbac.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from _fleet import FAST
from _kube import KubeTarget
from _rbac import READ, READ_WRITE, create_namespace, delete_namespace, reader_namespace

from leaderelect import (
    LeaderElector,
    Leadership,
    LeaseError,
    LeaseForbidden,
    LeaseLock,
    LeaseNotFound,
    Timings,
)
from leaderelect.testing import ErrorResponse

TIMINGS = Timings(**FAST)
RETRY = TIMINGS.retry_period
SOON = 10 * RETRY + 5.0
"""Seconds a problem may take to show or to clear: a couple of retry periods, plus RBAC's
propagation on the real server and a loaded machine."""


def _problem(elector: LeaderElector) -> LeaseError | None:
    """``elector.problem``, read afresh (a call, so that type checkers do not narrow it)."""
    return elector.problem


async def _until(predicate: Callable[[], bool], what: str, bound: float = SOON) -> None:
    with anyio.move_on_after(bound):
        while True:
            if predicate():
                return
            await anyio.sleep(RETRY / 4)
    pytest.fail(f"not within {bound:g}s: {what}")


@asynccontextmanager
async def _campaigning(
    kube: KubeTarget, user: str, lease_name: str, namespace: str
) -> AsyncIterator[tuple[LeaderElector, list[Leadership]]]:
    """An elector campaigning (``lead()``) in the background; yields it and its terms."""
    terms: list[Leadership] = []

    async def work(leadership: Leadership) -> None:
        terms.append(leadership)
        await anyio.sleep_forever()

    async with LeaseLock(await kube.api_client(user), lease_name, namespace) as lock:
        elector = LeaderElector(lock, identity=f"{user}-candidate", timings=TIMINGS)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(elector.lead, work)
            yield elector, terms
            tasks.cancel_scope.cancel()


async def test_a_candidate_that_may_not_create_says_so_and_leads_once_granted(
    kube: KubeTarget, lease_name: str
) -> None:
    async with (
        reader_namespace(kube, READ) as grant,
        _campaigning(kube, "reader", lease_name, grant.namespace) as (elector, terms),
    ):
        await _until(lambda: elector.problem is not None, "the problem shows")
        problem = elector.problem
        assert isinstance(problem, LeaseForbidden)
        assert problem.verb == "create"
        assert (
            f'create lease {grant.namespace}/{lease_name} forbidden: User "reader" lacks RBAC '
            f'verb "create" on resource "leases" (API group "coordination.k8s.io") in '
            f'namespace "{grant.namespace}"'
        ) in str(problem)
        # It is not a liveness failure: a restart would not fix RBAC.
        assert elector.check() is None
        # The election keeps retrying, and keeps saying so.
        await anyio.sleep(3 * RETRY)
        assert terms == []
        assert elector.problem is not None

        await grant.allow(READ_WRITE)
        await _until(lambda: bool(terms), "the candidate leads once granted")
        assert elector.is_leader
        assert _problem(elector) is None


async def test_a_namespace_that_does_not_exist_is_the_problem_until_it_is_created(
    kube: KubeTarget, lease_name: str
) -> None:
    if kube.kind == "external":
        pytest.skip("the test creates a namespace; not on an external cluster")
    namespace = f"le-missing-{lease_name[-8:]}"
    try:
        async with _campaigning(kube, "admin", lease_name, namespace) as (elector, terms):
            await _until(lambda: elector.problem is not None, "the problem shows")
            problem = elector.problem
            assert isinstance(problem, LeaseNotFound)
            assert str(problem).startswith(
                f'create lease {namespace}/{lease_name}: namespace "{namespace}" does not exist'
            )
            await anyio.sleep(3 * RETRY)
            assert terms == []

            await create_namespace(kube, namespace)
            await _until(lambda: bool(terms), "the candidate leads once the namespace exists")
            assert _problem(elector) is None
    finally:
        await delete_namespace(kube, namespace)


async def test_a_candidate_that_may_not_read_says_so_while_it_waits_for_its_first_read(
    kube: KubeTarget, lease_name: str
) -> None:
    api = await kube.api_client("reader")
    async with (
        reader_namespace(kube, ()) as grant,
        LeaseLock(api, lease_name, grant.namespace) as lock,
    ):
        elector = LeaderElector(lock, identity="blind", timings=TIMINGS)
        led = anyio.Event()

        async def campaign() -> None:
            async with elector.leading():
                led.set()
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(campaign)
            await _until(lambda: elector.problem is not None, "the problem shows")
            problem = elector.problem
            assert isinstance(problem, LeaseForbidden)
            assert problem.verb == "get"
            assert 'lacks RBAC verb "get" on resource "leases"' in str(problem)
            assert not led.is_set()

            await grant.allow(READ_WRITE)
            with anyio.fail_after(SOON + 10):  # the first read backs off up to 4 retries
                await led.wait()
            assert _problem(elector) is None
            tasks.cancel_scope.cancel()


async def test_a_leader_whose_permission_is_revoked_says_so_and_leads_again_once_granted(
    kube: KubeTarget, lease_name: str
) -> None:
    async with (
        reader_namespace(kube, READ_WRITE) as grant,
        _campaigning(kube, "reader", lease_name, grant.namespace) as (elector, terms),
    ):
        await _until(lambda: bool(terms), "the candidate leads")
        await grant.allow(READ)
        await _until(lambda: elector.problem is not None, "the renewals' problem shows")
        problem = elector.problem
        assert isinstance(problem, LeaseForbidden)
        assert problem.verb == "update"
        assert 'lacks RBAC verb "update" on resource "leases"' in str(problem)
        await _until(lambda: not elector.is_leader, "the term ends at its renew deadline")

        await grant.allow(READ_WRITE)
        await _until(lambda: len(terms) == 2, "the candidate leads again")
        assert _problem(elector) is None


async def test_transient_errors_are_not_a_problem(lease_name: str, kube: KubeTarget) -> None:
    if kube.server is None:
        pytest.skip("injects faults into the embedded server")
    server = kube.server
    server.faults.add(ErrorResponse(verb="create", status=503, times=3))
    server.faults.add(ErrorResponse(verb="create", status=429, retry_after=0))
    server.faults.add(ErrorResponse(verb="get", status=500, times=2))
    async with _campaigning(kube, "elector", lease_name, kube.namespace) as (elector, terms):
        await anyio.sleep(5 * RETRY)
        assert _problem(elector) is None
        assert terms == []
        server.faults.clear()
        await _until(lambda: bool(terms), "the candidate leads")
        assert _problem(elector) is None


async def test_a_problem_of_one_kind_is_not_cleared_by_another_kind_succeeding(
    lease_name: str, kube: KubeTarget
) -> None:
    if kube.server is None:
        pytest.skip("injects faults into the embedded server")
    server = kube.server
    server.faults.add(ErrorResponse(verb="create", status=422, message="spec.x: Invalid value"))
    async with _campaigning(kube, "elector", lease_name, kube.namespace) as (elector, terms):
        await _until(lambda: elector.problem is not None, "the problem shows")
        assert elector.problem is not None and elector.problem.verb == "create"
        assert "spec.x: Invalid value" in str(elector.problem)
        # Reads and watches keep succeeding; the write's problem stands.
        await anyio.sleep(3 * RETRY)
        assert elector.problem is not None and terms == []
        server.faults.clear()
        await _until(lambda: bool(terms), "the candidate leads")
        assert _problem(elector) is None
