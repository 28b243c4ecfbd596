"""Version, health, API discovery, unknown paths, and how bodies are printed."""

from __future__ import annotations

import json

import pytest
from _kube import GROUP, KubeTarget, RawClient, leases_path, status_body

VERSION_KEYS = [
    "major",
    "minor",
    "emulationMajor",
    "emulationMinor",
    "minCompatibilityMajor",
    "minCompatibilityMinor",
    "gitVersion",
    "gitCommit",
    "gitTreeState",
    "buildDate",
    "goVersion",
    "compiler",
    "platform",
]


async def test_version_is_indented_json_with_emulation_fields(kube: KubeTarget) -> None:
    resp = await kube.raw().get("/version")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    version = resp.json()
    assert list(version) == VERSION_KEYS
    assert all(isinstance(value, str) for value in version.values())
    assert version["major"] == "1"
    assert version["minor"].isdigit()
    assert version["gitVersion"].startswith(f"v1.{version['minor']}.")
    assert version["compiler"] == "gc"
    # Always two-space indented, without a trailing newline, whatever the User-Agent.
    assert resp.body.decode() == json.dumps(version, indent=2)


async def test_version_is_1_36_unless_external(kube: KubeTarget) -> None:
    if kube.kind == "external":
        pytest.skip("an external cluster runs its own version")
    version = (await kube.raw().get("/version")).json()
    assert (version["major"], version["minor"]) == ("1", "36")
    assert (version["emulationMajor"], version["emulationMinor"]) == ("1", "36")
    assert (version["minCompatibilityMajor"], version["minCompatibilityMinor"]) == ("1", "35")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez"])
async def test_health_endpoints_answer_plain_ok(kube: KubeTarget, path: str) -> None:
    resp = await kube.raw().get(path)
    assert resp.status == 200
    assert resp.content_type == "text/plain; charset=utf-8"
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    assert resp.body == b"ok"


async def test_group_version_discovery_lists_leases(kube: KubeTarget) -> None:
    resp = await kube.raw("reader").get(f"/apis/{GROUP}/v1")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.json() == {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{GROUP}/v1",
        "resources": [
            {
                "name": "leases",
                "singularName": "lease",
                "namespaced": True,
                "kind": "Lease",
                "verbs": [
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ],
                "storageVersionHash": "gqkMMb/YqFM=",
            }
        ],
    }
    assert list(resp.json()) == ["kind", "apiVersion", "groupVersion", "resources"]


async def test_group_discovery_offers_v1_only(kube: KubeTarget) -> None:
    resp = await kube.raw().get(f"/apis/{GROUP}")
    assert resp.status == 200
    v1 = {"groupVersion": f"{GROUP}/v1", "version": "v1"}
    assert resp.json() == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [v1],
        "preferredVersion": v1,
    }


async def test_unknown_resource_is_404_with_empty_details(kube: KubeTarget) -> None:
    resp = await kube.raw().get(f"/apis/{GROUP}/v1/namespaces/default/leasecandidates")
    assert resp.status == 404
    assert resp.json() == status_body(
        404, "NotFound", "the server could not find the requested resource", {}
    )


async def _not_found_body(raw: RawClient, name: str, **params: str) -> bytes:
    resp = await raw.get(leases_path(name=name), **params)
    assert resp.status == 404
    return resp.body


@pytest.mark.parametrize("agent", ["curl/8.5.0", "curly/1", "Wget/1.21"])
async def test_user_agents_starting_with_curl_or_wget_get_indented_json(
    kube: KubeTarget, lease_name: str, agent: str
) -> None:
    raw = kube.raw()
    resp = await raw.request("GET", leases_path(name=lease_name), headers={"User-Agent": agent})
    assert resp.status == 404
    assert resp.body.decode() == json.dumps(resp.json(), indent=2)


@pytest.mark.parametrize("agent", ["Curl/8.5.0", "wget/1.21", "python-curl/1"])
async def test_the_user_agent_prefix_check_is_case_sensitive(
    kube: KubeTarget, lease_name: str, agent: str
) -> None:
    raw = kube.raw()
    resp = await raw.request("GET", leases_path(name=lease_name), headers={"User-Agent": agent})
    assert resp.status == 404
    assert resp.body == json.dumps(resp.json(), separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("pretty", ["true", "1"])
async def test_pretty_query_gives_indented_json(
    kube: KubeTarget, lease_name: str, pretty: str
) -> None:
    body = await _not_found_body(kube.raw(), lease_name, pretty=pretty)
    assert body.decode() == json.dumps(json.loads(body), indent=2)


async def test_pretty_false_overrides_a_curl_user_agent(kube: KubeTarget, lease_name: str) -> None:
    resp = await kube.raw().request(
        "GET",
        leases_path(name=lease_name),
        params={"pretty": "false"},
        headers={"User-Agent": "curl/8.5.0"},
    )
    assert resp.body == json.dumps(resp.json(), separators=(",", ":")).encode() + b"\n"


async def test_other_clients_get_compact_json_with_a_newline(
    kube: KubeTarget, lease_name: str
) -> None:
    body = await _not_found_body(kube.raw(), lease_name)
    assert body == json.dumps(json.loads(body), separators=(",", ":")).encode() + b"\n"


async def test_curl_gets_an_indented_lease_and_list(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    assert (await raw.create_lease(lease_name, {"holderIdentity": "a"})).status == 201
    curl = {"User-Agent": "curl/8.5.0"}
    for path, params in (
        (leases_path(name=lease_name), {}),
        (leases_path(), {"fieldSelector": f"metadata.name={lease_name}"}),
    ):
        resp = await raw.request("GET", path, params=params, headers=curl)
        assert resp.status == 200
        assert resp.body.decode() == json.dumps(resp.json(), indent=2)


async def test_api_responses_are_marked_not_cacheable(kube: KubeTarget, lease_name: str) -> None:
    raw = kube.raw()
    created = await raw.create_lease(lease_name)
    missing = await raw.get(leases_path(name=f"{lease_name}-missing"))
    listed = await raw.get(leases_path())
    forbidden = await kube.raw("reader").request("DELETE", leases_path(name=lease_name))
    for resp in (created, missing, listed, forbidden):
        assert resp.headers.get("Cache-Control") == "no-cache, private"
    # Only the authorisation failure says nosniff (as does /healthz).
    assert forbidden.headers.get("X-Content-Type-Options") == "nosniff"
    assert "X-Content-Type-Options" not in missing.headers
