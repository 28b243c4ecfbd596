"""``leaderelect status`` and ``leaderelect watch`` against an in-process Lease API server.

The commands run as subprocesses (``python -m leaderelect ...``) with the server's kubeconfig;
the test writes the Lease itself, through :class:`~leaderelect.LeaseLock`, and waits on the
watcher's output lines (never on sleeps).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
from _kube import KubeTarget
from _rbac import READ, reader_namespace
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

from leaderelect import LeaseLock, LeaseRecord
from leaderelect._cli import main
from leaderelect._cli._status import EXIT_MISCONFIGURED, EXIT_UNREAD
from leaderelect._cli._target import LeaseTarget
from leaderelect._record import format_micro_time
from leaderelect.testing import LeaseApiServer, Rule

PYTHON_M = [sys.executable, "-m", "leaderelect"]
LEASE = "my-app"
BOUND = 30.0
"""Seconds any one step may take: interpreters start slowly on a loaded machine."""


async def _cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(BOUND):
        return await anyio.run_process([*PYTHON_M, *argv], check=False)


async def _write(
    kubeconfig: Path,
    holder: str,
    *,
    transitions: int,
    duration: int = 15,
    acquired_ago: float = 0.0,
    renewed_ago: float = 0.0,
    namespace: str = "default",
) -> datetime:
    """Create or replace the Lease's record, as a candidate would; returns "now"."""
    now = datetime.now(timezone.utc)
    record = LeaseRecord(
        holder,
        duration,
        now - timedelta(seconds=acquired_ago),
        now - timedelta(seconds=renewed_ago),
        transitions,
    )
    async with await LeaseLock.from_kubeconfig(LEASE, namespace, config_file=kubeconfig) as lock:
        snapshot = await lock.get(timeout=5)
        if snapshot is None:
            await lock.create(record, timeout=5)
        else:
            await lock.update(record, base=snapshot, timeout=5)
    return now


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


