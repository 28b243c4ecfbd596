"""Helpers for the deployment tests: child processes, terms and write rates, and the figures.

The deployment tests run leaderelect as users deploy it (uvicorn worker processes, several
processes with one identity, an application's watches on the elector's ApiClient) and judge
the run from what really happened: the children's work log (``_worklog.py``) and, on the
embedded server, its write history.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from _worklog import LEASE_DURATION, WORK_LOG, Interval, WorkLog
from anyio.abc import Process

from leaderelect.testing import WriteRecord

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Term:
    """One term as the server's write history shows it: the write that began it."""

    time: float
    holder: str
    transitions: int


def terms_in(writes: Sequence[WriteRecord], namespace: str, name: str) -> list[Term]:
    """Every term of the Lease ``namespace/name`` in ``writes``: each write that set a holder
    and a ``leaseTransitions`` (or a uid) the Lease did not have before."""
    terms: list[Term] = []
    for write in writes:
        if (write.namespace, write.name) != (namespace, name) or write.lease_after is None:
            continue
        if not write.holder_after:
            continue  # a release
        after = _term_key(write.lease_after)
        before = None if write.lease_before is None else _term_key(write.lease_before)
        if before != after or not write.holder_before:
            terms.append(Term(write.time, write.holder_after, after[1]))
    return terms


def _term_key(lease: Any) -> tuple[str, int]:
    return (lease["metadata"]["uid"], int(lease["spec"].get("leaseTransitions", 0)))


def writes_between(
    writes: Sequence[WriteRecord], namespace: str, name: str, start: float, end: float
) -> list[WriteRecord]:
    """The writes of ``namespace/name`` committed in ``[start, end)``."""
    return [
        w for w in writes if (w.namespace, w.name) == (namespace, name) and start <= w.time < end
    ]


def most_terms_allowed(window: float) -> int:
    """At most one term per lease duration: the most terms a window of ``window`` s may hold."""
    return 1 + int(window // LEASE_DURATION)


@dataclass
class Figures:
    """What a run measured; printed with every assertion so a failure shows the whole run."""

    window: float
    terms: int
    overlaps: int
    longest_overlap: float
    writes: int | None = None
    identities: tuple[str, ...] = ()
    details: str = ""

    @property
    def terms_per_second(self) -> float:
        return self.terms / self.window

    @property
    def writes_per_second(self) -> float | None:
        return None if self.writes is None else self.writes / self.window

    def __str__(self) -> str:
        parts = [
            f"{self.terms} terms in {self.window:.1f} s ({self.terms_per_second:.1f}/s, "
            f"at most {most_terms_allowed(self.window)} allowed)",
            f"{self.overlaps} overlapping pairs of work intervals"
            + (f" (longest {self.longest_overlap:.3f} s)" if self.overlaps else ""),
        ]
        if self.writes is not None:
            parts.append(f"{self.writes} writes ({self.writes_per_second:.1f}/s)")
        if self.identities:
            parts.append(f"identities {list(self.identities)}")
        if self.details:
            parts.append(self.details)
        return "; ".join(parts)


def figures(log: WorkLog, *, window: float, terms: int, writes: int | None = None) -> Figures:
    overlaps = log.overlaps()
    return Figures(
        window=window,
        terms=terms,
        overlaps=len(overlaps),
        longest_overlap=max((o[2] for o in overlaps), default=0.0),
        writes=writes,
        identities=tuple(log.identities.values()),
    )


def tokens_started(intervals: Sequence[Interval]) -> set[str]:
    """The distinct terms in which work started (one fencing token per term)."""
    return {i.token for i in intervals}


# -- child processes ------------------------------------------------------------------------


def child_environment(kubeconfig: Path, work_log: Path, **extra: str) -> dict[str, str]:
    """The environment of a child: ours, plus its kubeconfig and work log."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        WORK_LOG: str(work_log),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    env.pop("POD_NAME", None)
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def child(
    command: Sequence[str], env: dict[str, str], stderr: Path | None = None
) -> AsyncIterator[Process]:
    """Run ``command``; on exit, stop it as Kubernetes stops a container (SIGTERM, then SIGKILL).

    Its stderr goes to the file ``stderr`` (appended), else to ours.
    """
    with contextlib.ExitStack() as files:
        errors = None if stderr is None else files.enter_context(stderr.open("ab"))
        process = await anyio.open_process(
            list(command),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=None,
            stderr=errors,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            await stop(process)
            with anyio.CancelScope(shield=True):
                await process.aclose()  # its transport too, before the event loop closes


async def stop(process: Process, grace: float = 15.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the process group."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(grace):
            await process.wait()
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with anyio.CancelScope(shield=True):
            await process.wait()


async def observe(path: Path, *, until_work: float, observe: float) -> float:
    """Wait for leader work to start (at most ``until_work`` s), then for ``observe`` s more.

    Returns the end of the observation, on the event loop's clock (``time.monotonic()``, the
    clock of the work log and of the embedded server's write history). No work at all is not
    a failure here: the test's assertions report it with the figures of the run.
    """
    started: float | None = None
    with anyio.move_on_after(until_work):
        while started is None:
            starts = [i.start for i in WorkLog.read(path).intervals]
            if starts:
                started = min(starts)
            else:
                await anyio.sleep(0.05)
    begin = anyio.current_time() if started is None else started
    await anyio.sleep(begin + observe - anyio.current_time())
    return anyio.current_time()


PYTHON = sys.executable
