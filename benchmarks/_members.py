"""The orchestrator's side of the candidate processes: start them, read them, stop them.

Every process writes what it does as events; they all land on one :class:`Bus`, on one
clock: ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide on Linux, so the stamps that our
Python candidates take in their own processes compare directly). client-go's ``le-example``
stamps its klog lines with the wall clock; :func:`wall_to_monotonic` moves them onto the same
timeline with an offset taken once (a few microseconds of drift over a run).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskGroup

REPO_ROOT = Path(__file__).resolve().parent.parent
KILL_WAIT = 5.0
"""Seconds to wait for a process to die after SIGKILL."""
_STDERR_TAIL = 40

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a candidate did, on the orchestrator's monotonic clock."""

    at: float
    who: str
    kind: str
    detail: str = ""


class Bus:
    """Every candidate's events, in arrival order; waiters are woken at each one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = anyio.Event()

    def add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def mark(self) -> int:
        """A position; :meth:`find` from it sees only later events."""
        return len(self.events)

    def find(
        self,
        since: int,
        kind: str,
        *,
        who: Callable[[str], bool] = lambda _: True,
    ) -> Event | None:
        for event in self.events[since:]:
            if event.kind == kind and who(event.who):
                return event
        return None

    async def wait_for(self, predicate: Callable[[], T | None], within: float) -> T | None:
        """Wait (at most ``within`` seconds) until ``predicate()`` is not None; return it."""
        with anyio.move_on_after(within):
            while True:
                found = predicate()
                if found is not None:
                    return found
                await self._changed.wait()
        return None

    async def wait_event(
        self,
        since: int,
        kind: str,
        within: float,
        *,
        who: Callable[[str], bool] = lambda _: True,
    ) -> Event | None:
        return await self.wait_for(lambda: self.find(since, kind, who=who), within)


_WALL_OFFSET = time.time() - time.monotonic()


def wall_to_monotonic(wall: float) -> float:
    """A wall-clock time (seconds since the epoch) on this process's monotonic clock."""
    return wall - _WALL_OFFSET


# --------------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    cpu_seconds: float
    """user + system CPU time so far."""
    peak_rss_mb: float
    """VmHWM: the highest resident set size so far."""
    rss_mb: float


def proc_stat(pid: int) -> ProcStat | None:
    """CPU time and memory of a live process, from /proc (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    memory = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            memory[key] = int(value.split()[0]) / 1024
    return ProcStat(cpu, memory.get("VmHWM", math.nan), memory.get("VmRSS", math.nan))


# --------------------------------------------------------------------------------------------
# Members
# --------------------------------------------------------------------------------------------


class Member:
    """One candidate process and the identities of the electors in it."""

    label: str
    identities: tuple[str, ...]
    kind: str
    """``python`` or ``go``."""

    def __init__(self, bus: Bus, label: str, identities: Sequence[str]) -> None:
        self.bus = bus
        self.label = label
        self.identities = tuple(identities)
        self.process: Process | None = None
        self.exited = anyio.Event()
        self.killed_at: float | None = None
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and not self.exited.is_set()

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Start the process, read it until it exits; kill it if cancelled first."""
        process = await anyio.open_process(
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
            cwd=str(REPO_ROOT),
            start_new_session=True,  # a terminal's Ctrl-C reaches only the orchestrator
        )
        self.process = process
        try:
            task_status.started()
            async with anyio.create_task_group() as readers:
                readers.start_soon(self._read, process.stdout, self.stdout_line)
                readers.start_soon(self._read, process.stderr, self.stderr_line)
            self.returncode = await process.wait()
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    with anyio.move_on_after(KILL_WAIT):
                        await process.wait()
                with anyio.move_on_after(KILL_WAIT):
                    await process.aclose()
                self.exited.set()

    @staticmethod
    async def _read(stream: ByteReceiveStream | None, handle: Callable[[str], None]) -> None:
        if stream is None:
            return
        pending = b""
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in stream:
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    handle(raw.decode("utf-8", "replace"))
        if pending:
            handle(pending.decode("utf-8", "replace"))

    def stdout_line(self, line: str) -> None:
        pass

    def stderr_line(self, line: str) -> None:
        self.stderr_tail.append(line)

    def kill(self) -> float:
        """SIGKILL now; returns when it was sent (monotonic)."""
        at = time.monotonic()
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            self.killed_at = at
        return at

    async def stop(self, grace: float) -> None:
        """Ask the process to stop, wait up to ``grace`` seconds, then kill it."""
        raise NotImplementedError

    def stat(self) -> ProcStat | None:
        return proc_stat(self.pid) if self.running else None

    def describe_failure(self) -> str:
        tail = "\n".join(f"      {line}" for line in list(self.stderr_tail)[-12:])
        code = self.returncode if self.returncode is not None else "running"
        return f"{self.label} (exit {code}); last stderr lines:\n{tail}"


