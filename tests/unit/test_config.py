"""Settings are validated at construction, with messages that name the setting and the rule."""

from __future__ import annotations

import re
from typing import Any

import pytest

from leaderelect import ConfigError, LeaderElector, Timings


class _NoLock:
    lease = "default/unused"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            {"lease_duration": 0},
            r"lease_duration must be greater than 0 seconds, got 0",
            id="zero lease_duration",
        ),
        pytest.param(
            {"renew_deadline": -1},
            r"renew_deadline must be greater than 0 seconds, got -1",
            id="negative renew_deadline",
        ),
        pytest.param(
            {"retry_period": float("nan")},
            r"retry_period must be greater than 0 seconds",
            id="nan retry_period",
        ),
        pytest.param(
            {"retry_period": "2"},
            r"retry_period must be a number of seconds, got '2'",
            id="string retry_period",
        ),
        pytest.param(
            {"lease_duration": True},
            r"lease_duration must be a number of seconds, got True",
            id="boolean lease_duration",
        ),
        pytest.param(
            {"lease_duration": 15, "renew_deadline": 2.4, "retry_period": 2},
            r"renew_deadline \(2.4s\) must be greater than 1.2 \* retry_period \(2.4s\)",
            id="renew_deadline not above 1.2 retry periods",
        ),
        pytest.param(
            {"lease_duration": 11, "renew_deadline": 10, "retry_period": 2},
            r"lease_duration \(11s\) must be greater than renew_deadline \+ retry_period \(12s\).*"
            r"safety margin",
            id="no safety margin (client-go accepts this)",
        ),
        pytest.param(
            {"lease_duration": 10, "renew_deadline": 12, "retry_period": 2},
            r"lease_duration \(10s\) must be greater than renew_deadline \+ retry_period",
            id="renew_deadline above lease_duration",
        ),
    ],
)
def test_invalid_timings_are_refused_naming_the_setting(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Timings(**settings)
    with pytest.raises(ConfigError, match=message):
        LeaderElector(_NoLock(), identity="x", **settings)  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        Timings(lease_duration=-5)


def test_defaults_are_kubernetes_components_defaults() -> None:
    timings = Timings()
    assert (timings.lease_duration, timings.renew_deadline, timings.retry_period) == (15, 10, 2)
    assert timings.margin == 5


@pytest.mark.parametrize("identity", ["", "   ", 7], ids=["empty", "blank", "not a string"])
def test_identity_must_be_a_non_empty_string(identity: Any) -> None:
    with pytest.raises(ConfigError, match="identity must be a non-empty string"):
        LeaderElector(_NoLock(), identity=identity)  # type: ignore[arg-type]


def test_identity_keeps_the_pod_name_and_is_unique_per_elector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAME", "web-7f9c-abcde")
    first = LeaderElector(_NoLock()).identity  # type: ignore[arg-type]
    second = LeaderElector(_NoLock()).identity  # type: ignore[arg-type]
    # Two worker processes of one pod see the same POD_NAME; they must not share an identity.
    assert re.fullmatch(r"web-7f9c-abcde_[0-9a-f]{8}", first), first
    assert first != second


def test_identity_without_pod_name_is_hostname_and_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    first = LeaderElector(_NoLock()).identity  # type: ignore[arg-type]
    second = LeaderElector(_NoLock()).identity  # type: ignore[arg-type]
    assert first != second
    assert first.split("_")[0] == second.split("_")[0]
