"""An application's watches on the elector's ApiClient.

Operators build one kubernetes_asyncio ``ApiClient`` and hand it to everything, the elector's
``LeaseLock`` included. Its connection pool holds 100 connections
(``Configuration.connection_pool_maxsize``), and every long request (a watch) holds one. With
120 watches open, the application's own requests queue for the pool; the elector's must not,
or its renewals time out and the leader loses a term it holds.

The watches are on Leases in ``kube-public`` (which no test writes), each with a field selector
of its own and a ``timeoutSeconds`` far beyond the test, so each holds its connection until the
test closes it. The elector uses the very same ``ApiClient``. Either order is tried: the
application's watches open first and the elector then campaigns, or the elector leads first and
the watches open while it renews.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from _kube import KubeTarget, leases_path
from _worklog import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD
from anyio.abc import TaskStatus
from kubernetes_asyncio import client as k8s_client

from leaderelect import LeaderElector, LeadershipLost, LeaseLock

logger = logging.getLogger(__name__)

WATCHES = 120
POOL = 100
"""kubernetes_asyncio's default ``connection_pool_maxsize``."""
HOLD = 3 * RENEW_DEADLINE
"""How long the leader must keep its one term with the pool full: several renew deadlines."""
CAMPAIGN_BOUND = 3 * LEASE_DURATION
"""A free Lease is taken in milliseconds; the bound only turns a hang into a failure."""


class Watches:
    """``WATCHES`` long watches the application holds on an ApiClient."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        self._leases = k8s_client.CoordinationV1Api(api)
        self.open = 0
        self._responses: list[Any] = []
        self._opened = anyio.Event()
        self._close = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the watches; reports started once the pool is full: ``POOL`` of them open, or
        none opening for a second (the others queue for a connection)."""
        async with anyio.create_task_group() as tg:
            for index in range(WATCHES):
                tg.start_soon(self._hold, index)
            while self.open < POOL:
                with anyio.move_on_after(1.0) as waited:
                    await self._opened.wait()
                if waited.cancelled_caught and self.open > 0:
                    break
            task_status.started()
            await self._close.wait()
            tg.cancel_scope.cancel()

    def close(self) -> None:
        self._close.set()

    async def _hold(self, index: int) -> None:
        response: Any = await self._leases.list_namespaced_lease(
            "kube-public",
            watch=True,
            field_selector=f"metadata.name=nobody-{index}",
            resource_version="0",  # from the watch cache as it is: no wait for it to catch up
            timeout_seconds=3600,
            _preload_content=False,
        )
        try:
            if response.status != 200:
                raise AssertionError(f"watch {index}: {response.status} {await response.text()}")
            self.open += 1
            self._responses.append(response)
            self._opened.set()
            self._opened = anyio.Event()
            await anyio.sleep_forever()
        finally:
            response.close()

    def still_open(self) -> int:
        """How many watches still hold their connection (the server has not ended them)."""
        return sum(1 for response in self._responses if not response.closed)


async def bounded(what: str, seconds: float, step: Callable[[], Awaitable[object]]) -> None:
    with anyio.move_on_after(seconds) as scope:
        await step()
    if scope.cancelled_caught:
        pytest.fail(f"{what}: not done within {seconds} s", pytrace=False)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["watches-then-lead", "lead-then-watches"])
async def test_the_leader_keeps_its_term_beside_120_watches_on_its_api_client(
    kube: KubeTarget, lease_name: str, order: str
) -> None:
    api = await kube.api_client("admin")
    assert api.configuration.connection_pool_maxsize == POOL
    watches = Watches(api)
    elector = LeaderElector(
        LeaseLock(api, lease_name, "default"),
        identity="operator-0",
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY_PERIOD,
    )
    lease: dict[str, Any] = {}
    transitions = held = -1
    lost: LeadershipLost | None = None
    async with anyio.create_task_group() as tg:
        if order == "watches-then-lead":
            await bounded("opening the watches", 30, lambda: tg.start(watches.run))
        # The campaign is bounded; once leading, only a lost term ends the block early.
        with anyio.CancelScope(deadline=anyio.current_time() + CAMPAIGN_BOUND) as campaign:
            try:
                async with elector.leading() as leadership:
                    campaign.deadline = math.inf
                    transitions = leadership.token.transitions
                    if order == "lead-then-watches":
                        await tg.start(watches.run)
                    await anyio.sleep(HOLD)
                    held = watches.still_open()
                    assert leadership.is_valid
                    lease = (await kube.raw("admin").get(leases_path("default", lease_name))).json()
            except LeadershipLost as exc:
                lost = exc
            finally:
                watches.close()
    if lost is not None:
        pytest.fail(f"the leader lost its term beside {watches.open} open watches: {lost}")
    if campaign.cancelled_caught:
        pytest.fail(
            f"no term within {CAMPAIGN_BOUND} s of campaigning for a free Lease beside "
            f"{watches.open} open watches"
        )

    logger.info("%s on %s: %d watches held, one term kept", order, kube.kind, held)
    # The pool was full all along (the elector may hold some of it, if it shares the pool).
    assert held == watches.open >= POOL - 5, (held, watches.open)
    assert lease["spec"]["holderIdentity"] == "operator-0", lease
    assert lease["spec"]["leaseTransitions"] == transitions == 0, lease