async def test_status_shows_holder_term_age_expiry_and_transitions(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    now = await _write(kubeconfig, "pod-b", transitions=4, acquired_ago=95, renewed_ago=2)
    done = await _cli("status", LEASE, "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    lines = done.stdout.decode().splitlines()
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None
    uid = lease["metadata"]["uid"]
    assert lines[0] == "lease         default/my-app"
    assert lines[1] == "holder        pod-b"
    assert re.fullmatch(r"term age      1m3\ds", lines[2]), lines[2]
    assert re.fullmatch(
        r"expires in    \d+\.\ds \(renewTime \+ leaseDurationSeconds 15s, by the holder's clock\)",
        lines[3],
    ), lines[3]
    assert lines[4] == f"transitions   4 (fencing token {uid}:4)"
    acquired = format_micro_time(now - timedelta(seconds=95))
    assert lines[5] == f"acquire time  {acquired}"
    assert re.fullmatch(r"renew time    \S+Z \(\d+\.\ds ago\)", lines[6]), lines[6]
    assert lines[7].startswith("note: acquire and renew times are the holder's clock")


async def test_status_json_carries_the_same_facts(leaderelect_server: LeaseApiServer) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    await _write(kubeconfig, "pod-b", transitions=4, acquired_ago=95, renewed_ago=2)
    done = await _cli("status", LEASE, "--kubeconfig", str(kubeconfig), "-o", "json")
    assert done.returncode == 0, done.stderr.decode()
    status = json.loads(done.stdout)
    lease = leaderelect_server.lease("default", LEASE)
    assert lease is not None
    assert status["lease"] == "default/my-app"
    assert status["holder"] == "pod-b"
    assert status["leaseTransitions"] == 4
    assert status["fencingToken"] == f"{lease['metadata']['uid']}:4"
    assert status["leaseDurationSeconds"] == 15
    assert status["acquireTime"] == lease["spec"]["acquireTime"]
    assert status["renewTime"] == lease["spec"]["renewTime"]
    assert status["resourceVersion"] == lease["metadata"]["resourceVersion"]
    # The ages compare the holder's times with ours: here both are this machine's clock.
    assert 95 <= status["termAgeSeconds"] < 95 + BOUND
    assert 2 <= status["renewedSecondsAgo"] < 2 + BOUND
    assert 13 - BOUND < status["expiresInSeconds"] <= 13
    assert "holder's clock" in status["clock"]
    assert status["problems"] == []


async def test_status_of_an_expired_lease_says_how_long_ago(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    await _write(kubeconfig, "gone", transitions=1, acquired_ago=3 * 3600, renewed_ago=60)
    done = await _cli("status", LEASE, "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert re.fullmatch(r"term age      3h00m", lines[2]), lines[2]
    assert re.match(r"expires in    expired 4\d\.\ds ago \(renewTime", lines[3]), lines[3]


async def test_status_of_a_free_lease_says_it_may_be_acquired(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    await _write(kubeconfig, "", transitions=2, duration=1)
    done = await _cli("status", LEASE, "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[1] == "holder        (none: the lease is free and may be acquired at once)"
    assert lines[2:4] == ["term age      -", "expires in    -"]
    done = await _cli("status", LEASE, "--kubeconfig", str(kubeconfig), "-o", "json")
    status = json.loads(done.stdout)
    assert (status["holder"], status["expiresInSeconds"], status["termAgeSeconds"]) == (
        None,
        None,
        None,
    )


async def test_status_reads_the_namespace_it_is_given(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    await _write(kubeconfig, "system-pod", transitions=0, namespace="kube-system")
    done = await _cli("status", LEASE, "-n", "kube-system", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines()[:2] == [
        "lease         kube-system/my-app",
        "holder        system-pod",
    ]


async def test_status_of_a_missing_lease_exits_1_with_a_clear_message(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    done = await _cli("status", "nope", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode() == (
        "leaderelect status: error: lease default/nope not found: there is no Lease named "
        "'nope' in namespace 'default'\n"
    )


async def test_status_forbidden_names_the_verb_and_resource(
    leaderelect_server: LeaseApiServer,
) -> None:
    leaderelect_server.add_user(
        "pods-only", [Rule(verbs=("get",), resources=("pods",), api_groups=("",))]
    )
    kubeconfig = leaderelect_server.kubeconfig("pods-only")
    done = await _cli("status", LEASE, "--kubeconfig", str(kubeconfig))
    assert done.returncode == EXIT_MISCONFIGURED == 3
    assert done.stdout == b""
    error = done.stderr.decode()
    assert error.startswith(
        'leaderelect status: error: get lease default/my-app forbidden: User "pods-only" lacks '
        'RBAC verb "get" on resource "leases" (API group "coordination.k8s.io") in namespace '
        '"default"'
    ), error
    assert error.count("\n") == 1 and "Traceback" not in error


# The exit status tells a misconfiguration (3) from a Lease that is not there (1); on both
# servers, with the reader user in a namespace of the test's own (tests/_rbac.py).


async def test_status_exits_3_when_the_credentials_may_not_read_the_lease(
    kube: KubeTarget, lease_name: str
) -> None:
    async with reader_namespace(kube, ()) as grant:
        done = await _cli(
            "status",
            lease_name,
            "-n",
            grant.namespace,
            "--kubeconfig",
            str(kube.kubeconfig("reader")),
        )
        assert done.returncode == EXIT_MISCONFIGURED, done.stderr.decode()
        assert done.stdout == b""
        assert done.stderr.decode().startswith(
            f"leaderelect status: error: get lease {grant.namespace}/{lease_name} forbidden: "
            f'User "reader" lacks RBAC verb "get" on resource "leases"'
        )
        # Granted, the same user reads a Lease that is not there yet: 1, not 3.
        await grant.allow(READ)
        with anyio.fail_after(BOUND):
            while True:
                done = await _cli(
                    "status",
                    lease_name,
                    "-n",
                    grant.namespace,
                    "--kubeconfig",
                    str(kube.kubeconfig("reader")),
                )
                if done.returncode != EXIT_MISCONFIGURED:  # RBAC takes a moment on a real server
                    break
                await anyio.sleep(0.2)
        assert done.returncode == EXIT_UNREAD == 1, done.stderr.decode()
        assert "there is no Lease named" in done.stderr.decode()


async def test_status_exits_3_when_the_namespace_does_not_exist(
    kube: KubeTarget, lease_name: str
) -> None:
    namespace = f"le-missing-{lease_name[-8:]}"
    done = await _cli(
        "status", lease_name, "-n", namespace, "--kubeconfig", str(kube.kubeconfig("admin"))
    )
    assert done.returncode == EXIT_MISCONFIGURED, done.stderr.decode()
    assert done.stdout == b""
    assert done.stderr.decode() == (
        f"leaderelect status: error: get lease {namespace}/{lease_name}: namespace "
        f'"{namespace}" does not exist\n'
    )
    # A user that may not read namespaces (nor leases there) gets the RBAC error, also 3.
    kube.require_users("elector")
    done = await _cli(
        "status", lease_name, "-n", namespace, "--kubeconfig", str(kube.kubeconfig("elector"))
    )
    assert done.returncode == EXIT_MISCONFIGURED, done.stderr.decode()
    assert 'lacks RBAC verb "get" on resource "leases"' in done.stderr.decode()


# --------------------------------------------------------------------------------------------
# watch
# --------------------------------------------------------------------------------------------


class _Lines:
    """The lines of a byte stream, read on demand, kept for the failure message."""

    def __init__(self, stream: ByteReceiveStream | None) -> None:
        assert stream is not None
        self._chunks = TextReceiveStream(stream, errors="replace")
        self._pending = ""
        self._ready: list[str] = []
        self.seen: list[str] = []

    async def next(self) -> str:
        """The next line; fails if the stream ends first."""
        while not self._ready:
            try:
                chunk = await self._chunks.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                pytest.fail("the output ended after:\n" + "\n".join(self.seen))
            *self._ready, self._pending = (self._pending + chunk).split("\n")
        line = self._ready.pop(0)
        self.seen.append(line)
        return line

    async def expect(self, text: str) -> None:
        """The next line, after its ``HH:MM:SS  namespace/name  ``, is ``text``."""
        line = await self.next()
        stamp, lease, rest = re.split(r"\s\s", line, maxsplit=2)
        assert re.fullmatch(r"\d\d:\d\d:\d\d", stamp), line
        assert lease == "default/my-app", line
        assert rest == text, "\n".join(self.seen)


@contextlib.asynccontextmanager
async def _watch(kubeconfig: Path, *options: str) -> AsyncIterator[tuple[Process, _Lines]]:
    command = [*PYTHON_M, "watch", LEASE, "--kubeconfig", str(kubeconfig), *options]
    process = await anyio.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield process, _Lines(process.stdout)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.aclose()


async def test_watch_prints_a_line_per_change_of_holder_until_ctrl_c(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    with anyio.fail_after(BOUND):
        async with _watch(kubeconfig) as (process, lines):
            await lines.expect("does not exist (yet); watching for it")
            await _write(kubeconfig, "a", transitions=0)
            await lines.expect("created: holder a, transitions 0")
            await _write(kubeconfig, "a", transitions=0)  # a renewal: no line without -v
            await _write(kubeconfig, "b", transitions=1)
            await lines.expect("new holder b, transitions 1 (was held by a)")
            await _write(kubeconfig, "", transitions=1, duration=1)
            await lines.expect("released by b (transitions 1)")
            await _write(kubeconfig, "c", transitions=2)
            await lines.expect("new holder c, transitions 2 (was free)")
            await _write(kubeconfig, "c", transitions=3)  # c restarted: a new term
            await lines.expect("holder c, transitions 3 (a new term, transitions were 2)")
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130
            assert process.stderr is not None
            stderr = b"".join([chunk async for chunk in process.stderr])
    assert stderr == b""


async def test_watch_verbose_also_prints_renewals_and_exits_143_on_sigterm(
    leaderelect_server: LeaseApiServer,
) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    await _write(kubeconfig, "a", transitions=5)
    with anyio.fail_after(BOUND):
        async with _watch(kubeconfig, "-v") as (process, lines):
            await lines.expect("holder a, transitions 5")
            now = await _write(kubeconfig, "a", transitions=5)
            await lines.expect(f"renewed by a (renewTime {format_micro_time(now)}, holder's clock)")
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 143


async def test_watch_forbidden_exits_1_naming_the_verb(
    leaderelect_server: LeaseApiServer,
) -> None:
    leaderelect_server.add_user("nobody", [])
    kubeconfig = leaderelect_server.kubeconfig("nobody")
    done = await _cli("watch", LEASE, "--kubeconfig", str(kubeconfig))
    assert done.returncode == 1
    error = done.stderr.decode()
    assert error.startswith("leaderelect watch: error: get lease default/my-app forbidden")
    assert 'lacks RBAC verb "get" on resource "leases"' in error
    assert error.count("\n") == 1


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status"], "the following arguments are required: NAME"),
        (["status", "x", "-o", "yaml"], "argument -o/--output: invalid choice: 'yaml'"),
        (["status", "Bad_Name"], "'Bad_Name' is not a valid Lease name"),
        (["status", "x", "--namespace", "Bad_Ns"], "'Bad_Ns' is not a valid"),
        (["watch"], "the following arguments are required: NAME"),
        (["watch", "x", "--bogus"], "unrecognized arguments: --bogus"),
    ],
    ids=[
        "status without a name",
        "unknown output format",
        "invalid lease name",
        "invalid namespace",
        "watch without a name",
        "unknown option",
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: leaderelect")
    assert message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("command", ["status", "watch"])
def test_a_missing_kubeconfig_is_one_line_and_exit_1(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.kubeconfig"
    assert main([command, "x", "--kubeconfig", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"leaderelect {command}: error: no kubeconfig found at '{missing}'\n"


def test_without_any_kubeconfig_the_error_says_where_credentials_come_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["status", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("leaderelect status: error: no kubeconfig found at '~/.kube/config'")
    assert "(give --kubeconfig, set $KUBECONFIG, or run in a pod)" in err


@pytest.mark.skipif(
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(),
    reason="this machine is a pod with a service account",
)
def test_in_a_pod_without_a_service_account_the_error_says_what_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert main(["status", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("leaderelect status: error: cannot load the service-account config")
    assert "$KUBERNETES_SERVICE_HOST is set, so the pod's service account was tried" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("environment", "kubeconfig", "in_cluster"),
    [
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, None, True),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBECONFIG": "/k"}, None, False),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, Path("/k"), False),
        ({}, None, False),
    ],
    ids=["in a pod", "$KUBECONFIG wins", "--kubeconfig wins", "outside a pod"],
)
def test_the_service_account_is_used_only_in_a_pod_without_a_kubeconfig(
    environment: dict[str, str],
    kubeconfig: Path | None,
    in_cluster: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert LeaseTarget("x", kubeconfig=kubeconfig).in_cluster is in_cluster
