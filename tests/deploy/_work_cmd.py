"""The command ``leaderelect run`` runs while it leads, for ``test_shared_identity.py``.

Usage: ``leaderelect run ... -- python _work_cmd.py``. Logs to ``$LEADERELECT_TEST_WORK_LOG``
when it starts (with ``$LEADERELECT_IDENTITY`` and ``$LEADERELECT_TOKEN``, which the wrapper
sets) and when SIGTERM stops it (``_worklog.py``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

from _worklog import WORK_LOG, record


def main() -> None:
    log = os.environ[WORK_LOG]

    def stop(signum: int, frame: FrameType | None) -> None:
        record(log, "stop")
        sys.exit(128 + signum)

    # A stop that comes early still finds the start logged, and is logged after it.
    stopping = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    record(log, "start", os.environ["LEADERELECT_IDENTITY"], os.environ["LEADERELECT_TOKEN"])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
