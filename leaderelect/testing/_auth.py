"""Bearer-token users and RBAC-style rules, answered as kube-apiserver answers them.

A :class:`User` has a name, a token (valid until ``token_expires``, if given) and either no
rules (a superuser, like ``system:masters``) or a list of :class:`Rule`. Like RBAC, a rule
allows a request when the verb, the resource, the namespace and (when given) the resource name
all match; a rule without ``namespaces`` is a ClusterRole bound cluster-wide, so it also covers
cluster-scope requests (a list or watch of Leases in all namespaces). Every authenticated user
may read the discovery and health paths (``system:discovery``); the anonymous user only the
health and version paths.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
from collections.abc import Collection, Iterable, Sequence

__all__ = [
    "ANONYMOUS",
    "VERBS",
    "Rule",
    "User",
    "admin_user",
    "standard_users",
]

ANONYMOUS = "system:anonymous"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")

_PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version", "/version/")
_DISCOVERY_PATHS = (*_PUBLIC_PATHS, "/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*")


def _matches(value: str, allowed: Collection[str] | None) -> bool:
    return allowed is None or "*" in allowed or value in allowed


def _path_matches(path: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == path:
            return True
        if pattern.endswith("*") and path.startswith(pattern[:-1]):
            return True
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What a user may do, as one RBAC ``PolicyRule`` plus the namespaces it is bound in.

    Attributes:
        verbs: Kubernetes verbs (``get``, ``list``, ``watch``, ``create``, ``update``, ``patch``,
            ``delete``, ``deletecollection``) or ``"*"``.
        resources: resource names (``leases``) or ``"*"``.
        namespaces: the namespaces the rule is bound in; ``None`` binds it cluster-wide (all
            namespaces and cluster-scope requests).
        resource_names: when given, only requests naming one of these objects match (never a
            create, list without a name, or deletecollection — as in RBAC).
        api_groups: API groups (``coordination.k8s.io``) or ``"*"``.
        non_resource_urls: extra non-resource paths (``/metrics``, ``/debug/*``) the rule allows.
    """

    verbs: Collection[str] = ("*",)
    resources: Collection[str] = ("*",)
    namespaces: Collection[str] | None = None
    resource_names: Collection[str] | None = None
    api_groups: Collection[str] = ("*",)
    non_resource_urls: Collection[str] = ()

    def allows(
        self,
        verb: str,
        *,
        group: str,
        resource: str,
        namespace: str | None,
        name: str | None,
    ) -> bool:
        """True when this rule allows the resource request."""
        if not _matches(verb, self.verbs) or not _matches(resource, self.resources):
            return False
        if not _matches(group, self.api_groups):
            return False
        if self.namespaces is not None and (namespace is None or namespace not in self.namespaces):
            return False
        if self.resource_names is not None:
            return name is not None and name in self.resource_names
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """A user the server authenticates by bearer token.

    Attributes:
        name: the user name (``admin``, ``elector``, ...), as RBAC messages print it.
        token: the bearer token.
        rules: ``None`` for a superuser (allowed everything), else the rules that allow requests.
        token_expires: when ``token`` stops working (a timezone-aware time; requests carrying it
            are answered 401 ``Unauthorized`` from then on, as kube-apiserver answers an expired
            token); ``None`` for never.
    """

    name: str
    token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    rules: tuple[Rule, ...] | None = None
    token_expires: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.token_expires is not None and self.token_expires.tzinfo is None:
            raise ValueError("token_expires must be timezone-aware (datetime.timezone.utc)")

    @property
    def is_superuser(self) -> bool:
        """True when the user may do everything."""
        return self.rules is None

    def allows(
        self,
        verb: str,
        *,
        group: str,
        resource: str,
        namespace: str | None,
        name: str | None,
    ) -> bool:
        """True when the user may make the resource request."""
        if self.rules is None:
            return True
        return any(
            r.allows(verb, group=group, resource=resource, namespace=namespace, name=name)
            for r in self.rules
        )

    def allows_path(self, path: str) -> bool:
        """True when the user may GET a non-resource path."""
        if self.rules is None:
            return True
        if _path_matches(path, _DISCOVERY_PATHS):
            return True
        return any(_path_matches(path, r.non_resource_urls) for r in self.rules)


def anonymous_allows_path(path: str) -> bool:
    """True for the paths an unauthenticated request may GET (``system:public-info-viewer``)."""
    return path in _PUBLIC_PATHS


def make_user(
    name: str,
    rules: Sequence[Rule] | None = None,
    token: str | None = None,
    token_expires: datetime.datetime | None = None,
) -> User:
    """A :class:`User`; ``rules=None`` makes a superuser, ``token=None`` a random token."""
    frozen_rules = None if rules is None else tuple(rules)
    if token is None:
        return User(name, rules=frozen_rules, token_expires=token_expires)
    return User(name, token, frozen_rules, token_expires)


def admin_user(token: str | None = None) -> User:
    """The default user: ``admin``, allowed everything."""
    return make_user("admin", None, token)


def standard_users() -> list[User]:
    """The users the real server's ``up.sh`` creates.

    ``admin`` may do everything; ``elector`` may get, list, watch, create, update and patch
    Leases in ``default``; ``reader`` may get, list and watch them there.
    """
    leases = ("leases",)
    group = ("coordination.k8s.io",)
    return [
        admin_user(),
        make_user(
            "elector",
            [
                Rule(
                    verbs=("get", "list", "watch", "create", "update", "patch"),
                    resources=leases,
                    namespaces=("default",),
                    api_groups=group,
                )
            ],
        ),
        make_user(
            "reader",
            [
                Rule(
                    verbs=("get", "list", "watch"),
                    resources=leases,
                    namespaces=("default",),
                    api_groups=group,
                )
            ],
        ),
    ]
