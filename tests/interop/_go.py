"""client-go as a candidate: ``le-example`` run as a subprocess, its log read as events.

``le-example`` is client-go's leader-election example (``../shared/kube-apiserver/bin``) with
timing flags. A :class:`GoCandidate` starts it for one Lease and identity, reads its klog lines
from stderr as they arrive and turns the ones that matter into :class:`GoEvent` objects, timestamped
with the test's event-loop clock at arrival (``anyio.current_time()``, the clock our Python
candidates record their work on), so both sides land on one timeline. It is stopped with
SIGTERM (graceful: client-go's ``ReleaseOnCancel`` writes holder ``""``, 1 s, then it exits) or
SIGKILL (no release: the lease expires).

What the example logs, and what each line means here:

=============================================  ===============================================
klog message                                   event
=============================================  ===============================================
``Attempting to acquire leader lease``         ``ATTEMPTING`` (the campaign starts)
``Lease is held by and has not yet expired``   ``POLL``: a follower's poll found another holder
                                               (``-v=4`` and up; ``detail`` is the holder)
``Successfully acquired lease``                ``ACQUIRED``: it leads from here
``Controller loop...``                         ``WORKING``: ``OnStartedLeading`` ran
``new leader elected: ID``                     ``NEW_LEADER`` (another holder seen; ``detail``)
``Received termination, signaling shutdown``   ``TERMINATING``: SIGTERM; its context is cancelled
``leader lost: ID``                            ``STOPPED``: ``OnStoppedLeading`` (also logged by a
                                               follower that never led), just before it exits
``Failed to renew lease``                      ``RENEW_FAILED``
=============================================  ===============================================

plus two events of our own: ``SIGNALLED`` (we sent a signal; ``detail`` names it) and ``EXITED``
(its stderr closed and it was reaped; ``detail`` is the exit status).

A Go term runs from ``ACQUIRED`` until the first of ``TERMINATING`` (client-go's contract for
``ReleaseOnCancel``: the guarded work has finished when the context is cancelled, and the
release is written only afterwards), ``STOPPED`` or ``EXITED`` (SIGKILL).
"""

from __future__ import annotations

import enum
import math
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from _kube import env_flag, shared_dir
from anyio.abc import Process, TaskGroup

__all__ = [
    "LE_EXAMPLE_ENV",
    "REQUIRE_REAL_SERVER",
    "GoCandidate",
    "GoEvent",
    "GoEventKind",
    "GoTerm",
    "GoTimings",
    "le_example_missing",
    "le_example_path",
    "parse_klog_line",
]

REQUIRE_REAL_SERVER = "LEADERELECT_REQUIRE_REAL_SERVER"
LE_EXAMPLE_ENV = "LEADERELECT_LE_EXAMPLE"
"""Overrides where ``le-example`` is (default: ``../shared/kube-apiserver/bin/le-example``)."""


def le_example_path() -> Path:
    override = os.environ.get(LE_EXAMPLE_ENV)
    if override:
        return Path(override)
    return shared_dir() / "kube-apiserver" / "bin" / "le-example"


def le_example_missing() -> str | None:
    """Why client-go's example cannot be run here, or ``None`` when it can."""
    path = le_example_path()
    if not path.is_file():
        return (
            f"client-go's le-example not available: {path} does not exist "
            f"(set up ../shared/kube-apiserver, or point ${LE_EXAMPLE_ENV} at it)"
        )
    if not os.access(path, os.X_OK):
        return f"client-go's le-example not available: {path} is not executable"
    return None


def require_flag_set() -> bool:
    return env_flag(REQUIRE_REAL_SERVER)


