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
        self._retired: set[str] = set()  # uids of Lease objects that were replaced

    def write(self, key: str, value: str, token: FencingToken) -> None:
        if token.lease_uid in self._retired:
            raise StaleLeader(f"{key}: token {token} is from a Lease that was replaced")
        current = self._data.get(key)
        if current is not None:
            seen, _ = current
            if not token.same_lease(seen):
                # The Lease was deleted and created again: a new uid, counting from 0. The
                # election waits out the old holder's claim before the new object's first
                # term, so the new uid is the later one; the old one is never accepted again.
                self._retired.add(seen.lease_uid)
            elif token < seen:
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
    recreated = FencingToken(lease_uid="9d2a77c0", transitions=0)  # the Lease was recreated
    store.write("config", "written by the recreated lease's first term", recreated)
    try:
        store.write("config", "late write from term 4", new)
    except StaleLeader as exc:
        print(f"rejected: {exc}")
    print(f"config = {store.read('config')!r}")


if __name__ == "__main__":
    main()
