"""Who a candidate is: the ``holderIdentity`` it writes."""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["default_identity"]


def default_identity() -> str:
    """``$POD_NAME`` when set (the downward API), else ``<hostname>_<random uuid>``.

    Identities must be unique: two of our candidates sharing one would keep taking the lease
    from each other (and two client-go candidates would both believe they lead).
    """
    pod = os.environ.get("POD_NAME", "").strip()
    return pod or f"{socket.gethostname()}_{uuid.uuid4()}"
