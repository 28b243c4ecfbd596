"""Lead one Lease on a real cluster: ``python examples/hello.py`` (uses $KUBECONFIG)."""

from __future__ import annotations

import anyio

from leaderelect import LeaderElector, LeaseLock


async def main() -> None:
    async with await LeaseLock.from_kubeconfig("my-controller", "default") as lock:
        elector = LeaderElector(lock)  # identity: $POD_NAME, else <hostname>_<uuid>
        async with elector.leading() as leadership:
            print(f"leading with fencing token {leadership.token}")
            await anyio.sleep_forever()  # your controller; cancelled if leadership is lost


if __name__ == "__main__":
    anyio.run(main)