class PythonMember(Member):
    """``python -m benchmarks._candidate``: our electors or kubernetes_asyncio's."""

    kind = "python"

    def __init__(
        self,
        bus: Bus,
        label: str,
        *,
        impl: str,
        lease: str,
        namespace: str,
        timings: tuple[float, float, float],
        electors: Sequence[tuple[str, Path]],
    ) -> None:
        super().__init__(bus, label, [identity for identity, _ in electors])
        self.impl = impl
        self.lease = lease
        self.namespace = namespace
        self.timings = timings
        self.electors = list(electors)
        self._counts: dict[str, dict[str, int]] | None = None
        self._counted = anyio.Event()

    def argv(self) -> list[str]:
        duration, deadline, period = self.timings
        argv = [
            sys.executable,
            "-m",
            "benchmarks._candidate",
            f"--impl={self.impl}",
            f"--lease={self.lease}",
            f"--namespace={self.namespace}",
            f"--lease-duration={duration!r}",
            f"--renew-deadline={deadline!r}",
            f"--retry-period={period!r}",
        ]
        argv += [f"--elector={identity}={path}" for identity, path in self.electors]
        return argv

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
        return env

    def stdout_line(self, line: str) -> None:
        if line.startswith("EV "):
            parts = line.split(" ", 4)
            if len(parts) >= 4:
                detail = parts[4] if len(parts) == 5 else ""
                self.bus.add(Event(float(parts[1]), parts[2], parts[3], detail))
        elif line.startswith("COUNTS "):
            self._counts = json.loads(line[len("COUNTS ") :])
            self._counted.set()
            self._counted = anyio.Event()

    async def send(self, command: str) -> None:
        if self.process is None or self.process.stdin is None or not self.running:
            return
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.process.stdin.send(command.encode() + b"\n")

    async def client_counts(self, within: float = 5.0) -> dict[str, dict[str, int]] | None:
        """The requests each elector has sent so far, counted in the client."""
        counted = self._counted
        await self.send("report")
        with anyio.move_on_after(within):
            await counted.wait()
            return self._counts
        return None

    async def stop(self, grace: float) -> None:
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.process.stdin.aclose()
        with anyio.move_on_after(grace):
            await self.exited.wait()
        if not self.exited.is_set():
            self.kill()
            with anyio.move_on_after(KILL_WAIT):
                await self.exited.wait()


# --------------------------------------------------------------------------------------------
# client-go's le-example
# --------------------------------------------------------------------------------------------

# I1126 20:24:25.825152   12223 round_trippers.go:632] "Response" verb="GET" url=... status=...
_KLOG = re.compile(
    r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})\s+\d+\s+[^\]]*\]\s?(.*)$"
)
_RESPONSE = re.compile(r'"Response" verb="(\w+)" url="([^"]*)"')
_GO_EVENTS: Sequence[tuple[str, re.Pattern[str]]] = [
    ("start", re.compile(r"Controller loop", re.I)),
    ("end", re.compile(r"Received termination", re.I)),
    ("renewed", re.compile(r"Successfully renewed lease", re.I)),
    ("acquired", re.compile(r"Successfully acquired lease", re.I)),
    ("stopped", re.compile(r"leader lost:", re.I)),
    ("renew-failed", re.compile(r"Failed to renew lease", re.I)),
]
_GO_VERBS = {"GET": "get", "PUT": "update", "POST": "create", "PATCH": "patch", "DELETE": "delete"}


def klog_time(month: int, day: int, clock: Sequence[int]) -> float:
    """A klog header's local time as seconds since the epoch (this year, or last at New Year)."""
    now = datetime.now()
    year = now.year - 1 if (month, day) > (now.month, now.day) and month == 12 else now.year
    hour, minute, second, micro = clock
    return datetime(year, month, day, hour, minute, second, micro).timestamp()


def go_verb(verb: str, url: str) -> str:
    if verb == "GET" and "watch=" in url:
        return "watch"
    return _GO_VERBS.get(verb, verb.lower())


class GoMember(Member):
    """client-go's ``le-example`` (``-v=6``: every request logged), one elector."""

    kind = "go"

    def __init__(
        self,
        bus: Bus,
        label: str,
        *,
        binary: Path,
        identity: str,
        lease: str,
        namespace: str,
        timings: tuple[float, float, float],
        kubeconfig: Path,
    ) -> None:
        super().__init__(bus, label, [identity])
        self.binary = binary
        self.identity = identity
        self.lease = lease
        self.namespace = namespace
        self.timings = timings
        self.kubeconfig = kubeconfig
        self.requests: list[tuple[float, str]] = []
        """(monotonic time, verb) of every request it logged."""
        self._first_read = False

    def argv(self) -> list[str]:
        duration, deadline, period = self.timings
        return [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--lease-lock-name={self.lease}",
            f"--lease-lock-namespace={self.namespace}",
            f"--id={self.identity}",
            f"--lease-duration={duration * 1000:g}ms",
            f"--renew-deadline={deadline * 1000:g}ms",
            f"--retry-period={period * 1000:g}ms",
            "-v=6",
        ]

    def stderr_line(self, line: str) -> None:
        header = _KLOG.match(line)
        if header is None:
            self.stderr_tail.append(line)
            return
        month, day, hour, minute, second, micro = (int(g) for g in header.groups()[:6])
        message = header.group(7)
        at = wall_to_monotonic(klog_time(month, day, (hour, minute, second, micro)))
        response = _RESPONSE.search(message)
        if response is not None:
            self.requests.append((at, go_verb(response.group(1), response.group(2))))
            if not self._first_read:
                self._first_read = True
                self.bus.add(Event(at, self.identity, "following"))
            return
        if "Feature gate" in message:
            return
        self.stderr_tail.append(line)
        for kind, pattern in _GO_EVENTS:
            if pattern.search(message):
                self.bus.add(Event(at, self.identity, kind, message[:120]))
                break

    def count_requests(self, start: float, end: float) -> Counter[str]:
        return Counter(verb for at, verb in self.requests if start <= at < end)

    def terminate(self) -> float:
        at = time.monotonic()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return at

    async def stop(self, grace: float) -> None:
        self.terminate()
        with anyio.move_on_after(grace):
            await self.exited.wait()
        if not self.exited.is_set():
            self.kill()
            with anyio.move_on_after(KILL_WAIT):
                await self.exited.wait()


async def start_member(tg: TaskGroup, member: Member) -> Member:
    """Start ``member``'s process as a task of ``tg``."""
    await tg.start(member.run)
    return member
