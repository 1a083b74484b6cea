"""Django ORM work from the event loop: in a thread, with the thread's connections tidied.

Django closes a request's database connections when the request ends. Work run from a socket's
lifetime has no request, so ``database_sync_to_async`` does the same around each call (as
Channels does): connections past ``CONN_MAX_AGE``, or broken, are closed before and after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


class _DatabaseSyncToAsync(SyncToAsync[P, R]):
    def thread_handler(self, loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            close_old_connections()


def database_sync_to_async(function: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``sync_to_async(function)`` that closes the thread's old database connections around it."""
    return _DatabaseSyncToAsync(function)


__all__ = ["database_sync_to_async"]
