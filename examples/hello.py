"""Lead one Lease on a real cluster: ``python examples/hello.py`` ($KUBECONFIG, in a pod its
service account, else ~/.kube/config)."""

from __future__ import annotations

import anyio

from leaderelect import LeaderElector, LeaseLock


async def main() -> None:
    async with await LeaseLock.connect("my-controller", "default") as lock:
        elector = LeaderElector(lock)  # identity: <$POD_NAME>_<hex>, unique per process
        async with elector.leading() as leadership:
            print(f"leading with fencing token {leadership.token}")
            await anyio.sleep_forever()  # your controller; cancelled if leadership is lost


if __name__ == "__main__":
    anyio.run(main)
