"""Credentials that expire: refreshed before they do, and reloaded after a 401
(``leaderelect/_kube/_credentials.py``, ``LeaseLock._send`` and the watch), against the embedded
server's expiring tokens (``LeaseApiServer.issue_token``, ``revoke_token``, ``token_expires``).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anyio
import pytest

from leaderelect import LeaderElector
from leaderelect._errors import ApiUnavailable, ConfigError, LeaseForbidden
from leaderelect._kube import LeaseLock, _credentials
from leaderelect.testing import LeaseApiServer

from ._support import HELD

UTC = datetime.timezone.utc

# The exec plugin: prints the token the test last wrote, and logs each run.
PLUGIN = """\
import json, sys
current, runs = sys.argv[1], sys.argv[2]
with open(current) as f:
    credential = json.load(f)
with open(runs, "a") as f:
    f.write(credential["token"] + "\\n")
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": credential,
}))
"""


@dataclass
class ExecPlugin:
    """A kubeconfig whose user runs ``PLUGIN``, and the file it reads its token from."""

    server: LeaseApiServer
    kubeconfig: Path
    current: Path
    runs: Path
    token: str = ""
    expires: datetime.datetime | None = None
    issued: dict[str, datetime.datetime | None] = field(default_factory=dict)

    def hand_out(self, lifetime: float | None) -> str:
        """Issue admin a token valid for ``lifetime`` seconds; the plugin prints it from now on."""
        expires = None if lifetime is None else _now() + datetime.timedelta(seconds=lifetime)
        token = self.server.issue_token("admin", expires=expires)
        status: dict[str, str] = {"token": token}
        if expires is not None:
            status["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        staged = self.current.with_suffix(".tmp")
        staged.write_text(json.dumps(status))
        os.replace(staged, self.current)
        self.token, self.expires = token, expires
        self.issued[token] = expires
        return token

    def handed_out(self) -> list[str]:
        """The tokens the plugin printed, one per run."""
        return self.runs.read_text().split() if self.runs.exists() else []


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


@pytest.fixture
async def server() -> AsyncIterator[LeaseApiServer]:
    async with LeaseApiServer() as server:
        yield server


@pytest.fixture
def plugin(server: LeaseApiServer, tmp_path: Path) -> ExecPlugin:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    current, runs = tmp_path / "current.json", tmp_path / "runs.log"
    kubeconfig = tmp_path / "exec.kubeconfig"
    exec_section = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(script), str(current), str(runs)],
        "interactiveMode": "Never",
    }
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server.url}}],
                "users": [{"name": "u", "user": {"exec": exec_section}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return ExecPlugin(server, kubeconfig, current, runs)


# ============================================================================================
# The embedded server's expiring tokens
# ============================================================================================


async def test_the_embedded_server_answers_an_expired_token_as_kube_apiserver_does(
    server: LeaseApiServer,
) -> None:
    soon = _now() + datetime.timedelta(seconds=0.5)
    token = server.issue_token("admin", expires=soon)
    user = server.add_user("short", token_expires=soon)
    revoked = server.issue_token("admin")
    server.revoke_token(revoked)
    async with aiohttp.ClientSession() as session:  # plain aiohttp: the raw answer

        async def status(bearer: str) -> tuple[int, bytes]:
            async with session.get(
                f"{server.url}/apis/coordination.k8s.io/v1/namespaces/default/leases",
                headers={"Authorization": f"Bearer {bearer}"},
            ) as response:
                return response.status, await response.read()

        assert (await status(token))[0] == 200
        assert (await status(user.token))[0] == 200
        assert (await status(revoked))[0] == 401
        await anyio.sleep(max(0.0, (soon - _now()).total_seconds()) + 0.05)
        for expired in (token, user.token):
            code, body = await status(expired)
            assert code == 401
            assert json.loads(body) == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }
    with pytest.raises(ValueError, match="timezone-aware"):
        server.issue_token("admin", expires=datetime.datetime(2030, 1, 1))  # noqa: DTZ001
    with pytest.raises(KeyError):
        server.issue_token("nobody")


# ============================================================================================
# Refreshed before they expire
# ============================================================================================


async def test_one_term_outlives_three_rotations_of_an_exec_plugin_token(
    plugin: ExecPlugin, server: LeaseApiServer
) -> None:
    lifetime, rotate_every = 3.0, 1.0
    plugin.hand_out(lifetime)

    async def rotate() -> None:
        while True:
            await anyio.sleep(rotate_every)
            plugin.hand_out(lifetime)

    async with (
        await LeaseLock.from_kubeconfig("rotating", config_file=plugin.kubeconfig) as lock,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(rotate)
        elector = LeaderElector(
            lock, identity="a", lease_duration=3.0, renew_deadline=2.0, retry_period=0.3
        )
        async with elector.leading():
            begun = server.lease("default", "rotating")
            assert begun is not None
            transitions = begun["spec"].get("leaseTransitions", 0)
            expired: list[str] = []
            with anyio.fail_after(30):
                while len(expired) < 3:
                    await anyio.sleep(0.2)
                    # The tokens the lock got from its plugin, and of those the expired ones.
                    used = dict.fromkeys(plugin.handed_out())
                    expired = [t for t in used if (plugin.issued[t] or _now()) < _now()]
            renewals = server.requests.count(verb="update", code=200)
        tg.cancel_scope.cancel()
    end = server.lease("default", "rotating")
    assert end is not None
    assert end["spec"].get("leaseTransitions", 0) == transitions
    assert renewals >= 5
    # Every token was replaced before it expired: no request was ever turned away.
    assert server.requests.count(code=401) == 0


async def test_a_token_is_refreshed_at_half_its_lifetime_or_five_minutes_before_expiry(
    plugin: ExecPlugin,
) -> None:
    plugin.hand_out(3600)
    async with await LeaseLock.connect("x", kubeconfig=plugin.kubeconfig) as lock:
        credentials = lock._credentials
        assert credentials is not None
        assert credentials.expiry is not None and plugin.expires is not None
        assert abs((credentials.expiry - plugin.expires).total_seconds()) < 1e-3
        assert credentials.refresh_at == credentials.expiry - datetime.timedelta(minutes=5)
    plugin.hand_out(10)
    async with await LeaseLock.connect("x", kubeconfig=plugin.kubeconfig) as lock:
        credentials = lock._credentials
        assert credentials is not None and credentials.refresh_at is not None
        assert credentials.expiry is not None
        left = (credentials.expiry - credentials.refresh_at).total_seconds()
        assert 4 < left <= 5


# ============================================================================================
# Reloaded after a 401
# ============================================================================================


async def test_a_401_reloads_the_credentials_and_sends_the_request_once_more(
    plugin: ExecPlugin, server: LeaseApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_credentials, "_RELOAD_AT_MOST_EVERY", 0.0)
    first = plugin.hand_out(3600)  # valid for an hour, so never refreshed on schedule
    async with await LeaseLock.connect("x", "default", kubeconfig=plugin.kubeconfig) as lock:
        assert await lock.get(timeout=5) is None
        # The token is revoked (as after a credential rotation); the plugin now prints another.
        server.revoke_token(first)
        plugin.hand_out(3600)
        assert await lock.create(HELD, timeout=5) is not None
        assert server.requests.count(verb="create", code=401) == 1
        assert server.requests.count(verb="create", code=201) == 1
        # The watch too.
        server.revoke_token(plugin.token)
        plugin.hand_out(3600)
        async with lock.watch(resource_version=None, timeout_seconds=1) as events:
            assert [e.type.value async for e in events] == ["ADDED"]
        assert server.requests.count(verb="watch", code=401) == 1
        # A plugin that keeps printing a rejected token: one retry at most, then the 401.
        server.revoke_token(plugin.token)
        with pytest.raises(LeaseForbidden) as caught:
            await lock.get(timeout=5)
        assert caught.value.status == 401
        assert server.requests.count(verb="get", code=401) == 1
    assert len(plugin.handed_out()) == 4


async def test_a_token_written_in_the_kubeconfig_is_not_sent_twice(
    server: LeaseApiServer,
) -> None:
    kubeconfig = server.kubeconfig()
    async with await LeaseLock.connect("x", kubeconfig=kubeconfig) as lock:
        server.add_user("admin")  # a new token: the one in the kubeconfig is now unknown
        with pytest.raises(LeaseForbidden):
            await lock.get(timeout=5)
    assert server.requests.count(verb="get") == 1


async def test_a_refreshed_token_file_is_read_again_after_a_401(
    server: LeaseApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_credentials, "_RELOAD_AT_MOST_EVERY", 0.0)
    token_file = tmp_path / "token"
    token_file.write_text(server.issue_token("admin"))
    kubeconfig = tmp_path / "file.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server.url}}],
                "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    async with await LeaseLock.connect("x", kubeconfig=kubeconfig) as lock:
        assert lock._credentials is not None and lock._credentials.refresh_at is not None
        server.revoke_token(token_file.read_text())
        token_file.write_text(server.issue_token("admin"))
        assert await lock.get(timeout=5) is None
    assert server.requests.count(verb="get", code=401) == 1


async def test_a_failing_plugin_keeps_a_valid_token_and_names_itself_once_it_expired(
    plugin: ExecPlugin, server: LeaseApiServer
) -> None:
    expires = _now() + datetime.timedelta(seconds=4)
    plugin.hand_out(4)  # refreshed at half its lifetime: after 2 s
    async with await LeaseLock.connect("x", "default", kubeconfig=plugin.kubeconfig) as lock:
        plugin.current.write_text("not json")  # from now on the plugin fails
        await anyio.sleep(2.3)
        assert await lock.get(timeout=5) is None  # the old token is still good
        await anyio.sleep(max(0.0, (expires - _now()).total_seconds()) + 0.2)
        with pytest.raises(ApiUnavailable, match="refreshing it failed") as caught:
            await lock.get(timeout=5)
        assert "(kubeconfig exec plugin)" in str(caught.value)
    assert server.requests.count(verb="get", code=404) == 1  # the Lease does not exist
    assert server.requests.count(code=401) == 0


def test_an_oidc_id_token_says_when_it_expires() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": 2_000_000_000}).encode()).rstrip(b"=")
    token = f"e30.{payload.decode()}.sig"
    assert _credentials._jwt_expiry(token) == datetime.datetime.fromtimestamp(2_000_000_000, UTC)
    assert _credentials._jwt_expiry("not-a-jwt") is None
    assert _credentials._parse_time("2030-01-02T03:04:05Z") == datetime.datetime(
        2030, 1, 2, 3, 4, 5, tzinfo=UTC
    )


async def test_an_unusable_exec_plugin_is_a_config_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "broken.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1",
                                "command": sys.executable,
                                "args": ["-c", "import sys; sys.exit(3)"],
                            }
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    with pytest.raises(ConfigError, match=r"^kubeconfig: cannot load kubeconfig .*returned 3"):
        await LeaseLock.connect("x", kubeconfig=kubeconfig)