# --------------------------------------------------------------------------------------------
# Timings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoTimings:
    """``--lease-duration``, ``--renew-deadline``, ``--retry-period`` of one Go candidate.

    Validated as client-go validates them (``LeaseDuration > RenewDeadline > 1.2 *
    RetryPeriod``), which is looser than ours: a Go candidate may run 6 s / 4 s / 2.5 s.
    """

    lease_duration: float
    renew_deadline: float
    retry_period: float

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > 1.2 * self.retry_period > 0:
            raise ValueError(f"client-go would reject {self}")

    @property
    def record_seconds(self) -> int:
        """The ``leaseDurationSeconds`` client-go writes: whole seconds, truncated."""
        return int(self.lease_duration)

    @property
    def longest_poll(self) -> float:
        """The longest pause between two polls of a Go follower (``JitterUntil``, factor 1.2)."""
        return self.retry_period * 2.2

    def flags(self) -> list[str]:
        return [
            f"--lease-duration={self.lease_duration:g}s",
            f"--renew-deadline={self.renew_deadline:g}s",
            f"--retry-period={self.retry_period:g}s",
        ]


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


class GoEventKind(enum.Enum):
    ATTEMPTING = "attempting"
    POLL = "poll"
    ACQUIRED = "acquired"
    WORKING = "working"
    NEW_LEADER = "new-leader"
    TERMINATING = "terminating"
    STOPPED = "stopped"
    RENEW_FAILED = "renew-failed"
    SIGNALLED = "signalled"
    EXITED = "exited"


@dataclass(frozen=True)
class GoEvent:
    """One thing a Go candidate did, on the test's loop clock."""

    kind: GoEventKind
    at: float
    """``anyio.current_time()`` when the line reached the test process (or we acted)."""
    identity: str
    """The Go candidate's ``--id``."""
    detail: str = ""
    """The holder (``POLL``), the new leader (``NEW_LEADER``), the signal, the exit status."""
    line: str = ""

    def __str__(self) -> str:
        detail = f" {self.detail}" if self.detail else ""
        return f"{self.at:10.3f} go  {self.identity:<8} {self.kind.value}{detail}"


# Matched against the message part of a klog line, case-insensitively: client-go's messages
# changed case and structure over releases ("successfully acquired lease default/x" in the
# README's wording, '"Successfully acquired lease" lock="default/x"' in v1.36).
_PATTERNS: Sequence[tuple[GoEventKind, re.Pattern[str]]] = [
    (GoEventKind.ATTEMPTING, re.compile(r"attempting to acquire leader lease", re.I)),
    (
        GoEventKind.POLL,
        re.compile(
            r'lease is held by and has not yet expired.*holder="([^"]*)"'
            r"|lock is held by (\S+) and has not yet expired",
            re.I,
        ),
    ),
    (GoEventKind.ACQUIRED, re.compile(r"successfully acquired lease", re.I)),
    (GoEventKind.WORKING, re.compile(r"controller loop", re.I)),
    (GoEventKind.NEW_LEADER, re.compile(r"new leader elected: (\S+)", re.I)),
    (GoEventKind.TERMINATING, re.compile(r"received termination", re.I)),
    (GoEventKind.STOPPED, re.compile(r"leader lost: (\S+)", re.I)),
    (GoEventKind.RENEW_FAILED, re.compile(r"failed to renew lease", re.I)),
]

# I1126 19:49:04.879507   22457 leaderelection.go:272] "Successfully acquired lease" ...
_KLOG = re.compile(r"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6}\s+\d+\s+[^\]]*\]\s?(.*)$")


def parse_klog_line(line: str) -> tuple[GoEventKind, str] | None:
    """The event a klog line stands for, as ``(kind, detail)``; ``None`` for other lines."""
    header = _KLOG.match(line)
    message = header.group(1) if header else line
    for kind, pattern in _PATTERNS:
        found = pattern.search(message)
        if found:
            return kind, next((g for g in found.groups() if g is not None), "")
    return None


# --------------------------------------------------------------------------------------------
# The candidate
# --------------------------------------------------------------------------------------------


@dataclass
class GoTerm:
    """The one term a Go candidate led (le-example exits when it stops leading)."""

    identity: str
    start: float
    end: float = math.inf
    ended_by: str = ""


