"""A first election, with no cluster: three candidates take turns leading one Lease.

Run it with ``python examples/quickstart.py``. The Lease lives in
``leaderelect.testing.LeaseApiServer``, an in-process Kubernetes Lease API server.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from leaderelect import LeaderElector, LeaseLock
from leaderelect.testing import LeaseApiServer


# --8<-- [start:candidate]
async def candidate(identity: str, kubeconfig: Path) -> None:
    async with await LeaseLock.connect("quickstart", kubeconfig=kubeconfig) as lock:
        elector = LeaderElector(
            lock,
            identity=identity,
            lease_duration=2.0,  # short timings, so that the example runs in seconds
            renew_deadline=1.5,
            retry_period=0.2,
        )
        async with elector.leading() as leadership:
            print(f"{identity} leads, fencing token {leadership.token.transitions}")
            await anyio.sleep(1)  # the work only the leader does
        print(f"{identity} stepped down and released the lease")


# --8<-- [end:candidate]


# --8<-- [start:main]
async def main() -> None:
    async with LeaseApiServer() as server:
        kubeconfig = server.kubeconfig()  # a kubeconfig file for the server's admin user
        async with anyio.create_task_group() as tg:
            for identity in ("alice", "bob", "carol"):
                tg.start_soon(candidate, identity, kubeconfig)
        lease = server.lease("default", "quickstart")
        assert lease is not None
        print(f"holder at the end: {lease['spec']['holderIdentity']!r}")


if __name__ == "__main__":
    anyio.run(main)
# --8<-- [end:main]
