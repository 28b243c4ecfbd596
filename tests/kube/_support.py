"""What the LeaseLock tests share: records, a scripted HTTP server, and JSON builders.

The fixtures that use them (``make_lock``, ``scripted``, ``scripted_lock``, ``embedded_lock``)
are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from aiohttp import web

from leaderelect._kube import LeaseLock
from leaderelect._lease_client import LeaseSnapshot
from leaderelect._record import LeaseRecord

UTC = timezone.utc
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)  # microsecond 0: the case isoformat() gets wrong
T1 = datetime(2024, 5, 6, 7, 8, 11, 654321, tzinfo=UTC)
T2 = datetime(2024, 5, 6, 7, 8, 13, 5, tzinfo=UTC)

HELD = LeaseRecord(
    holder_identity="pod-a", lease_duration_seconds=15, acquire_time=T0, renew_time=T0
)
RENEWED = LeaseRecord(
    holder_identity="pod-a", lease_duration_seconds=15, acquire_time=T0, renew_time=T1
)
TAKEN = LeaseRecord(
    holder_identity="pod-b",
    lease_duration_seconds=20,
    acquire_time=T2,
    renew_time=T2,
    lease_transitions=1,
)

LockFactory = Callable[..., Awaitable[LeaseLock]]

NAME = "scripted"
LEASE = f"default/{NAME}"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{NAME}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """One request the scripted server received."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    """A plain-HTTP server answering every request with ``self.handler``, recording requests."""

    def __init__(self) -> None:
        self.handler: Handler = self._unscripted
        self.requests: list[Seen] = []
        self.release = asyncio.Event()
        """Set at teardown: hung handlers return."""
        self.disconnected = asyncio.Event()
        """Set when a hung or streaming handler sees its client go away."""
        self.url = ""

    async def _unscripted(self, request: web.Request) -> web.StreamResponse:
        raise AssertionError(f"unexpected request {request.method} {request.path_qs}")

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            self.disconnected.set()
            raise

    async def hang(self) -> None:
        """Never answer (until teardown)."""
        await self.release.wait()

    def answer(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Answer every request with ``status`` and ``body`` (JSON unless bytes)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(
                status=status,
                body=raw,
                headers={"Content-Type": "application/json", **(headers or {})},
            )

        self.handler = handler

    def stream(self, *pieces: bytes, then_hang: bool = False) -> None:
        """Answer with a 200 chunked stream of ``pieces``, then end it (or hang)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for piece in pieces:
                await response.write(piece)
            if then_hang:
                await self.hang()
            await response.write_eof()
            return response

        self.handler = handler


def lease_json(
    spec: Any = None, *, rv: str = "7", uid: str = "uid-1", name: str = NAME, **metadata: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": rv}
        | metadata,
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def event_line(kind: str, obj: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


BASE = LeaseSnapshot(
    record=HELD,
    resource_version="7",
    uid="uid-1",
    obj=lease_json({"holderIdentity": "pod-a"}, labels={"app": "x"}),
)


async def call(lock: LeaseLock, verb: str, seconds: float, base: LeaseSnapshot = BASE) -> object:
    """``get``, ``create(HELD)`` or ``update(RENEWED, base=base)`` with ``timeout=seconds``."""
    if verb == "get":
        return await lock.get(timeout=seconds)
    if verb == "create":
        return await lock.create(HELD, timeout=seconds)
    return await lock.update(RENEWED, base=base, timeout=seconds)


VERBS = [pytest.param(verb, id=verb) for verb in ("get", "create", "update")]


async def write(
    lock: LeaseLock, verb: str, record: LeaseRecord, base: LeaseSnapshot
) -> LeaseSnapshot:
    """``lock.create(record)`` or ``lock.update(record, base=base)``."""
    if verb == "create":
        return await lock.create(record, timeout=5)
    return await lock.update(record, base=base, timeout=5)
