"""A candidate process with an explicit identity, for ``test_shared_identity.py``.

Usage: ``python _candidate.py KUBECONFIG LEASE IDENTITY``, with ``$LEADERELECT_TEST_WORK_LOG``
naming the work log. It campaigns with ``LeaderElector(lock, identity=IDENTITY)`` and the short
timings, campaigns again after each lost term, and logs when its work starts and stops
(``_worklog.py``). SIGTERM stops it as a pod is stopped: the work ends, then the lease is
released.
"""

from __future__ import annotations

import os
import signal
import sys

import anyio
from _worklog import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, WORK_LOG, record

from leaderelect import LeaderElector, Leadership, LeaseLock


async def main(kubeconfig: str, lease: str, identity: str) -> None:
    log = os.environ[WORK_LOG]

    async def work(leadership: Leadership) -> None:
        record(log, "start", leadership.identity, leadership.token)
        try:
            await anyio.sleep_forever()
        finally:
            record(log, "stop")

    stop = anyio.Event()

    async def on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()
                return

    async with (
        await LeaseLock.from_kubeconfig(lease, config_file=kubeconfig) as lock,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(on_signal)
        elector = LeaderElector(
            lock,
            identity=identity,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        record(log, "ready", elector.identity)
        await elector.lead(work, stop=stop)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    kubeconfig, lease, identity = sys.argv[1:4]
    anyio.run(main, kubeconfig, lease, identity)
