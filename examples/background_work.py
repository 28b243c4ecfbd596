"""A periodic reconciler that runs on one replica at a time, in a plain asyncio program.

Run it in two shells: ``python examples/background_work.py``. The first process reconciles
every few seconds; the second waits. Stop the first (Ctrl-C, or SIGTERM as Kubernetes sends)
and the second takes over at once, because the first released the lease on its way out.

It uses ``$KUBECONFIG`` (else ``~/.kube/config``), or the pod's service account when it runs
in a cluster. The identity is ``$POD_NAME``, else ``<hostname>_<uuid>``.
"""

from __future__ import annotations

import os
import signal

import anyio

from leaderelect import LeaderElector, Leadership, LeaseLock
from leaderelect.integrations import run_while_leading

LEASE_NAME = os.environ.get("LEASE_NAME", "background-work")
RECONCILE_EVERY = float(os.environ.get("RECONCILE_EVERY", "5"))


# --8<-- [start:work]
async def reconcile_forever(leadership: Leadership, every: float) -> None:
    """The leader-only work: started when a term begins, cancelled the moment it ends."""
    while True:
        # Stands in for real work; pass the fencing token to whatever you write to.
        print(f"{leadership.identity}: reconciling under token {leadership.token}", flush=True)
        await anyio.sleep(every)


# --8<-- [end:work]


# --8<-- [start:main]
async def main() -> None:
    async with await LeaseLock.connect(LEASE_NAME) as lock:  # $KUBECONFIG, the pod, ~/.kube/config
        elector = LeaderElector(lock)
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()  # releases the lease if we lead
                        return

            tg.start_soon(stop_on_signal)
            await run_while_leading(elector, reconcile_forever, RECONCILE_EVERY)
    print(f"{elector.identity}: stopped", flush=True)


if __name__ == "__main__":
    anyio.run(main)
# --8<-- [end:main]
