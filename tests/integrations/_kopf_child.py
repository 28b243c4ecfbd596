"""A child process for test_kopf.py: lose leadership while kopf runs, then outlive kopf's timer.

``python _kopf_child.py helper|naive`` (``$KUBECONFIG`` points at the test's server): runs kopf
inside ``leading()``, with kopf's ``ultimate_exiting_timeout`` cut to half a second, through
``leaderelect.integrations.kopf.operator()`` (``helper``) or a bare ``kopf.operator()``
(``naive``). Once kopf has started, another holder takes the lease, which cancels the block.
kopf takes a bare cancellation for a stuck shutdown and arms a SIGKILL timer; the helper stops
kopf through its stop flag instead. The process then waits past the timer and prints
``survived``; with the timer armed it is killed first.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import anyio
import kopf

from leaderelect import LeaderElector, LeadershipLost, LeaseLock
from leaderelect.integrations.kopf import operator

LEASE = "kopf-child"
TIMER = 0.5


async def main(mode: str) -> None:
    started = anyio.Event()
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(
        logger: kopf.Logger, settings: kopf.OperatorSettings, **_: object
    ) -> kopf.ConnectionInfo | None:
        return await kopf.login_via_async_client(logger=logger, settings=settings)

    @kopf.on.startup(registry=registry)
    async def startup(**_: object) -> None:
        started.set()

    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.scanning.disabled = True
    settings.process.ultimate_exiting_timeout = TIMER

    config = os.environ["KUBECONFIG"]
    async with (
        await LeaseLock.from_kubeconfig(LEASE, config_file=config) as lock,
        await LeaseLock.from_kubeconfig(LEASE, config_file=config) as intruder,
    ):
        elector = LeaderElector(
            lock, identity="child", lease_duration=2.0, renew_deadline=1.5, retry_period=0.2
        )
        try:
            async with elector.leading(), anyio.create_task_group() as tg:

                async def take_over() -> None:
                    await started.wait()
                    snapshot = await intruder.get(timeout=5)
                    assert snapshot is not None
                    record = replace(snapshot.record, holder_identity="intruder")
                    await intruder.update(record, base=snapshot, timeout=5)

                tg.start_soon(take_over)
                if mode == "helper":
                    await operator(registry=registry, settings=settings, namespaces=["default"])
                else:
                    await kopf.operator(
                        registry=registry,
                        settings=settings,
                        namespaces=["default"],
                        standalone=True,
                    )
        except LeadershipLost:
            sys.stdout.write("lost\n")
    await anyio.sleep(3 * TIMER)  # time for an armed timer to fire (it runs on this loop)
    sys.stdout.write("survived\n")
    sys.stdout.flush()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
