"""Kubeconfig files pointing at the in-process server (plain HTTP, bearer token).

A kubeconfig's server URL is ``<url>/_token/<token>``: clients that send the bearer token
(kubernetes_asyncio) authenticate with it, and kubectl, which never sends credentials over plain
HTTP, authenticates by that path prefix, which the server strips (:func:`split_credential`)
before anything else.
"""

from __future__ import annotations

import json
import pathlib

__all__ = [
    "TOKEN_PREFIX",
    "credential_url",
    "kubeconfig_text",
    "split_credential",
    "write_kubeconfig",
]

TOKEN_PREFIX = "_token"


def credential_url(url: str, token: str) -> str:
    """The server URL a kubeconfig names: ``url`` with the token as a path prefix."""
    return f"{url}/{TOKEN_PREFIX}/{token}"


def split_credential(path: str) -> tuple[str, str | None]:
    """Strip the ``/_token/<token>`` prefix from a request path: ``(path, token or None)``."""
    prefix = f"/{TOKEN_PREFIX}/"
    if not path.startswith(prefix):
        return path, None
    token, _, rest = path[len(prefix) :].partition("/")
    return "/" + rest, token


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(value)


def kubeconfig_text(*, server: str, user: str, token: str, namespace: str) -> str:
    """A kubeconfig with one cluster, one user and one current context named after the user."""
    return "\n".join(
        [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- name: leaderelect",
            "  cluster:",
            f"    server: {_q(server)}",
            "users:",
            f"- name: {_q(user)}",
            "  user:",
            f"    token: {_q(token)}",
            "contexts:",
            f"- name: {_q(user)}",
            "  context:",
            "    cluster: leaderelect",
            f"    user: {_q(user)}",
            f"    namespace: {_q(namespace)}",
            f"current-context: {_q(user)}",
            "preferences: {}",
            "",
        ]
    )


def write_kubeconfig(
    directory: pathlib.Path, *, server: str, user: str, token: str, namespace: str
) -> pathlib.Path:
    """Write ``<user>-<namespace>.kubeconfig`` in ``directory`` (mode 0600) and return its path."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{user}-{namespace}")
    path = directory / f"{safe}.kubeconfig"
    path.write_text(
        kubeconfig_text(server=server, user=user, token=token, namespace=namespace),
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path
