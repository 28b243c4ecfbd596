"""The example's leader-only work: ``leaderelect run`` starts it only while its pod leads.

It reads the term from the environment the wrapper sets, works until it gets SIGTERM (the
wrapper's signal that leadership is over, or that the pod is stopping), and exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType


def stop(signum: int, frame: FrameType | None) -> None:
    print(f"{os.environ.get('POD_NAME', '?')}: SIGTERM: stopping", flush=True)
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    pod = os.environ.get("LEADERELECT_IDENTITY", "?")
    token = os.environ.get("LEADERELECT_TOKEN", "?")
    lease = os.environ.get("LEADERELECT_LEASE", "?")
    print(f"{pod}: leading {lease}, fencing token {token}", flush=True)
    step = 0
    while True:
        step += 1
        print(f"{pod}: working (step {step}, token {token})", flush=True)
        time.sleep(5)


if __name__ == "__main__":
    main()
