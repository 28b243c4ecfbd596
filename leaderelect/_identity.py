"""Who a candidate is: the ``holderIdentity`` it writes."""

from __future__ import annotations

import os
import secrets
import socket
import uuid

__all__ = ["default_identity"]


def default_identity() -> str:
    """An identity unique to this call: ``<$POD_NAME>_<8 random hex digits>`` when
    ``POD_NAME`` is set (the downward API), else ``<hostname>_<random uuid>``.

    The pod's name stays readable in ``kubectl get lease``, and the random part keeps two
    processes of one pod apart (``uvicorn --workers 2``, gunicorn): each is a candidate of its
    own, and only one of them leads. Call it once per elector.
    """
    pod = os.environ.get("POD_NAME", "").strip()
    if pod:
        return f"{pod}_{secrets.token_hex(4)}"
    return f"{socket.gethostname()}_{uuid.uuid4()}"
