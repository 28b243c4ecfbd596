"""Run leaderelect inside applications: web services, operators, any asyncio program.

This package needs nothing beyond leaderelect itself; each framework has its own module, which
imports the framework and needs its extra:

- ``leaderelect.integrations.fastapi``: a lifespan helper, a leader-only dependency and health
  endpoints (``pip install 'leaderelect[fastapi]'``);
- ``leaderelect.integrations.aiohttp``: a ``cleanup_ctx`` helper, a leader-only decorator and
  health routes (aiohttp is already a dependency of leaderelect);
- ``leaderelect.integrations.kopf``: kopf operators that run only on the replica holding the
  Lease, without kopf's peering CRDs (``pip install 'leaderelect[kopf]'``).

Here, for any asyncio program: [`run_while_leading()`][leaderelect.integrations.run_while_leading]
runs work in the foreground whenever this candidate leads, and
[`BackgroundElection`][leaderelect.integrations.BackgroundElection] campaigns beside an
application that keeps running on every replica.
"""

from __future__ import annotations

from ._common import DEFAULT_TOLERANCE as DEFAULT_TOLERANCE
from ._common import BackgroundElection as BackgroundElection
from ._common import ElectionStatus as ElectionStatus
from ._common import Worker as Worker
from ._common import run_while_leading as run_while_leading

__all__ = (
    "DEFAULT_TOLERANCE",
    "BackgroundElection",
    "ElectionStatus",
    "Worker",
    "run_while_leading",
)

for _name in ("BackgroundElection", "ElectionStatus", "run_while_leading"):
    globals()[_name].__module__ = __name__
del _name
