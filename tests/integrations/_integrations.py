"""Helpers for the integration tests: ASGI lifespans, aiohttp servers, processes, leases."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
from aiohttp import web
from anyio.abc import Process, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream
from starlette.types import ASGIApp, Message, Scope

from leaderelect import LeaderElector, LeaseLock
from leaderelect.integrations import BackgroundElection
from leaderelect.testing import LeaseApiServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

LEASE_DURATION = 2.0
RENEW_DEADLINE = 1.5
RETRY_PERIOD = 0.2


def fast_elector(lock: LeaseLock, identity: str, **options: Any) -> LeaderElector:
    """An elector with short timings that keep the tests fast."""
    return LeaderElector(
        lock,
        identity=identity,
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY_PERIOD,
        **options,
    )


def held_by(identity: str) -> Callable[[Mapping[str, Any] | None], bool]:
    """A ``wait_for_lease`` predicate: the lease is held by ``identity`` ("" = released)."""

    def check(lease: Mapping[str, Any] | None) -> bool:
        return lease is not None and lease["spec"].get("holderIdentity") == identity

    return check


async def take_over(server: LeaseApiServer, name: str, identity: str, seconds: int = 1) -> None:
    """Write ``identity`` into the lease as another candidate would, claiming ``seconds``."""
    config = server.kubeconfig()
    async with await LeaseLock.from_kubeconfig(name, config_file=config) as lock:
        snapshot = await lock.get(timeout=5)
        assert snapshot is not None
        record = replace(
            snapshot.record,
            holder_identity=identity,
            lease_duration_seconds=seconds,
            lease_transitions=snapshot.record.lease_transitions + 1,
        )
        await lock.update(record, base=snapshot, timeout=5)


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name (examples is no package)."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- servers -------------------------------------------------------------------------------------


async def run_lifespan(
    app: ASGIApp,
    stop: anyio.Event,
    shutdown: list[Message] | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Drive an ASGI app's lifespan as a server does: startup, then shutdown once ``stop`` is set.

    Runs in its own task, like a server's lifespan task, so apps can stop in any order. The
    shutdown must complete, unless ``shutdown`` is given: then the app's answer is put there.
    """
    to_app, app_inbox = anyio.create_memory_object_stream[Message](math.inf)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](math.inf)
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}

    async def lifespan() -> None:
        try:
            await app(scope, app_inbox.receive, app_outbox.send)
        except Exception:
            if shutdown is None:
                raise  # else reported by the app's lifespan.shutdown.failed, as servers log it

    async with anyio.create_task_group() as tg, to_app, app_inbox, app_outbox, from_app:
        tg.start_soon(lifespan)
        await to_app.send({"type": "lifespan.startup"})
        message = await from_app.receive()
        assert message["type"] == "lifespan.startup.complete", message
        task_status.started()
        await stop.wait()
        await to_app.send({"type": "lifespan.shutdown"})
        message = await from_app.receive()
        if shutdown is not None:
            shutdown.append(message)
        else:
            assert message["type"] == "lifespan.shutdown.complete", message


async def hold(
    election: BackgroundElection,
    stop: anyio.Event,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``election`` in a task of its own until ``stop`` is set, as an app's lifespan would."""
    async with election:
        task_status.started()
        await stop.wait()


async def serve_aiohttp(
    app: web.Application,
    stop: anyio.Event,
    *,
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on a free loopback port until ``stop`` is set; reports the base URL.

    Setup and cleanup run in this one task, as ``web.run_app()`` runs them.
    """
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        task_status.started(f"http://{host}:{port}")
        await stop.wait()
    finally:
        # As web.run_app() does: no cancel scope around cleanup that was not there at setup.
        await runner.cleanup()


# -- processes ------------------------------------------------------------------------------------


# default_identity() is "<POD_NAME>_<8 hex digits>": unique per process. The examples run
# here with POD_NAME set, and the tests speak of pods, so the random part is taken off.
_PROCESS_SUFFIX = re.compile(r"(?<=[a-z0-9])_[0-9a-f]{8}\b")


def pod_of(text: str) -> str:
    """``text`` with the per-process suffix of default identities removed."""
    return _PROCESS_SUFFIX.sub("", text)


class Output:
    """Lines a child process writes to stdout, read as they come (see ``pod_of``)."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self._stream = BufferedByteReceiveStream(process.stdout)
        self.lines: list[str] = []

    async def wait_for(self, predicate: Callable[[str], bool]) -> str:
        """Read lines until one satisfies ``predicate``; returns it (EOF fails the test)."""
        while True:
            line = pod_of((await self._stream.receive_until(b"\n", 65536)).decode())
            self.lines.append(line)
            if predicate(line):
                return line

    async def rest(self) -> list[str]:
        """Read the remaining lines until the process closes stdout."""
        while True:
            try:
                line = await self._stream.receive_until(b"\n", 65536)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return self.lines
            self.lines.append(pod_of(line.decode()))


@asynccontextmanager
async def example_process(
    script: str, kubeconfig: Path, identity: str, *args: str, **env: str
) -> AsyncIterator[tuple[Process, Output]]:
    """Run ``examples/<script>`` as a user would, against ``kubeconfig``, as ``identity``."""
    environment = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": identity,
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    async with await anyio.open_process(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=ROOT,
        env=environment,
        stderr=None,  # inherited: pytest shows it when a test fails
    ) as process:
        try:
            yield process, Output(process)
        finally:
            if process.returncode is None:
                process.kill()
