"""Coordinated candidates: settings checked at construction, pings recognised."""

from __future__ import annotations

import pytest

from leaderelect import ConfigError, LeaderElector, LeaseLock
from leaderelect._candidacy import candidate_identity, candidate_settings, pinged

GOOD = {
    "binary_version": "1.36.0",
    "emulation_version": "1.35.0",
    "strategy": "OldestEmulationVersion",
}


def test_good_settings_are_kept_and_emulation_defaults_to_the_binary_version() -> None:
    settings = candidate_settings("pod-a", **GOOD)
    assert (settings.binary_version, settings.emulation_version) == ("1.36.0", "1.35.0")
    alone = candidate_settings(
        "pod-a", binary_version="1.36.2", emulation_version=None, strategy="example.com/mine"
    )
    assert alone.emulation_version == "1.36.2"


@pytest.mark.parametrize(
    ("identity", "changes", "names"),
    [
        ("pod-a", {"binary_version": None}, "binary_version"),
        ("pod-a", {"binary_version": "v1.36.0"}, "binary_version"),
        ("pod-a", {"emulation_version": "1.35"}, "emulation_version"),
        ("pod-a", {"emulation_version": "1.37.0"}, "emulation_version"),
        ("pod-a", {"strategy": "Foo"}, "strategy"),
        ("pod-a", {"strategy": ""}, "strategy"),
        ("Pod_A", {}, "identity"),
        ("x" * 254, {}, "identity"),
    ],
)
def test_settings_kube_apiserver_would_reject_fail_naming_the_setting(
    identity: str, changes: dict[str, object], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        candidate_settings(identity, **{**GOOD, **changes})  # type: ignore[arg-type]


def test_a_default_identity_becomes_a_valid_candidate_name() -> None:
    assert candidate_identity("Web-7d9f_1a2b3c4d") == "web-7d9f-1a2b3c4d"
    assert candidate_identity("__") == "candidate"
    candidate_settings(candidate_identity("My_Host.Example_ab12"), **GOOD)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"renewTime": "2026-12-03T17:00:00.000000Z"}, False),
        (
            {
                "renewTime": "2026-12-03T17:00:00.000000Z",
                "pingTime": "2026-12-03T17:00:01.000000Z",
            },
            True,
        ),
        (
            {
                "renewTime": "2026-12-03T17:00:02.000000Z",
                "pingTime": "2026-12-03T17:00:01.000000Z",
            },
            False,
        ),
        ({"pingTime": "2026-12-03T17:00:01.000000Z"}, True),
        ({"pingTime": "not a time"}, False),
        ({}, False),
    ],
)
def test_a_ping_is_a_ping_time_later_than_the_renewal(spec: dict[str, str], expected: bool) -> None:
    assert pinged({"spec": spec}) is expected
    assert pinged({"spec": "garbage"}) is False


async def test_the_elector_checks_coordinated_settings_at_construction() -> None:
    lock = LeaseLock.__new__(LeaseLock)  # never used: construction fails first
    with pytest.raises(ConfigError, match="binary_version"):
        LeaderElector(lock, identity="pod-a", coordinated=True)
    with pytest.raises(ConfigError, match="coordinated=True only"):
        LeaderElector(lock, identity="pod-a", binary_version="1.36.0")
    with pytest.raises(ConfigError, match="identity"):
        LeaderElector(lock, identity="Pod_A", coordinated=True, binary_version="1.36.0")
