"""The same request sequences sent to both servers; their transcripts must match byte for byte.

The other conformance modules state each behaviour with expected values. This one catches what
they do not spell out: every header that matters, the exact body bytes (key order, escaping,
indentation, the trailing newline) of every answer in a scenario. Only what must differ between
two servers is masked: uids, resourceVersions, timestamps of this run.

A scenario is an async function that drives a :class:`Transcript`; it runs first on the real
server, then on a fresh embedded one, with the same lease names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import pytest
from _kube import Json, KubeTarget, RawClient, RawResponse, leases_path

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
HEADERS = ("Content-Type", "Cache-Control", "X-Content-Type-Options", "Retry-After")

_MASKS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uid>"),
    (re.compile(r'(resourceVersion\\*"\s*:\s*\\*")\d+'), r"\1<rv>"),
    # Timestamps written by the server (this run's date), not the 2024 MicroTimes we send.
    (re.compile(r"20(?!24)\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"current: \d+"), "current: <rv>"),
    (re.compile(r"too old resource version: \d+ \(\d+\)"), "too old resource version: <rv>"),
]


def mask(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


@dataclass
class Transcript:
    """Sends requests to one server and writes down every answer, masked."""

    target: KubeTarget
    names: list[str]
    lines: list[str] = field(default_factory=list)
    _clients: dict[str | None, RawClient] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.names[0]

    def client(self, user: str | None) -> RawClient:
        if user not in self._clients:
            self._clients[user] = self.target.raw(user)
        return self._clients[user]

    async def send(
        self,
        method: str,
        path: str,
        body: Json | bytes | str | None = None,
        *,
        user: str | None = "admin",
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        client = self.client(user) if user != "bad-token" else self.target.raw(token="bad")
        resp = await client.request(
            method, path, body, params=params, content_type=content_type, headers=headers
        )
        query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
        self.lines.append(f">>> {user} {method} {path}{'?' + query if query else ''}")
        self.lines.append(f"<<< {resp.status}")
        for header in HEADERS:
            if header in resp.headers:
                self.lines.append(f"{header}: {resp.headers[header]}")
        self.lines.extend(f"Warning: {warning}" for warning in resp.warnings)
        self.lines.append(mask(resp.body.decode()))
        return resp

    async def watch_lines(self, path: str, params: Mapping[str, str], count: int) -> None:
        """Write down the first ``count`` lines of a watch."""
        async with self.client("admin").watch(path, params) as stream:
            shown = {k: "<rv>" if k == "resourceVersion" else v for k, v in params.items()}
            self.lines.append(f">>> watch {path} {shown}")
            self.lines.append(f"<<< {stream.status} {stream.headers.get('Content-Type')}")
            for _ in range(count):
                line = await stream.response.content.readline()
                self.lines.append(mask(line.decode()))


Scenario = Callable[[Transcript], Awaitable[None]]

SPEC = {
    "holderIdentity": "a",
    "leaseDurationSeconds": 15,
    "acquireTime": "2024-05-06T07:08:09.123456Z",
    "renewTime": "2024-05-06T07:08:09.123456+02:00",
    "leaseTransitions": 0,
}


async def crud(t: Transcript) -> None:
    item = leases_path(name=t.name)
    created = await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": SPEC})
    await t.send("GET", item)
    await t.send("GET", leases_path(), params={"fieldSelector": f"metadata.name={t.name}"})
    current = (await t.send("GET", item)).json()
    current["spec"]["holderIdentity"] = "b"
    await t.send("PUT", item, current)
    await t.send("PUT", item, created.json())  # stale
    await t.send("PUT", item, {"metadata": {"name": t.name}, "spec": {}})  # no rv
    await t.send("PUT", item, dict(current, metadata={"name": "other", "resourceVersion": "1"}))
    await t.send("PUT", item, {"spec": {}})
    await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": {}})
    body = {"metadata": {"name": t.names[1], "namespace": "kube-system"}, "spec": {}}
    await t.send("POST", leases_path(), body)
    await t.send("PUT", leases_path(name=t.names[1]), {"metadata": {"name": t.names[1]}})
    await t.send("DELETE", leases_path(name=t.names[1]))
    await t.send("DELETE", item)
    await t.send("GET", item)
    await t.send("DELETE", item)
    await t.send("GET", leases_path(name="Not_A_DNS_Name"))
    await t.send("POST", leases_path("missing-namespace"), {"metadata": {"name": t.name}})


async def validation(t: Transcript) -> None:
    name = t.name
    bodies: list[Json | str] = [
        {"metadata": {"name": name}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}},
        {"metadata": {"name": name}, "spec": {"leaseDurationSeconds": -5}},
        {"metadata": {"name": "Not_A_DNS_Name"}},
        {"metadata": {}},
        "null",
        "[]",
        "",
        '{"metadata":{"name":"NAME"}',
        '{"metadata":{"name":"NAME"}} trailing',
        '{"metadata":{"name":"NAME"},"spec":{"leaseDurationSeconds":"15"}}',
        '{"metadata":{"name":"NAME"},"spec":{"leaseTransitions":2147483648}}',
        '{"metadata":{"name":"NAME"},"spec":{"holderIdentity":{}}}',
        '{"metadata":{"name":"NAME","labels":[]}}',
        '{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"NAME"}}',
        '{"kind":"Lease","apiVersion":"v1","metadata":{"name":"NAME"}}',
        '{"kind":"Lease","apiVersion":"coordination.k8s.io/v2","metadata":{"name":"NAME"}}',
        '{"metadata":{"name":"NAME"},"spec":{"renewTime":"2024-05-06T07:08:09Z"}}',
        '{"metadata":{"name":"NAME"},"spec":{"renewTime":"2024-05-06T07:08:09.123Z"}}',
        '{"metadata":{"name":"NAME"},"spec":{"acquireTime":"2024-05-06T25:08:09.123456Z"}}',
        '{"metadata":{"name":"NAME"},"spec":{"acquireTime":"2024-02-30T07:08:09.123456Z"}}',
        '{"metadata":{"name":"NAME"},"spec":{"acquireTime":12}}',
    ]
    for body in bodies:
        await t.send(
            "POST", leases_path(), body.replace("NAME", name) if isinstance(body, str) else body
        )
    unknown = '{"metadata":{"name":"NAME","x":1},"spec":{"a":1,"holderIdentity":"h","a":2},"b":1}'
    for index, validation_mode in enumerate(["", "Warn", "Ignore", "Strict", "strict"]):
        lease = t.names[index]
        params = {"fieldValidation": validation_mode} if validation_mode else {}
        await t.send("POST", leases_path(), unknown.replace("NAME", lease), params=params)
    await t.send("POST", leases_path(), {"metadata": {"name": "x"}}, content_type="text/plain")
    yaml_body = f"metadata:\n  name: {t.names[5]}\nspec:\n  leaseTransitions: 0\n"
    await t.send("POST", leases_path(), yaml_body, content_type="application/yaml")
    spec = {"preferredHolder": "p", "strategy": "OldestEmulationVersion", "holderIdentity": ""}
    await t.send("POST", leases_path(), {"metadata": {"name": t.names[6]}, "spec": spec})


async def patches(t: Transcript) -> None:
    item = leases_path(name=t.name)
    created = await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": SPEC})
    stale_rv = created.json()["metadata"]["resourceVersion"]
    await t.send("PATCH", item, {"spec": {"holderIdentity": None, "x": 1}}, content_type=MERGE)
    await t.send("PATCH", item, {"spec": {"holderIdentity": "s"}}, content_type=STRATEGIC)
    operations = [
        {"op": "test", "path": "/spec/holderIdentity", "value": "s"},
        {"op": "replace", "path": "/spec/leaseDurationSeconds", "value": 30},
        {"op": "remove", "path": "/spec/acquireTime"},
    ]
    await t.send("PATCH", item, operations, content_type=JSON_PATCH)
    stale = {"metadata": {"resourceVersion": stale_rv}, "spec": {}}
    await t.send("PATCH", item, stale, content_type=MERGE)
    await t.send("PATCH", item, {"spec": {"leaseDurationSeconds": 0}}, content_type=MERGE)
    await t.send("PATCH", item, {"spec": {"renewTime": "2024-05-06T07:08:09Z"}}, content_type=MERGE)
    await t.send(
        "PATCH", item, {"spec": {"renewTime": "2024-05-06T07:08:09Z"}}, content_type=STRATEGIC
    )
    await t.send(
        "PATCH",
        item,
        [{"op": "add", "path": "/spec/leaseTransitions", "value": "1"}],
        content_type=JSON_PATCH,
    )
    for content_type in (MERGE, STRATEGIC, JSON_PATCH):
        await t.send("PATCH", item, '{"spec":', content_type=content_type)
    await t.send("PATCH", item, '{"op":"add"}', content_type=JSON_PATCH)
    await t.send(
        "PATCH", item, '[{"op":"move","from":"/nope","path":"/x"}]', content_type=JSON_PATCH
    )
    await t.send("PATCH", item, {"spec": {}}, content_type="application/json")
    await t.send("PATCH", leases_path(name=t.names[1]), {"spec": {}}, content_type=MERGE)


async def authorisation(t: Transcript) -> None:
    item = leases_path(name=t.name)
    created = await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": {}})
    await t.send("PUT", item, created.json(), user="reader")
    await t.send("PATCH", item, {"spec": {}}, user="reader", content_type=MERGE)
    await t.send("DELETE", item, user="reader")
    await t.send("DELETE", leases_path(), user="reader")
    await t.send("POST", leases_path(), {"metadata": {"name": t.names[1]}}, user="reader")
    await t.send("GET", item, user="reader")
    await t.send("DELETE", item, user="elector")
    await t.send("GET", leases_path("kube-system", "foo"), user="elector")
    await t.send("GET", "/apis/coordination.k8s.io/v1/leases", user="elector")
    await t.send(
        "GET", "/apis/coordination.k8s.io/v1/leases", user="elector", params={"watch": "1"}
    )
    await t.send("GET", item, user=None)
    await t.send("GET", "/apis/coordination.k8s.io/v1", user=None)
    await t.send("GET", "/apis", user=None)
    await t.send("GET", "/healthz", user=None)
    await t.send("GET", item, user="bad-token")
    await t.send("GET", "/healthz", user="bad-token")


async def discovery(t: Transcript) -> None:
    for path in (
        "/apis/coordination.k8s.io/v1",
        "/apis/coordination.k8s.io",
        "/apis/coordination.k8s.io/v2",
        "/apis/coordination.k8s.io/v1/namespaces/default",
        "/apis/coordination.k8s.io/v1/namespaces/default/leasecandidates",
        "/healthz",
        "/livez",
        "/readyz",
    ):
        await t.send("GET", path)
    await t.send("POST", leases_path(name=t.name), {})
    await t.send("PUT", leases_path(), {})
    await t.send("HEAD", leases_path(name=t.name))


async def printing(t: Transcript) -> None:
    await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": SPEC})
    for agent in ("curl/8.5.0", "Wget/1.21", "wget/1.21", "Mozilla/5.0 (X11)", "kubectl/v1.36"):
        await t.send("GET", leases_path(name=t.name), headers={"User-Agent": agent})
    await t.send("GET", leases_path(name=t.names[1]), headers={"User-Agent": "curl/8"})
    params = {"fieldSelector": f"metadata.name={t.name}"}
    await t.send("GET", leases_path(), params=params, headers={"User-Agent": "curl/8"})
    await t.send("GET", leases_path(name=t.name), params={"pretty": "true"})
    await t.send(
        "GET", leases_path(name=t.name), params={"pretty": "0"}, headers={"User-Agent": "curl/8"}
    )
    body = {
        "metadata": {"name": t.names[1], "labels": {"a": "<&>"}},
        "spec": {"holderIdentity": "é<"},
    }
    await t.send("POST", leases_path(), body)


async def resource_versions(t: Transcript) -> None:
    item = leases_path(name=t.name)
    await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": {}})
    await t.send("GET", item, params={"resourceVersion": "abc"})
    await t.send("GET", leases_path(), params={"resourceVersion": "abc"})
    await t.send("GET", leases_path(), params={"resourceVersion": "abc", "watch": "1"})
    await t.send("GET", item, params={"resourceVersion": "0"})
    await t.send(
        "GET",
        leases_path(),
        params={"resourceVersion": "0", "fieldSelector": f"metadata.name={t.name}"},
    )
    await t.send("GET", leases_path(), params={"resourceVersionMatch": "Exact"})
    await t.send("GET", leases_path(), params={"fieldSelector": "spec.holderIdentity=x"})
    await t.send("GET", leases_path(), params={"labelSelector": "a in (b"})
    await t.send(
        "GET", leases_path(), params={"limit": "-1", "fieldSelector": f"metadata.name={t.name}"}
    )


async def watch_events(t: Transcript) -> None:
    item = leases_path(name=t.name)
    created = await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": SPEC})
    await t.send("PATCH", item, {"spec": {"holderIdentity": "b"}}, content_type=MERGE)
    await t.send("PUT", item, dict(created.json(), metadata={"name": t.name}))
    await t.send("DELETE", item)
    params = {
        "resourceVersion": created.json()["metadata"]["resourceVersion"],
        "fieldSelector": f"metadata.name={t.name}",
        "timeoutSeconds": "5",
    }
    await t.watch_lines(leases_path(), params, count=2)
    await t.send("POST", leases_path(), {"metadata": {"name": t.name}, "spec": SPEC})
    params = {"resourceVersion": "0", "fieldSelector": f"metadata.name={t.name}"}
    await t.watch_lines(leases_path(), params, count=1)
    await t.send("GET", leases_path(), params={"watch": "false", **params})


SCENARIOS: dict[str, Scenario] = {
    "crud": crud,
    "validation": validation,
    "patches": patches,
    "authorisation": authorisation,
    "discovery": discovery,
    "printing": printing,
    "resource-versions": resource_versions,
    "watch-events": watch_events,
}


@pytest.mark.real_server
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_embedded_answers_as_the_real_server(
    kube_pair: tuple[KubeTarget, KubeTarget], scenario: str
) -> None:
    embedded, real = kube_pair
    names = [real.lease_name(str(index)) for index in range(8)]
    transcripts = []
    for target in (real, embedded):
        transcript = Transcript(target, names)
        await SCENARIOS[scenario](transcript)
        transcripts.append("\n".join(transcript.lines))
    theirs, ours = transcripts
    if ours != theirs:
        diff = difflib.unified_diff(
            theirs.splitlines(), ours.splitlines(), "real", "embedded", lineterm="", n=2
        )
        pytest.fail("the embedded server answered differently:\n" + "\n".join(diff))
