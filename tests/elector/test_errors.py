"""API errors are logged clearly and survived: the campaign keeps going, nothing is written."""

from __future__ import annotations

import logging

import anyio
import pytest
from _fleet import FAST
from _kube import KubeTarget

from leaderelect import LeaderElector, LeaseLock


class _Waiter(logging.Handler):
    """Lets a test await the first log record that matches."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.records: list[logging.LogRecord] = []
        self.seen = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.records.append(record)
            self.seen.set()


async def test_forbidden_create_names_the_missing_verb_and_keeps_campaigning(
    kube: KubeTarget, lease_name: str
) -> None:
    kube.require_users("reader")
    waiter = _Waiter("forbidden")
    logger = logging.getLogger("leaderelect")
    logger.addHandler(waiter)
    try:
        with anyio.fail_after(15):
            async with await LeaseLock.from_kubeconfig(
                lease_name, kube.namespace, config_file=kube.kubeconfig("reader")
            ) as lock:
                elector = LeaderElector(
                    lock,
                    identity="reader-1",
                    lease_duration=FAST["lease_duration"],
                    renew_deadline=FAST["renew_deadline"],
                    retry_period=FAST["retry_period"],
                )
                async with anyio.create_task_group() as tg:

                    async def campaign() -> None:
                        async with elector.leading():
                            pytest.fail("a reader cannot lead")

                    tg.start_soon(campaign)
                    await waiter.seen.wait()
                    tg.cancel_scope.cancel()
    finally:
        logger.removeHandler(waiter)
    message = waiter.records[0].getMessage()
    assert '"create"' in message
    assert "leases" in message
    assert waiter.records[0].levelno == logging.WARNING
    assert not elector.is_leader
    response = await kube.raw("admin").get(
        f"/apis/coordination.k8s.io/v1/namespaces/{kube.namespace}/leases/{lease_name}"
    )
    assert response.status == 404
