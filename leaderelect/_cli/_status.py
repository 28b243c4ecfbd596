"""``leaderelect status``: read a Lease once, and show what a client can tell from it.

``acquireTime`` and ``renewTime`` are written by the holder, from the holder's wall clock.
The ages and the expiry shown here compare them with *this* machine's clock, so clock skew
between the two shows up in them. Followers never make that comparison: they take a lease
over ``leaseDurationSeconds`` after they last *saw* it change, by their own monotonic clock.
The output says so wherever it shows such a number.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import anyio
import kubernetes_asyncio.client

from .. import (
    Clock,
    LeaderElectionError,
    LeaseError,
    LeaseLock,
    LeaseNotFound,
    LeaseRecord,
    LoopClock,
)
from .._problems import is_persistent
from .._record import format_micro_time
from ._options import connection_options, lease_target, verbosity_options
from ._output import Write, err, out
from ._target import LeaseSnapshot, LeaseTarget, open_lock

if TYPE_CHECKING:
    from ._options import Commands

__all__ = [
    "EXIT_MISCONFIGURED",
    "EXIT_UNREAD",
    "REQUEST_TIMEOUT",
    "LeaseStatus",
    "add_parser",
    "format_seconds",
    "format_time",
    "read_status",
    "show_status",
]

REQUEST_TIMEOUT: Final = 10.0
"""Seconds a single read may take."""

EXIT_UNREAD: Final = 1
"""The exit status when the Lease does not exist (in a namespace that does), the API server
cannot be reached (a timeout, 429, 5xx), or the kubeconfig cannot be loaded."""

EXIT_MISCONFIGURED: Final = 3
"""The exit status when the API server answered that the setup is wrong: the credentials
cannot read the Lease (401, or 403 naming the missing RBAC verb), its namespace does not
exist, or the request is rejected (400, 422)."""

_CLOCK_NOTE = (
    "note: acquire and renew times are the holder's clock; the ages and the expiry compare\n"
    "them with this machine's. Followers do not: they take over leaseDurationSeconds after\n"
    "they last see the lease change."
)


def add_parser(commands: Commands) -> None:
    """Add ``leaderelect status``."""
    status = commands.add_parser(
        "status",
        parents=[verbosity_options(), connection_options()],
        help="show who holds a Lease, since when, and when it expires",
        description=(
            "Read the Lease once and show its holder, the age of the holder's term, when it "
            "expires (renewTime + leaseDurationSeconds, by the holder's clock), its "
            "transitions and fencing token, and its acquire and renew times."
        ),
        epilog=f"exit status: 0 when the Lease was read; {EXIT_UNREAD} when it does not exist, the "
        "API server cannot be reached or the kubeconfig cannot be loaded; "
        f"{EXIT_MISCONFIGURED} when the credentials may not read it (401, 403) or its "
        "namespace does not exist; 2 for bad arguments",
    )
    status.add_argument("name", metavar="NAME", help="the Lease's name")
    status.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default %(default)s)",
    )
    status.set_defaults(handler=_main, command_parser=status)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    target = lease_target(args.command_parser, args, args.name)
    try:
        anyio.run(partial(show_status, target, as_json=args.output == "json", write=out))
    except LeaderElectionError as exc:
        err(f"leaderelect status: error: {exc}")
        return exit_status(exc)
    return 0


def exit_status(exc: LeaderElectionError) -> int:
    """The exit status for a failed read: :data:`EXIT_MISCONFIGURED` or :data:`EXIT_UNREAD`."""
    if isinstance(exc, LeaseError) and not isinstance(exc, _LeaseAbsent) and is_persistent(exc):
        return EXIT_MISCONFIGURED
    return EXIT_UNREAD


class _LeaseAbsent(LeaseNotFound):
    """The Lease does not exist, in a namespace that does (or that we cannot tell about)."""


def format_seconds(seconds: float) -> str:
    """A short, human duration: ``12.9s``, ``4m05s``, ``2h07m``, ``3d04h``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """One read of a Lease, and what a client can tell from it at ``observed_at``."""

    lease: str
    """``namespace/name``."""
    snapshot: LeaseSnapshot
    """The Lease as read."""
    observed_at: datetime
    """This machine's UTC wall time when the Lease was read."""

    @property
    def record(self) -> LeaseRecord:
        """The leader-election record."""
        return self.snapshot.record

    @property
    def holder(self) -> str | None:
        """The holder, or ``None`` when the lease is free."""
        return None if self.record.is_free else self.record.holder_identity

    @property
    def term_age(self) -> float | None:
        """Seconds since ``acquireTime`` (holder's clock against ours), while held."""
        if self.holder is None or self.record.acquire_time is None:
            return None
        return (self.observed_at - self.record.acquire_time).total_seconds()

    @property
    def renewed_ago(self) -> float | None:
        """Seconds since ``renewTime`` (holder's clock against ours)."""
        if self.record.renew_time is None:
            return None
        return (self.observed_at - self.record.renew_time).total_seconds()

    @property
    def expires_in(self) -> float | None:
        """``renewTime + leaseDurationSeconds`` minus now, by the holder's clock; negative once
        expired. ``None`` while free, or when either field is missing."""
        duration = self.record.lease_duration_seconds
        renewed = self.renewed_ago
        if self.holder is None or renewed is None or duration is None:
            return None
        return duration - renewed

    @property
    def fencing_token(self) -> str | None:
        """The holder's term as ``<uid>:<leaseTransitions>`` (``str(FencingToken)``); ``None``
        while the lease is free."""
        if self.holder is None:
            return None
        return f"{self.snapshot.uid}:{self.record.lease_transitions}"

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON-ready dict (``-o json``)."""
        record = self.record
        namespace, _, name = self.lease.partition("/")
        return {
            "lease": self.lease,
            "namespace": namespace,
            "name": name,
            "holder": self.holder,
            "leaseTransitions": record.lease_transitions,
            "fencingToken": self.fencing_token,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "acquireTime": format_time(record.acquire_time),
            "renewTime": format_time(record.renew_time),
            "observedAt": format_time(self.observed_at),
            "termAgeSeconds": _rounded(self.term_age),
            "renewedSecondsAgo": _rounded(self.renewed_ago),
            "expiresInSeconds": _rounded(self.expires_in),
            "clock": "acquireTime and renewTime are the holder's clock; the *Seconds fields "
            "compare them with observedAt, this machine's clock",
            "uid": self.snapshot.uid,
            "resourceVersion": self.snapshot.resource_version,
            "problems": list(record.problems),
        }

    def to_text(self) -> list[str]:
        """The status as aligned lines (the default output)."""
        record = self.record
        rows: list[tuple[str, str]] = [("lease", self.lease)]
        if self.holder is None:
            rows.append(("holder", "(none: the lease is free and may be acquired at once)"))
        else:
            rows.append(("holder", self.holder))
        age = self.term_age
        rows.append(("term age", "-" if age is None else f"{format_seconds(age)}"))
        expires = self.expires_in
        if expires is None:
            rows.append(("expires in", "-"))
        else:
            when = (
                format_seconds(expires)
                if expires >= 0
                else f"expired {format_seconds(expires)} ago"
            )
            rows.append(
                (
                    "expires in",
                    f"{when} (renewTime + leaseDurationSeconds "
                    f"{record.lease_duration_seconds}s, by the holder's clock)",
                )
            )
        token = self.fencing_token
        transitions = str(record.lease_transitions)
        rows.append(("transitions", transitions + (f" (fencing token {token})" if token else "")))
        rows.append(("acquire time", format_time(record.acquire_time) or "-"))
        renewed = self.renewed_ago
        renew_time = format_time(record.renew_time) or "-"
        if renewed is not None:
            renew_time += f" ({format_seconds(renewed)} {'ago' if renewed >= 0 else 'ahead'})"
        rows.append(("renew time", renew_time))
        if record.problems:
            rows.append(("problems", "; ".join(record.problems)))
        width = max(len(key) for key, _ in rows) + 2
        return [f"{key:<{width}}{value}" for key, value in rows] + _CLOCK_NOTE.splitlines()


def format_time(moment: datetime | None) -> str | None:
    """``moment`` as the API writes a MicroTime, or ``None``."""
    return None if moment is None else format_micro_time(moment)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


async def read_status(target: LeaseTarget, *, clock: Clock | None = None) -> LeaseStatus:
    """Read the Lease once.

    A read of a Lease in a namespace that does not exist is a plain "not found" to
    kube-apiserver; when the Lease is missing, the namespace is read too (with the same
    credentials, which may not be allowed to), so that the error says which one is.

    Raises:
        ConfigError: the kubeconfig or service account cannot be loaded.
        LeaseNotFound: the Lease (or its namespace) does not exist.
        LeaseError: the read failed (``LeaseForbidden`` names the missing RBAC verb).
    """
    clock = clock if clock is not None else LoopClock()
    async with await open_lock(target) as lock:
        snapshot = await lock.get(timeout=REQUEST_TIMEOUT)
        if snapshot is None:
            if await _namespace_exists(lock) is False:
                raise LeaseNotFound(
                    f'get lease {lock.lease}: namespace "{lock.namespace}" does not exist',
                    lease=lock.lease,
                    verb="get",
                    status=404,
                    reason="NotFound",
                )
            raise _LeaseAbsent(
                f"lease {lock.lease} not found: there is no Lease named {lock.name!r} in "
                f"namespace {lock.namespace!r}",
                lease=lock.lease,
                verb="get",
                status=404,
            )
        return LeaseStatus(lock.lease, snapshot, clock.utcnow())


async def _namespace_exists(lock: LeaseLock) -> bool | None:
    """Whether the Lease's namespace exists; ``None`` when the server would not say (reading
    namespaces is not allowed, or the read failed)."""
    api = kubernetes_asyncio.client.CoreV1Api(lock._api_client)
    try:
        with anyio.fail_after(REQUEST_TIMEOUT):
            response: Any = await api.read_namespace(
                lock.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
            try:
                await response.read()
            finally:
                response.release()
    except Exception:  # any failure only means that we cannot tell
        return None
    if response.status == 404:
        return False
    return True if 200 <= response.status < 300 else None


async def show_status(target: LeaseTarget, *, as_json: bool, write: Write) -> None:
    """Read the Lease and write its status, as text or as one JSON document.

    Raises:
        ConfigError, LeaseError: as :func:`read_status`.
    """
    status = await read_status(target)
    if as_json:
        write(json.dumps(status.to_json(), indent=2))
    else:
        for line in status.to_text():
            write(line)
