"""The exceptions leaderelect raises.

```
LeaderElectionError
├── ConfigError(LeaderElectionError, ValueError)  an invalid setting, named in the message
├── LeaseError                                    an API call on the Lease failed
│   ├── LeaseConflict       409: stale resourceVersion, or the Lease already exists
│   ├── LeaseNotFound       404: the Lease (or its namespace) does not exist
│   ├── LeaseForbidden      401/403: the message names the missing RBAC verb and resource
│   ├── LeaseInvalid        400/422, or a response that is not a Lease at all
│   ├── WatchExpired        410: the watch's resourceVersion is too old; re-read and re-watch
│   └── ApiUnavailable      timeout, connection error, 429 or 5xx: worth retrying
└── LeadershipLost          the body of ``leading()`` was cancelled because the lease was lost
                            (defined with the term, in ``_term.py``)
```

Every ``LeaseError`` carries the lease (``"namespace/name"``), the verb that failed and the HTTP
status (``None`` for transport errors). No kubernetes_asyncio or aiohttp exception reaches a
caller: they are translated in ``_kube/_errors.py`` and chained with ``raise ... from``.
"""

from __future__ import annotations

import enum

__all__ = [
    "ApiUnavailable",
    "ConfigError",
    "LeaderElectionError",
    "LeaseConflict",
    "LeaseError",
    "LeaseForbidden",
    "LeaseInvalid",
    "LeaseNotFound",
    "LossReason",
    "WatchExpired",
]


class LeaderElectionError(Exception):
    """The root of every exception leaderelect raises on purpose."""


class ConfigError(LeaderElectionError, ValueError):
    """Raised when a setting is invalid; the message names the setting and the rule."""


class LeaseError(LeaderElectionError):
    """Raised when an API call on the Lease fails.

    Attributes:
        lease: ``"namespace/name"`` of the Lease.
        verb: the Kubernetes verb that failed (``get``, ``create``, ``update``, ``watch``...).
        status: the HTTP status code, or ``None`` when no response arrived.
        reason: the ``reason`` of the Kubernetes ``Status`` body, when there was one.
        retry_after: seconds the server asked us to wait (``Retry-After``), if it did.
    """

    def __init__(
        self,
        message: str,
        *,
        lease: str,
        verb: str,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.lease = lease
        self.verb = verb
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class LeaseConflict(LeaseError):
    """Raised on 409: the write was based on a stale resourceVersion, or the Lease exists."""


class LeaseNotFound(LeaseError):
    """Raised on 404: the Lease, or its namespace, does not exist."""


class LeaseForbidden(LeaseError):
    """Raised on 401/403; the message names the RBAC verb and resource to grant."""


class LeaseInvalid(LeaseError):
    """Raised on 400/422, or when the server's answer is not a usable Lease."""


class WatchExpired(LeaseError):
    """Raised when a watch's resourceVersion is too old (410 Gone): re-read, then re-watch."""


class ApiUnavailable(LeaseError):
    """Raised on timeouts, connection errors, 429 and 5xx: transient, worth retrying; its
    ``retry_after`` says how long the server asked us to wait, if it did."""


class LossReason(enum.Enum):
    """Why a term of leadership ended."""

    RENEW_DEADLINE = "renew deadline passed without a successful renewal"
    """No renewal succeeded before the local deadline: leadership can no longer be guaranteed."""

    OTHER_HOLDER = "another holder was observed"
    """A read, a watch event or a 409 showed another identity holding the lease."""

    LEASE_DELETED = "the lease was deleted"
    """The Lease object disappeared while we held it."""

    RELEASED_BY_OTHER = "the lease was released by someone else"
    """The Lease was emptied (holder "") by another writer while we held it."""

    PREFERRED_HOLDER = "stepped down: the coordinated-election controller prefers another holder"
    """Coordinated election only: the controller set ``preferredHolder`` to another
    candidate; the work was cancelled and the lease released for it."""
