"""A kopf operator that runs on one replica at a time, elected on a Lease: no peering CRDs.

```shell
pip install 'leaderelect[kopf] @ git+https://github.com/leaderelect/leaderelect'
python examples/kopf_operator.py
```

The operator itself is a toy that needs nothing but Leases: it reports every change of
holder of the Leases in its namespace. Run it twice: the first process runs kopf; the second
waits, without kopf. Stop the first (Ctrl-C, or SIGTERM as Kubernetes sends): kopf stops, the
lease is released, and the second starts kopf at once.

It uses ``$KUBECONFIG`` (else ``~/.kube/config``), or the pod's service account when it runs
in a cluster, for both the election and kopf. The identity is ``$POD_NAME``, else
``<hostname>_<uuid>``; the namespace served is ``$WATCH_NAMESPACE``, else ``default``.
"""

from __future__ import annotations

import os

import anyio
import kopf

from leaderelect import LeaderElector, LeaseLock, default_identity
from leaderelect.integrations.kopf import run_operator

LEASE_NAME = os.environ.get("LEASE_NAME", "kopf-example")
NAMESPACE = os.environ.get("WATCH_NAMESPACE", "default")
IDENTITY = default_identity()  # <$POD_NAME>_<8 hex digits>, unique per process


# --8<-- [start:handlers]
@kopf.on.login()
async def login(
    logger: kopf.Logger, settings: kopf.OperatorSettings, **_: object
) -> kopf.ConnectionInfo | None:
    # kopf logs in through kubernetes_asyncio: the pod's service account, else a kubeconfig.
    return await kopf.login_via_async_client(logger=logger, settings=settings)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.posting.enabled = False  # report on stdout only, not as Kubernetes Events
    settings.scanning.disabled = True  # serve $WATCH_NAMESPACE only: no cluster-wide reads
    print(f"{IDENTITY}: operator started", flush=True)


@kopf.on.cleanup()
def goodbye(**_: object) -> None:
    print(f"{IDENTITY}: operator stopped", flush=True)


@kopf.on.event("coordination.k8s.io", "v1", "leases")
def report(name: str, namespace: str | None, spec: kopf.Spec, **_: object) -> None:
    holder = spec.get("holderIdentity") or "nobody"
    print(f"{IDENTITY}: lease {namespace}/{name} is held by {holder}", flush=True)


# --8<-- [end:handlers]


# --8<-- [start:main]
async def main() -> None:
    async with await LeaseLock.connect(LEASE_NAME, NAMESPACE) as lock:
        elector = LeaderElector(lock, identity=IDENTITY)
        # Campaigns; runs kopf (standalone, peering off) only while this replica leads; stops
        # kopf and campaigns again if the lease is lost; returns on SIGINT or SIGTERM.
        await run_operator(elector, namespaces=[NAMESPACE])


if __name__ == "__main__":
    anyio.run(main)
# --8<-- [end:main]
