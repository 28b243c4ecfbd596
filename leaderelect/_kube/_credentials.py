"""Credentials a lock owns: bearer tokens refreshed before they expire, and after a 401.

kubernetes_asyncio's loaders compute a token once; its own ``refresh_token(loader, ...)`` loop
refreshes it only if someone runs that loop. A lock built by
:meth:`LeaseLock.connect <leaderelect.LeaseLock.connect>`,
:meth:`~leaderelect.LeaseLock.from_kubeconfig` or :meth:`~leaderelect.LeaseLock.in_cluster`
keeps its loader here instead, and installs :meth:`Credentials.before_request` as the
configuration's ``refresh_api_key_hook``, which kubernetes_asyncio awaits before every request:

* a token that says when it expires (an exec plugin's ``ExecCredential.status
  .expirationTimestamp``, an OIDC id-token's ``exp``, a GCP access token's ``expiry``) is
  replaced once ``min(5 minutes, half its lifetime)`` is left, so no request carries a token
  about to expire; a refresh that fails while the old token is still valid is logged and tried
  again later;
* a token read from a file (the pod's service-account token, a kubeconfig ``tokenFile``), which
  the kubelet rotates, is read again every minute;
* after a 401, :meth:`Credentials.recover` reloads the credentials (at most once every few
  seconds) and says whether the request is worth sending again.

No task runs in the background: refreshes happen on the way to a request, under its timeout.
Only bearer tokens are refreshed; client certificates are read once, when the client is built.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, final

import anyio
import kubernetes_asyncio.client
from kubernetes_asyncio.config.config_exception import ConfigException

__all__ = ["Credentials", "KubeconfigSource", "ServiceAccountSource", "TokenSource"]

logger = logging.getLogger(__name__)

_UTC = datetime.timezone.utc
_MAX_MARGIN = datetime.timedelta(minutes=5)
"""Refresh an expiring token this long before it expires (or at half its lifetime, if sooner)."""
_MIN_LIFETIME = datetime.timedelta(seconds=1)
"""Never plan the next refresh sooner than this after the last one."""
_FILE_PERIOD = datetime.timedelta(minutes=1)
"""Read a token file again this often (client-go's cached token source does the same)."""
_RETRY_FAILED = datetime.timedelta(seconds=30)
"""After a failed refresh while the old token is still valid, try again after at most this."""
_RELOAD_AT_MOST_EVERY = 2.0
"""Seconds between two reloads forced by 401 answers (an exec plugin can be slow)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(_UTC)


class TokenSource(ABC):
    """Where a bearer token comes from, and how to get a fresh one."""

    description: str
    """What the source is, for log lines (``"kubeconfig exec plugin"``, ...)."""

    @property
    @abstractmethod
    def refreshable(self) -> bool:
        """True when a reload can give another token (not a token written in a kubeconfig)."""

    @property
    @abstractmethod
    def periodic(self) -> bool:
        """True when the token comes from a file that may change (read it every minute)."""

    @abstractmethod
    async def load(self) -> tuple[str | None, datetime.datetime | None]:
        """A fresh ``Authorization`` value (``"Bearer ..."``) and its expiry, if known."""


@final
class KubeconfigSource(TokenSource):
    """The user of a kubeconfig context, through the kubernetes_asyncio loader that read it.

    The loader is kept (not built again from the file) because an OIDC refresh token may be
    single-use: the loader holds the one the provider sent last.
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        user = loader._user  # the context's `user:` section (a ConfigNode), or None
        self._user: Any = user
        provider = loader.provider
        if provider == "gcp":
            self.kind = "gcp"
        elif provider == "oidc":
            self.kind = "oidc"
        elif user is not None and "exec" in user:
            self.kind = "exec"
        elif user is not None and "tokenFile" in user:
            self.kind = "tokenFile"
        else:
            self.kind = "static"
        self.description = {
            "gcp": "kubeconfig gcp auth-provider",
            "oidc": "kubeconfig oidc auth-provider",
            "exec": "kubeconfig exec plugin",
            "tokenFile": "kubeconfig tokenFile",
            "static": "kubeconfig",
        }[self.kind]

    @property
    def refreshable(self) -> bool:
        return self.kind != "static"

    @property
    def periodic(self) -> bool:
        return self.kind == "tokenFile"

    @property
    def loader(self) -> Any:
        """The kubernetes_asyncio ``KubeConfigLoader``."""
        return self._loader

    def current(self) -> tuple[str | None, datetime.datetime | None]:
        """The token the loader holds now, and its expiry."""
        token = getattr(self._loader, "token", None)
        return (token if isinstance(token, str) else None), self._expiry()

    async def load(self) -> tuple[str | None, datetime.datetime | None]:
        # Make the loader forget what it cached, so that it asks again: its own checks would
        # reuse a token until 5 minutes before its expiry, which is too late for short ones.
        loader = self._loader
        if self.kind == "exec":
            loader.__dict__.pop("exec_plugin_expiry", None)
        elif self.kind == "gcp":
            config = self._user["auth-provider"].safe_get("config")
            if config is not None:
                config.value.pop("access-token", None)
        elif self.kind == "oidc":
            config = self._user["auth-provider"].safe_get("config")
            if config is not None and "refresh-token" in config:
                config.value.pop("id-token", None)
        await loader._load_authentication()
        return self.current()

    def _expiry(self) -> datetime.datetime | None:
        try:
            if self.kind == "exec":
                expiry = getattr(self._loader, "exec_plugin_expiry", None)
                return _aware(expiry) if isinstance(expiry, datetime.datetime) else None
            if self.kind not in ("gcp", "oidc"):
                return None
            config = self._user["auth-provider"].safe_get("config")
            if config is None:
                return None
            if self.kind == "gcp":
                return _parse_time(config.safe_get("expiry"))
            return _jwt_expiry(config.safe_get("id-token"))
        except (ConfigException, KeyError, TypeError, ValueError):
            return None


@final
class ServiceAccountSource(TokenSource):
    """The pod's service-account token file, which the kubelet rotates."""

    description = "service-account token"

    def __init__(self, token_file: Path) -> None:
        self._token_file = anyio.Path(token_file)

    @property
    def refreshable(self) -> bool:
        return True

    @property
    def periodic(self) -> bool:
        return True

    async def load(self) -> tuple[str | None, datetime.datetime | None]:
        try:
            content = (await self._token_file.read_text()).strip()
        except OSError as exc:
            raise ConfigException(f"cannot read {str(self._token_file)!r}: {exc}") from exc
        if not content:
            raise ConfigException(f"{str(self._token_file)!r} is empty")
        return f"Bearer {content}", None


@final
class Credentials:
    """The bearer token of one kubernetes_asyncio ``Configuration``, kept fresh.

    Args:
        configuration: the configuration whose ``api_key["BearerToken"]`` this keeps.
        source: where tokens come from.
        token: the token the loader put there, if any.
        expiry: when ``token`` expires, if known.
    """

    def __init__(
        self,
        configuration: kubernetes_asyncio.client.Configuration,
        source: TokenSource,
        *,
        token: str | None,
        expiry: datetime.datetime | None,
    ) -> None:
        self._configuration = configuration
        self._source = source
        self._lock = anyio.Lock()
        self._token = token
        self._expiry: datetime.datetime | None = None
        self._refresh_at: datetime.datetime | None = None
        self._changed_at = -float("inf")
        self._forced_at = -float("inf")
        self._plan(token, expiry, _now())
        configuration.refresh_api_key_hook = self.before_request

    @property
    def token(self) -> str | None:
        """The ``Authorization`` value requests carry now."""
        return self._token

    @property
    def expiry(self) -> datetime.datetime | None:
        """When the current token expires, if known."""
        return self._expiry

    @property
    def refresh_at(self) -> datetime.datetime | None:
        """When the next refresh is due (``None``: never, the token does not change)."""
        return self._refresh_at

    async def before_request(self, configuration: kubernetes_asyncio.client.Configuration) -> None:
        """kubernetes_asyncio's ``refresh_api_key_hook``: refresh the token when it is due."""
        due = self._refresh_at
        if due is not None and _now() >= due:
            async with self._lock:
                due = self._refresh_at
                if due is not None and _now() >= due:
                    await self._scheduled_refresh()
        if self._token is not None:
            configuration.api_key["BearerToken"] = self._token

    async def recover(self, since: float) -> bool:
        """After a 401 to a request sent at ``since`` (``anyio.current_time()``): True when
        the credentials changed since then, or could be reloaded into new ones, so the request
        is worth sending once more."""
        if not self._source.refreshable:
            return False
        async with self._lock:
            if self._changed_at >= since:
                return True
            now = anyio.current_time()
            if now - self._forced_at < _RELOAD_AT_MOST_EVERY:
                return False
            self._forced_at = now
            old = self._token
            try:
                await self._reload()
            except Exception as exc:  # a plugin or provider failing: the 401 stands
                logger.warning(
                    "the API server rejected the credentials (401), and reloading them failed: "
                    "%s: %s: %s",
                    self._source.description,
                    type(exc).__name__,
                    exc,
                )
                return False
            changed = self._token != old
            logger.info(
                "the API server rejected the credentials (401); reloaded them from the %s%s",
                self._source.description,
                "" if changed else " (unchanged)",
            )
            return changed

    async def _scheduled_refresh(self) -> None:
        try:
            await self._reload()
        except Exception as exc:
            now = _now()
            expiry = self._expiry
            if expiry is not None and now < expiry:
                retry = min(_RETRY_FAILED, max(_MIN_LIFETIME, (expiry - now) / 4))
                self._refresh_at = now + retry
                logger.warning(
                    "refreshing the credentials (%s) failed; the current token is valid until "
                    "%s, trying again in %.0fs: %s: %s",
                    self._source.description,
                    expiry.isoformat(),
                    retry.total_seconds(),
                    type(exc).__name__,
                    exc,
                )
                return
            if expiry is None:
                # A token file that cannot be read now: keep the token we have, read it later.
                self._refresh_at = now + _FILE_PERIOD
                logger.warning(
                    "reading the credentials (%s) failed; keeping the current token: %s: %s",
                    self._source.description,
                    type(exc).__name__,
                    exc,
                )
                return
            raise ConfigException(
                f"the token expired at {expiry.isoformat()} and refreshing it failed "
                f"({self._source.description}): {type(exc).__name__}: {exc}"
            ) from exc

    async def _reload(self) -> None:
        token, expiry = await self._source.load()
        if token is not None and token != self._token:
            self._token = token
            self._changed_at = anyio.current_time()
            self._configuration.api_key["BearerToken"] = token
            logger.debug(
                "credentials refreshed from the %s%s",
                self._source.description,
                f", valid until {expiry.isoformat()}" if expiry is not None else "",
            )
        self._plan(token, expiry, _now())

    def _plan(
        self, token: str | None, expiry: datetime.datetime | None, now: datetime.datetime
    ) -> None:
        self._expiry = expiry
        if not self._source.refreshable or (token is None and not self._source.periodic):
            self._refresh_at = None
        elif expiry is not None:
            margin = min(_MAX_MARGIN, max(expiry - now, datetime.timedelta(0)) / 2)
            self._refresh_at = max(expiry - margin, now + _MIN_LIFETIME)
        elif self._source.periodic:
            self._refresh_at = now + _FILE_PERIOD
        else:
            self._refresh_at = None


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


def _parse_time(value: object) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return _aware(value)
    if isinstance(value, str) and value:
        from kubernetes_asyncio.config.dateutil import parse_rfc3339

        return _aware(parse_rfc3339(value))
    return None


def _jwt_expiry(token: object) -> datetime.datetime | None:
    if not isinstance(token, str):
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, Mapping) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return datetime.datetime.fromtimestamp(exp, _UTC)
