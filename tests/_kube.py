"""Test helpers for talking to a Kubernetes API: the real kube-apiserver, ours, or any cluster.

Three kinds of server answer the same tests (see ``conftest.py`` for the fixtures):

* ``embedded`` — :class:`leaderelect.testing.LeaseApiServer`, in this process, plain HTTP;
* ``real`` — kube-apiserver v1.36 + etcd from ``../shared/kube-apiserver`` (:class:`RealServer`);
* ``external`` — whatever cluster ``$LEADERELECT_KUBECONFIG`` points at (admin user only).

A test gets a :class:`KubeTarget` and talks to it either through ``kubernetes_asyncio``
(:meth:`KubeTarget.api_client`) or through raw HTTP (:meth:`KubeTarget.raw`) when the client
would hide what is being checked (status bodies, headers, key order, the watch stream itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from leaderelect.testing import LeaseApiServer

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "default"
USERS = ("admin", "elector", "reader")
GROUP = "coordination.k8s.io"
USER_AGENT = "conformance/1.0"
"""What the raw client sends; the server records ``conformance`` as the field manager."""

TargetKind = Literal["embedded", "real", "external"]
Json = Any


def leases_path(namespace: str = NAMESPACE, name: str | None = None) -> str:
    """The URL path of the Lease collection in ``namespace``, or of one Lease in it."""
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/leases"
    return path if name is None else f"{path}/{name}"


# --------------------------------------------------------------------------------------------
# The real kube-apiserver from ../shared
# --------------------------------------------------------------------------------------------


def env_flag(name: str) -> bool:
    """Whether ``$name`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def shared_dir() -> Path:
    """``../shared`` beside the repository, or ``$LEADERELECT_SHARED_DIR``."""
    override = os.environ.get("LEADERELECT_SHARED_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared"


def real_server_missing() -> str | None:
    """Why the real kube-apiserver cannot be started here, or ``None`` when it can."""
    hint = "(set up ../shared/kube-apiserver and apt-get install etcd-server)"
    up = shared_dir() / "kube-apiserver" / "up.sh"
    if not up.is_file():
        return f"real kube-apiserver not available: {up} does not exist {hint}"
    if shutil.which("etcd") is None:
        return f"real kube-apiserver not available: etcd is not on PATH {hint}"
    return None


class RealServerError(RuntimeError):
    """up.sh failed; the message carries its output."""


@dataclass
class RealServer:
    """A kube-apiserver + etcd started by ``../shared/kube-apiserver/up.sh`` in ``state_dir``."""

    state_dir: Path
    url: str = ""
    ca_file: Path = field(default_factory=Path)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def scripts(self) -> Path:
        return shared_dir() / "kube-apiserver"

    def kubeconfig(self, user: str) -> Path:
        return self.state_dir / f"{user}.kubeconfig"

    @classmethod
    def start(cls, state_dir: Path) -> RealServer:
        """Run up.sh (about 4 s); raises :class:`RealServerError` with its output on failure."""
        server = cls(state_dir)
        try:
            server._up()
        except BaseException:
            server.stop()  # etcd may be running although kube-apiserver failed
            raise
        return server

    def _up(self) -> None:
        cmd = [str(self.scripts / "up.sh"), str(self.state_dir)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RealServerError(f"{shlex.join(cmd)} did not finish in 90 s") from exc
        if done.returncode != 0:
            raise RealServerError(
                f"{shlex.join(cmd)} exited with {done.returncode}:\n{done.stderr[-3000:]}"
            )
        self._read_env()

    def _read_env(self) -> None:
        env: dict[str, str] = {}
        for line in (self.state_dir / "env.sh").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        self.url = env["KUBE_APISERVER"]
        self.ca_file = Path(env["KUBE_CA"])
        self.tokens = {user: env[f"{user.upper()}_TOKEN"] for user in USERS}

    def stop(self) -> None:
        """Stop both servers and delete the state directory."""
        subprocess.run(
            [str(self.scripts / "down.sh"), str(self.state_dir), "--wipe"],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver (not etcd) and start it again: its watch cache starts afresh.

        The new process listens on another port; ``url`` and the kubeconfig files are updated.
        Afterwards a watch from a resourceVersion older than the restart gets ``410 Expired``.
        """
        pid_file = self.state_dir / "apiserver.pid"
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        # The killed process takes about a second to vanish; without its pid file up.sh starts
        # the new one at once (on a new port) instead of waiting for it.
        pid_file.unlink()
        self._up()


# --------------------------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    """One HTTP answer, read in full."""

    status: int
    headers: Mapping[str, str]
    warnings: list[str]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def json(self) -> Json:
        return json.loads(self.body)


@dataclass
class WatchEvent:
    """One line of a watch stream, with the time it arrived (seconds since the request)."""

    at: float
    type: str
    object: Json

    @property
    def rv(self) -> str | None:
        rv: str | None = self.object.get("metadata", {}).get("resourceVersion")
        return rv


class WatchStream:
    """A watch response being read line by line."""

    def __init__(self, response: aiohttp.ClientResponse, started: float) -> None:
        self.response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self._started = started
        self.ended_at: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    async def next(self, timeout: float = 10.0) -> WatchEvent | None:
        """The next event, or ``None`` when the server ends the stream."""
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        if not line:
            self.ended_at = self.elapsed()
            return None
        data = json.loads(line)
        assert list(data) == ["type", "object"], f"watch line is not an event: {line!r}"
        return WatchEvent(self.elapsed(), data["type"], data["object"])

    async def take(self, count: int, timeout: float = 10.0) -> list[WatchEvent]:
        """Exactly the next ``count`` events (fails if the stream ends first)."""
        events: list[WatchEvent] = []
        for _ in range(count):
            event = await self.next(timeout)
            assert event is not None, f"stream ended after {events}"
            events.append(event)
        return events

    async def rest(self, timeout: float = 15.0) -> list[WatchEvent]:
        """All remaining events, until the server ends the stream."""
        events = []
        while (event := await self.next(timeout)) is not None:
            events.append(event)
        return events


class RawClient:
    """aiohttp with a user's credentials, for requests the typed client would hide."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None,
        token: str | None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._headers = {"User-Agent": user_agent}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    def _prepare(
        self,
        body: Json | bytes | str | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[bytes | None, dict[str, str]]:
        all_headers = dict(self._headers)
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        if data is not None:
            all_headers["Content-Type"] = content_type or "application/json"
        all_headers.update(headers or {})
        return data, all_headers

    async def request(
        self,
        method: str,
        path: str,
        body: Json | bytes | str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        """Send one request; ``body`` is JSON-encoded unless it is already ``bytes``/``str``."""
        data, all_headers = self._prepare(body, content_type, headers)
        async with self._http().request(
            method,
            self.base_url + path,
            params=params,
            data=data,
            headers=all_headers,
            ssl=self._ssl,
        ) as resp:
            raw = await resp.read()
            return RawResponse(
                status=resp.status,
                headers=resp.headers,
                warnings=resp.headers.getall("Warning", []),
                body=raw,
            )

    @contextlib.asynccontextmanager
    async def watch(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[WatchStream]:
        """``GET path?watch=1&...``; the stream is closed when the block ends."""
        query = {"watch": "1", **(params or {})}
        started = time.monotonic()
        async with self._http().get(
            self.base_url + path, params=query, headers=self._headers, ssl=self._ssl
        ) as resp:
            yield WatchStream(resp, started)

    # Shorthands for the Lease collection in the default namespace.

    async def get(self, path: str, **params: str) -> RawResponse:
        return await self.request("GET", path, params=params)

    async def create_lease(
        self, name: str, spec: Json | None = None, *, namespace: str = NAMESPACE
    ) -> RawResponse:
        body = {"metadata": {"name": name}, "spec": spec or {}}
        return await self.request("POST", leases_path(namespace), body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --------------------------------------------------------------------------------------------
# The object a test gets
# --------------------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[^a-z0-9]+")


class KubeTarget:
    """A Kubernetes API for one test: where it is, who may use it, and clients for it.

    Everything it hands out (clients, sessions) is closed by :meth:`aclose`, and every lease name
    from :meth:`lease_name` is deleted there on shared servers (``real``/``external``).
    """

    def __init__(
        self,
        kind: TargetKind,
        *,
        url: Callable[[], str],
        ca_file: Callable[[], Path | None],
        kubeconfigs: Mapping[str, Path],
        tokens: Callable[[], Mapping[str, str]],
        test_name: str,
        server: LeaseApiServer | None = None,
        expire_history: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.kind: TargetKind = kind
        self.namespace = NAMESPACE
        self.server = server
        """The :class:`~leaderelect.testing.LeaseApiServer` for ``embedded``, else ``None``."""
        self._url = url
        self._ca_file = ca_file
        self._kubeconfigs = dict(kubeconfigs)
        self._tokens = tokens
        self._expire_history = expire_history
        self._slug = _NAME_CHARS.sub("-", test_name.lower()).strip("-")[:36].strip("-")
        self._names: list[str] = []
        self._api_clients: list[k8s_client.ApiClient] = []
        self._raw_clients: list[RawClient] = []

    def __repr__(self) -> str:
        return f"KubeTarget({self.kind}, {self.url})"

    @property
    def url(self) -> str:
        return self._url()

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed the server's certificate; ``None`` for plain HTTP."""
        return self._ca_file()

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._kubeconfigs)

    def has_user(self, user: str) -> bool:
        return user in self._kubeconfigs

    def require_users(self, *users: str) -> None:
        """Skip the test when this server lacks one of ``users`` (external clusters: admin only)."""
        missing = [u for u in users if not self.has_user(u)]
        if missing:
            pytest.skip(f"{self.kind} server has no user {', '.join(missing)} (admin only)")

    def token(self, user: str = "admin") -> str:
        """The bearer token of ``user`` (skips the test where the server has none for it)."""
        self.require_users(user)
        token = self._tokens().get(user)
        if token is None:
            pytest.skip(f"{self.kind} server: user {user} does not authenticate with a token")
        return token

    def kubeconfig(self, user: str = "admin") -> Path:
        """A kubeconfig file for ``user`` whose current context uses namespace ``default``."""
        self.require_users(user)
        return self._kubeconfigs[user]

    def ssl_context(self) -> ssl.SSLContext | None:
        ca = self.ca_file
        return None if ca is None else ssl.create_default_context(cafile=str(ca))

    async def api_client(self, user: str = "admin") -> k8s_client.ApiClient:
        """A ``kubernetes_asyncio`` ApiClient from ``user``'s kubeconfig; closed at teardown."""
        configuration = k8s_client.Configuration()
        await k8s_config.load_kube_config(
            config_file=str(self.kubeconfig(user)),
            client_configuration=configuration,
            persist_config=False,
        )
        api = k8s_client.ApiClient(configuration)
        self._api_clients.append(api)
        return api

    async def coordination(self, user: str = "admin") -> k8s_client.CoordinationV1Api:
        """``CoordinationV1Api`` over :meth:`api_client`."""
        return k8s_client.CoordinationV1Api(await self.api_client(user))

    def raw(self, user: str | None = "admin", *, token: str | None = None) -> RawClient:
        """A raw HTTP client as ``user`` (``None``: anonymous; ``token``: that bearer token)."""
        if token is None and user is not None:
            token = self.token(user)
        client = RawClient(self.url, ssl_context=self.ssl_context(), token=token)
        self._raw_clients.append(client)
        return client

    def lease_name(self, hint: str = "") -> str:
        """A lease name no other test uses; deleted at teardown on shared servers."""
        parts = [self._slug[:24].strip("-") or "t", hint, uuid.uuid4().hex[:8]]
        name = "-".join(p for p in parts if p)
        self._names.append(name)
        return name

    async def expire_watch_history(self) -> None:
        """Make every resourceVersion written so far too old to watch from (``410 Expired``).

        ``real``: restart kube-apiserver, whose watch cache then starts at the current revision
        (about 3 s; the URL changes, so make clients afterwards). ``embedded``: compact the
        server's history. ``external``: skips the test.
        """
        if self._expire_history is None:
            pytest.skip(f"cannot make the {self.kind} server's watch cache roll over")
        await self._expire_history()

    async def aclose(self) -> None:
        """Delete the leases this test named (shared servers), close every client."""
        try:
            if self.kind != "embedded" and self._names and self.has_user("admin"):
                cleaner = self.raw("admin")
                for name in self._names:
                    await cleaner.request("DELETE", leases_path(self.namespace, name))
        finally:
            for raw in self._raw_clients:
                await raw.aclose()
            for api in self._api_clients:
                await api.close()


def write_kubeconfig(
    path: Path, *, url: str, token: str, user: str, ca_file: Path | None = None
) -> Path:
    """Write a one-context kubeconfig for a token user, namespace ``default``."""
    cluster: dict[str, Any] = {"server": url}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": user, "context": {"cluster": "test", "user": user, "namespace": NAMESPACE}}
        ],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def external_target_parts(kubeconfig: Path) -> tuple[str, Path | None, dict[str, str]]:
    """URL, CA file and admin token (if any) of the current context of ``kubeconfig``."""
    configuration = k8s_client.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    ca = Path(configuration.ssl_ca_cert) if configuration.ssl_ca_cert else None
    token = configuration.api_key.get("BearerToken")
    tokens = {}
    if token:
        tokens["admin"] = str(token).removeprefix("Bearer ").strip()
    return str(configuration.host), ca, tokens


# --------------------------------------------------------------------------------------------
# Comparing answers
# --------------------------------------------------------------------------------------------

UID = "<uid>"
RV = "<rv>"
TIME = "<time>"

_MASKED_METADATA = {"uid": UID, "resourceVersion": RV, "creationTimestamp": TIME}


def normalise(value: Json) -> Json:
    """A copy of a Kubernetes JSON value with what must differ between servers masked.

    Masks ``uid``, ``resourceVersion``, ``creationTimestamp`` in any ``metadata``, the
    ``time`` of managedFields entries, and the ``uid`` in Status ``details``. Keeps key order.
    """
    return _normalise(value, parent=None)


def _normalise(value: Json, parent: str | None) -> Json:
    if isinstance(value, list):
        return [_normalise(v, parent) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Json] = {}
    for key, item in value.items():
        if parent == "metadata" and key in _MASKED_METADATA and item is not None:
            out[key] = _MASKED_METADATA[key]
        elif parent == "managedFields" and key == "time":
            out[key] = TIME
        elif parent == "details" and key == "uid":
            out[key] = UID
        else:
            out[key] = _normalise(item, key)
    return out


def as_text(value: Json) -> str:
    """Indented JSON in the value's own key order: string equality checks order too."""
    return json.dumps(value, indent=1)


def assert_json(actual: Json, expected: Json) -> None:
    """``normalise(actual)`` equals ``expected``, key order included."""
    assert as_text(normalise(actual)) == as_text(expected)


def mask_numbers(text: str) -> str:
    """Replace every run of digits by ``N`` (for messages that name resourceVersions)."""
    return re.sub(r"\d+", "N", text)


def status_body(
    code: int,
    reason: str | None,
    message: str,
    details: Json | None = None,
) -> Json:
    """A ``Status`` failure body in kube-apiserver's key order."""
    body: dict[str, Json] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason is not None:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def lease_details(name: str | None = None, kind: str = "leases") -> Json:
    """``details`` of a Lease error: ``{name?, group, kind}``."""
    details: dict[str, Json] = {}
    if name is not None:
        details["name"] = name
    details["group"] = GROUP
    details["kind"] = kind
    return details


def managed_fields(manager: str, fields: Iterable[str], operation: str = "Update") -> list[Json]:
    """The managedFields entry one writer leaves on a Lease's spec fields (time masked)."""
    return [
        {
            "manager": manager,
            "operation": operation,
            "apiVersion": f"{GROUP}/v1",
            "time": TIME,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {f"f:{name}": {} for name in sorted(fields)}},
        }
    ]


def lease_body(
    name: str,
    spec: Json,
    *,
    manager: str | None = "conformance",
    fields: Iterable[str] | None = None,
    typed: bool = True,
) -> Json:
    """A Lease as the server returns it (normalised): kind, apiVersion, metadata, spec.

    ``fields`` are the spec fields listed in managedFields (default: the keys of ``spec``);
    without any, the server writes no managedFields at all. ``typed=False`` is the shape of a
    LeaseList item (no kind/apiVersion).
    """
    metadata: dict[str, Json] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": UID,
        "resourceVersion": RV,
        "creationTimestamp": TIME,
    }
    field_names = list(spec) if fields is None else list(fields)
    if manager is not None and field_names:
        metadata["managedFields"] = managed_fields(manager, field_names)
    body: dict[str, Json] = {}
    if typed:
        body["kind"] = "Lease"
        body["apiVersion"] = f"{GROUP}/v1"
    body["metadata"] = metadata
    body["spec"] = spec
    return body
