"""The leader-election benchmark: ``python benchmarks/election.py [--quick] [--real]``.

Measures, side by side on one Lease API server, leaderelect watching the Lease, leaderelect
polling it (``watch=False``, client-go's algorithm), ``kubernetes_asyncio.leaderelection`` and,
with ``--real`` or ``--kubeconfig``, client-go's ``le-example``:

1. graceful handover latency (the leader leaves its work → the next leader's work starts);
2. crash failover (SIGKILL right after a renewal → the next leader's work), beyond the lease
   duration;
3. API requests per minute by verb, for the leader and each follower, with 1, 10 and 100
   followers, and each candidate process's CPU seconds and peak RSS over the same window.

It prints Markdown tables and writes everything to ``benchmarks/results/<time>.json`` (or
``--json PATH``). ``--help`` lists the knobs; docs/performance.md explains the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._main import main

if __name__ == "__main__":
    sys.exit(main())
