"""Kubeconfig files pointing at the in-process server (plain HTTP, bearer token)."""

from __future__ import annotations

import json
import pathlib

__all__ = ["kubeconfig_text", "write_kubeconfig"]


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