@dataclass
class GoCandidate:
    """One ``le-example`` process campaigning for ``lease`` as ``identity``."""

    binary: Path
    kubeconfig: Path
    lease: str
    namespace: str
    identity: str
    timings: GoTimings
    on_event: Callable[[GoEvent], None] = lambda _: None
    """Called for every event as it is recorded (a fleet uses it to wake its waiters)."""
    verbosity: int = 4
    """klog ``-v``: 4 makes followers log each poll (``POLL``)."""
    events: list[GoEvent] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Every stderr line, for failure messages."""
    started_at: float = math.nan
    _process: Process | None = None
    _exited: anyio.Event = field(default_factory=anyio.Event)

    @property
    def argv(self) -> list[str]:
        return [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--lease-lock-name={self.lease}",
            f"--lease-lock-namespace={self.namespace}",
            f"--id={self.identity}",
            *self.timings.flags(),
            f"--v={self.verbosity}",
        ]

    async def start(self, task_group: TaskGroup) -> None:
        """Start the process, and a task in ``task_group`` that reads its log until it exits."""
        assert self._process is None, f"{self.identity} was already started"
        self._process = await anyio.open_process(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started_at = anyio.current_time()
        task_group.start_soon(self._read, self._process, name=f"le-example {self.identity}")

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, process: Process) -> None:
        stream = process.stderr
        assert stream is not None
        pending = b""
        while True:
            try:
                chunk = await stream.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                break
            at = anyio.current_time()
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                self._line(raw.decode("utf-8", "replace"), at)
        if pending:  # a last line without its newline (SIGKILL)
            self._line(pending.decode("utf-8", "replace"), anyio.current_time())
        status = await process.wait()
        self._record(GoEventKind.EXITED, anyio.current_time(), str(status))
        self._exited.set()

    def _line(self, line: str, at: float) -> None:
        self.lines.append(line)
        parsed = parse_klog_line(line)
        if parsed is not None:
            kind, detail = parsed
            self._record(kind, at, detail, line=line)

    def _record(self, kind: GoEventKind, at: float, detail: str = "", *, line: str = "") -> None:
        event = GoEvent(kind, at, self.identity, detail, line)
        self.events.append(event)
        self.on_event(event)

    # -- acting ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and not self._exited.is_set()

    def terminate(self) -> float:
        """SIGTERM: client-go cancels its context, releases the lease, and exits."""
        return self._signal(signal.SIGTERM)

    def kill(self) -> float:
        """SIGKILL: gone at once, nothing released."""
        return self._signal(signal.SIGKILL)

    def _signal(self, signum: signal.Signals) -> float:
        assert self._process is not None
        at = anyio.current_time()
        if self.running:
            self._process.send_signal(signum)
            self._record(GoEventKind.SIGNALLED, at, signum.name)
        return at

    async def wait_exit(self) -> int:
        """Wait until the process has exited and its log is read; returns the exit status."""
        await self._exited.wait()
        status = self.events[-1].detail
        return int(status)

    async def aclose(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self._process is None:
            return
        if self.running:
            self.kill()
        with anyio.move_on_after(10):
            await self._exited.wait()
        if not self._exited.is_set():  # the reader was cancelled: reap it here
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._process.wait()
        await self._process.aclose()

    # -- reading the record ----------------------------------------------------------------

    def of(self, kind: GoEventKind, *, after: float = -math.inf) -> list[GoEvent]:
        return [e for e in self.events if e.kind is kind and e.at > after]

    def first(self, kind: GoEventKind, *, after: float = -math.inf) -> GoEvent | None:
        return next(iter(self.of(kind, after=after)), None)

    def last(self, kind: GoEventKind) -> GoEvent | None:
        found = self.of(kind)
        return found[-1] if found else None

    def term(self) -> GoTerm | None:
        """When it led, if it did: from ``ACQUIRED`` to the first sign its work stopped."""
        acquired = self.first(GoEventKind.ACQUIRED)
        if acquired is None:
            return None
        term = GoTerm(self.identity, acquired.at)
        for event in self.events:
            if event.at >= acquired.at and event.kind in (
                GoEventKind.TERMINATING,
                GoEventKind.STOPPED,
                GoEventKind.EXITED,
            ):
                term.end = event.at
                term.ended_by = event.kind.value
                break
        return term

    def log_text(self, last: int = 40) -> str:
        lines = [line for line in self.lines if "Feature gate default state" not in line]
        return "\n".join(f"    {line}" for line in lines[-last:])
