"""A candidate in a process of its own, for the SIGKILL test.

Usage: ``python _process_candidate.py URL NAME LEASE``, where URL carries the user's token
(``<server>/_token/<token>``). It campaigns with the chaos timings and prints one line when its
work starts (``start <time.monotonic()> <fencing token>``) and one when it stops (``end
<time.monotonic()>``); CLOCK_MONOTONIC is system-wide, so the parent can compare them.
"""

from __future__ import annotations

import sys
import time

import anyio
import kubernetes_asyncio.client
from _chaos import CHAOS_TIMINGS

from leaderelect import LeaderElector, LeaseLock


async def main(url: str, name: str, lease: str) -> None:
    configuration = kubernetes_asyncio.client.Configuration(host=url)
    async with kubernetes_asyncio.client.ApiClient(configuration) as api_client:
        elector = LeaderElector(
            LeaseLock(api_client, lease),
            identity=name,
            lease_duration=CHAOS_TIMINGS.lease_duration,
            renew_deadline=CHAOS_TIMINGS.renew_deadline,
            retry_period=CHAOS_TIMINGS.retry_period,
        )
        async with elector.leading() as leadership:
            sys.stdout.write(f"start {time.monotonic()} {leadership.token}\n")
            sys.stdout.flush()
            try:
                await anyio.sleep_forever()
            finally:
                sys.stdout.write(f"end {time.monotonic()}\n")
                sys.stdout.flush()


if __name__ == "__main__":
    url, name, lease = sys.argv[1:4]
    anyio.run(main, url, name, lease)
