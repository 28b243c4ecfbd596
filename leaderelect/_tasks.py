"""Background tasks scoped to a block of the caller's code.

anyio task groups wrap an exception raised in their host block into an ``ExceptionGroup``.
Our context managers run the caller's code as that host block, and the caller's exceptions
must come out as themselves; ``BackgroundTasks`` gives the same ownership (every task is
cancelled and awaited when the block ends) without the wrapping. A background task that
fails still cancels the block, and its exception surfaces when the block ends.
"""

from __future__ import annotations

from types import TracebackType
from typing import final

import anyio
from anyio.abc import TaskGroup

__all__ = ["BackgroundTasks"]


@final
class BackgroundTasks:
    """``async with BackgroundTasks() as tg:`` — tasks started on ``tg`` end with the block."""

    def __init__(self) -> None:
        self._group: TaskGroup | None = None
        self._closed = False

    async def __aenter__(self) -> TaskGroup:
        if self._group is not None:
            raise RuntimeError("BackgroundTasks can be entered only once")
        self._group = anyio.create_task_group()
        return await self._group.__aenter__()

    @property
    def entered(self) -> bool:
        """True once the block has been entered."""
        return self._group is not None

    @property
    def group(self) -> TaskGroup:
        """The task group (only once entered)."""
        assert self._group is not None, "BackgroundTasks not entered"
        return self._group

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        await self.close()
        return False

    async def close(self) -> None:
        """Cancel the tasks and wait for them (shielded: an outer cancellation cannot cut the
        wait short and leave them running). Raises what a failed task raised. Idempotent."""
        group = self._group
        assert group is not None, "BackgroundTasks.close() before __aenter__"
        if self._closed:
            return
        self._closed = True
        group.cancel_scope.shield = True
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)
