"""The rules for Kubernetes names: a Lease's name and its namespace."""

from __future__ import annotations

import re

from .._errors import ConfigError

__all__ = ["validate_name", "validate_namespace"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def validate_name(name: object) -> None:
    """Refuse a Lease name that is not a lowercase RFC 1123 subdomain.

    Raises:
        ConfigError: ``name`` is not a valid Lease name; the message states the rule.
    """
    _validate(
        name,
        "name",
        253,
        _DNS_SUBDOMAIN,
        "is not a valid Lease name: it must be a lowercase RFC 1123 subdomain (at most 253 "
        "characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit)",
    )


def validate_namespace(namespace: object) -> None:
    """Refuse a namespace that is not a lowercase RFC 1123 label.

    Raises:
        ConfigError: ``namespace`` is not a valid namespace; the message states the rule.
    """
    _validate(
        namespace,
        "namespace",
        63,
        _DNS_LABEL,
        "is not a valid namespace: it must be a lowercase RFC 1123 label (at most 63 "
        "characters of a-z, 0-9 and '-', starting and ending with a letter or digit)",
    )


def _validate(
    value: object, argument: str, limit: int, pattern: re.Pattern[str], rule: str
) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{argument} must be a non-empty string, got {value!r}")
    if len(value) > limit or not pattern.fullmatch(value):
        raise ConfigError(f"{argument} {value!r} {rule}")
