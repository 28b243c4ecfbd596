"""The patterns of docs/leading.md, as functions that ``tests/test_docs.py`` runs.

Each ``--8<--`` section is included in the documentation. ``main()`` runs them against
``leaderelect.testing.LeaseApiServer``: ``python examples/leading.py``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from leaderelect import LeaderElector, Leadership, LeadershipLost, LeaseLock
from leaderelect.testing import LeaseApiServer, partition

logger = logging.getLogger("example")


async def reconcile(leadership: Leadership) -> None:
    """Stands in for the work only the leader may do; here it just waits a little."""
    await anyio.sleep(0.2)


# --8<-- [start:basic]
async def lead(elector: LeaderElector) -> None:
    async with elector.leading() as leadership:
        # Only the leader gets here; this block is cancelled if leadership is lost.
        print(f"{leadership.identity} leads {leadership.lease}, token {leadership.token}")
        await reconcile(leadership)
    # Here the block has finished, renewals have stopped and the lease is released.


# --8<-- [end:basic]


# --8<-- [start:lost]
async def lead_once(elector: LeaderElector) -> None:
    try:
        async with elector.leading() as leadership:
            while True:
                await reconcile(leadership)
    except LeadershipLost as lost:
        # The block was cancelled and has finished; lost.leadership is the term that ended.
        print(f"lost leadership: {lost.reason.name}")


# --8<-- [end:lost]


# --8<-- [start:campaign-again]
async def lead_forever(elector: LeaderElector) -> None:
    while True:
        try:
            async with elector.leading() as leadership:
                while True:
                    await reconcile(leadership)
        except LeadershipLost as lost:
            logger.warning("%s; campaigning again", lost)


# --8<-- [end:campaign-again]


# --8<-- [start:time-left]
def apply_change(leadership: Leadership, change: str) -> bool:
    """A synchronous step that no cancellation can interrupt once it has started."""
    if leadership.time_left() < 1.0:  # seconds of guaranteed leadership left
        return False  # too close to the deadline: leave it to the next term
    print(f"applying {change!r} under token {leadership.token}")
    return True


# --8<-- [end:time-left]


# --8<-- [start:run]
async def run_with_callbacks(elector: LeaderElector) -> None:
    async def started(leadership: Leadership) -> None:
        print(f"started leading with token {leadership.token}")
        await reconcile(leadership)  # returning ends run(); a loss cancels this

    async def stopped() -> None:
        print("stopped leading")  # after the work stopped and the lease was released

    async def new_leader(identity: str | None) -> None:
        print(f"leader is now {identity}")  # None: the lease is free

    await elector.run(started, on_stopped_leading=stopped, on_new_leader=new_leader)


# --8<-- [end:run]


# --8<-- [start:shutdown]
async def serve(elector: LeaderElector) -> None:
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()  # cancels lead_forever, and leading() with it
                    return

        tg.start_soon(stop_on_signal)
        await lead_forever(elector)


# --8<-- [end:shutdown]


# --8<-- [start:lead-until-stopped]
async def lead_until_stopped(elector: LeaderElector, stop: anyio.Event) -> None:
    async def work(leadership: Leadership) -> None:
        try:
            while True:
                await reconcile(leadership)
        finally:
            # On stop the work is cancelled while the lease is still held and renewed:
            # clean-up that must finish as leader goes in a shielded scope.
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.1)  # e.g. flush, or wait for a child process to exit

    async def term_ended(leadership: Leadership) -> None:
        print(f"term {leadership.token.transitions} ended, released: {leadership.released}")

    # Campaigns, works, campaigns again after a loss; set `stop` to end it all.
    await elector.lead(work, stop=stop, on_term_end=term_ended)


# --8<-- [end:lead-until-stopped]


# --8<-- [start:bounded-campaign]
async def lead_or_give_up(elector: LeaderElector) -> None:
    with anyio.fail_after(60) as campaign:  # TimeoutError if not leading within a minute
        async with elector.leading() as leadership:
            campaign.deadline = math.inf  # leading now: the work itself is not bounded
            await reconcile(leadership)


# --8<-- [end:bounded-campaign]


# --8<-- [start:observe]
async def report_leaders(elector: LeaderElector) -> None:
    async with elector.observe() as leaders:
        async for leader in leaders:  # the current holder first, then every change
            print(f"observed leader: {leader}")  # None: the lease is free or absent


# --8<-- [end:observe]


async def main() -> None:
    """Run each pattern against an in-process server, one after the other."""
    async with LeaseApiServer() as server:
        server.add_user("demo")  # its own user, so that a fault can cut it off alone
        config = server.kubeconfig("demo")
        async with await LeaseLock.connect("patterns", kubeconfig=config) as lock:
            elector = LeaderElector(
                lock, identity="demo", lease_duration=2.0, renew_deadline=1.5, retry_period=0.2
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(report_leaders, elector)
                await lead(elector)
                await server.wait_for_lease("default", "patterns", _held_by(""))
                tg.cancel_scope.cancel()

            async with elector.leading() as leadership:
                apply_change(leadership, "scale to 3")

            await run_with_callbacks(elector)
            await lead_or_give_up(elector)

            # Cut the candidate off from the API server once it leads: the renewals hang,
            # and the renew deadline cancels the work.
            async with anyio.create_task_group() as tg:
                tg.start_soon(lead_once, elector)
                await server.wait_for_lease("default", "patterns", _held_by("demo"))
                with server.faults.add(partition("demo")):
                    await anyio.sleep(2 * 1.5)  # the renew deadline, then the bounded release

            # Stop a leader: its work steps down, then the lease is released.
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lead_until_stopped, elector, stop)
                await server.wait_for_lease("default", "patterns", _term(5))
                stop.set()

            # Shut down with SIGTERM while leading: the lease is released on the way out.
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve, elector)
                while not elector.is_leader:  # noqa: ASYNC110  (serve() offers no event to wait on)
                    await anyio.sleep(0.01)
                os.kill(os.getpid(), signal.SIGTERM)
            released = await server.wait_for_lease("default", "patterns", _held_by(""), timeout=5)
            assert released is not None
            print(f"after SIGTERM the holder is {released['spec']['holderIdentity']!r}")


def _held_by(identity: str) -> Callable[[Mapping[str, Any] | None], bool]:
    def check(lease: Mapping[str, Any] | None) -> bool:
        return lease is not None and lease["spec"].get("holderIdentity") == identity

    return check


def _term(transitions: int) -> Callable[[Mapping[str, Any] | None], bool]:
    def check(lease: Mapping[str, Any] | None) -> bool:
        return lease is not None and lease["spec"].get("leaseTransitions") == transitions

    return check


if __name__ == "__main__":
    anyio.run(main)
