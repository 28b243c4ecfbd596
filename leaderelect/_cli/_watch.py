"""``leaderelect watch``: follow a Lease, one line per change of holder or term.

The Lease is followed with the library's own watch loop (one GET, then a watch resumed from
the last resourceVersion: no polling); with ``-v`` there is also a line per renewal.
"""

from __future__ import annotations

import argparse
import json
import signal
from functools import partial
from typing import TYPE_CHECKING, final

import anyio

from .. import Clock, LeaderElectionError, LeaseRecord, LoopClock, Timings
from ._options import connection_options, lease_target
from ._output import Write, err, out
from ._status import REQUEST_TIMEOUT, format_time
from ._target import LeaseSnapshot, LeaseTarget, follow_lease, open_lock

if TYPE_CHECKING:
    from ._options import Commands

__all__ = ["add_parser", "watch_lease"]


def add_parser(commands: Commands) -> None:
    """Add ``leaderelect watch``."""
    watch = commands.add_parser(
        "watch",
        parents=[connection_options()],
        help="follow a Lease: a line per change of holder (-v: and per renewal)",
        description=(
            "Show the Lease's holder, then one line per change of holder or term as a watch "
            "reports it (no polling), until Ctrl-C."
        ),
        epilog="exit status: 130 after Ctrl-C, 143 after SIGTERM; 1 when the Lease cannot "
        "be read; 2 for bad arguments",
    )
    watch.add_argument("name", metavar="NAME", help="the Lease's name")
    watch.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="also show each renewal, and log leaderelect's INFO records to stderr (-vv: DEBUG)",
    )
    watch.set_defaults(handler=_main, command_parser=watch)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    target = lease_target(args.command_parser, args, args.name)
    try:
        return anyio.run(partial(watch_lease, target, renewals=args.verbose > 0, write=out))
    except LeaderElectionError as exc:
        err(f"leaderelect watch: error: {exc}")
        return 1


@final
class _ChangePrinter:
    """Fed every observation of the Lease; writes one line per change worth a line."""

    def __init__(self, lease: str, renewals: bool, write: Write, clock: Clock) -> None:
        self._lease = lease
        self._renewals = renewals
        self._write = write
        self._clock = clock
        self._known = False
        self._last: LeaseSnapshot | None = None

    def observe(self, snapshot: LeaseSnapshot | None) -> None:
        text = self._describe(snapshot)
        self._known = True
        self._last = snapshot
        if text is not None:
            stamp = self._clock.utcnow().astimezone().strftime("%H:%M:%S")
            self._write(f"{stamp}  {self._lease}  {text}")

    def _describe(self, snapshot: LeaseSnapshot | None) -> str | None:
        before = self._last
        if not self._known:
            if snapshot is None:
                return "does not exist (yet); watching for it"
            return _term(snapshot.record)
        if snapshot is None:
            return None if before is None else "deleted"
        after = snapshot.record
        if before is None:
            return f"created: {_term(after)}"
        if before.uid != snapshot.uid:
            return f"replaced (new uid): {_term(after)}"
        old = before.record
        if old == after:
            return None
        if old.holder_identity != after.holder_identity:
            if after.is_free:
                return f"released by {old.holder_identity} (transitions {after.lease_transitions})"
            was = "free" if old.is_free else f"held by {old.holder_identity}"
            return (
                f"new holder {after.holder_identity}, transitions {after.lease_transitions} "
                f"(was {was})"
            )
        if old.lease_transitions != after.lease_transitions:
            return f"{_term(after)} (a new term, transitions were {old.lease_transitions})"
        if not self._renewals:
            return None
        if old.renew_time != after.renew_time and not after.is_free:
            renewed = format_time(after.renew_time)
            return f"renewed by {after.holder_identity} (renewTime {renewed}, holder's clock)"
        return f"updated: {json.dumps(snapshot.obj.get('spec'), sort_keys=True)}"


def _term(record: LeaseRecord) -> str:
    if record.is_free:
        return f"free, transitions {record.lease_transitions}"
    return f"holder {record.holder_identity}, transitions {record.lease_transitions}"


async def watch_lease(
    target: LeaseTarget,
    *,
    renewals: bool,
    write: Write,
) -> int:
    """Write the Lease's current state, then a line per change, until SIGINT or SIGTERM.

    Returns:
        ``128 + signal``: 130 after Ctrl-C, 143 after SIGTERM.

    Raises:
        ConfigError: the kubeconfig or service account cannot be loaded.
        LeaseError: the first read failed (``LeaseForbidden`` names the missing RBAC verb).
    """
    clock = LoopClock()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with await open_lock(target) as lock:
            # The first read is ours, so that a missing permission is an error, not a retry.
            snapshot = await lock.get(timeout=REQUEST_TIMEOUT)
            printer = _ChangePrinter(lock.lease, renewals, write, clock)
            printer.observe(snapshot)
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(follow_lease, lock, printer.observe, timings=Timings()))
                async for signum in signals:
                    tg.cancel_scope.cancel()
                    return 128 + signum
    return 128 + signal.SIGINT  # pragma: no cover - the receiver never ends by itself
