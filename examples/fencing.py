"""A downstream store that rejects writes from old terms, using leaderelect's fencing tokens.

Run it with ``python examples/fencing.py``; the documentation includes the ``store`` section.
"""

from __future__ import annotations

from leaderelect import FencingToken


# --8<-- [start:store]
class StaleLeader(Exception):
    """A write came from a term older than one the store has already seen."""


class FencedStore:
    """Keeps, per key, the value and the token of the newest term that wrote it."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[FencingToken, str]] = {}

    def write(self, key: str, value: str, token: FencingToken) -> None:
        current = self._data.get(key)
        if current is not None:
            seen, _ = current
            same_lease = seen.lease_uid == token.lease_uid
            if same_lease and token.transitions < seen.transitions:
                raise StaleLeader(f"{key}: token {token} is older than {seen}")
        self._data[key] = (token, value)

    def read(self, key: str) -> str | None:
        current = self._data.get(key)
        return None if current is None else current[1]


# --8<-- [end:store]


def main() -> None:
    store = FencedStore()
    old = FencingToken(lease_uid="0b6f4c1e", transitions=3)
    new = FencingToken(lease_uid="0b6f4c1e", transitions=4)
    store.write("config", "written by term 3", old)
    store.write("config", "written by term 4", new)
    try:
        store.write("config", "late write from term 3", old)
    except StaleLeader as exc:
        print(f"rejected: {exc}")
    print(f"config = {store.read('config')!r}")


if __name__ == "__main__":
    main()
