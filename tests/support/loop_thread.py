"""A coroutine on an event loop of its own, in a thread: a second operator (kopf cancels, when it
stops, every task of its loop that it did not start with, so two cannot share one loop), or the
whole job for a synchronous client such as schemathesis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # runs until the event is set


class LoopThread:
    def __init__(self, main: Main, name: str) -> None:
        self._main = main
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), name=name)

    def start(self) -> None:
        self._thread.start()

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self._main(self._stop)
        except BaseException as exc:
            self._error = exc

    def stop(self) -> None:
        """From a thread without a loop; raises what the coroutine raised."""
        self._request_stop()
        self._thread.join(60)
        self._check()

    async def stop_async(self) -> None:
        """From a loop whose servers the coroutine may still need to stop cleanly: never block it."""
        self._request_stop()
        await asyncio.to_thread(self._thread.join, 60)
        self._check()

    def _request_stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _check(self) -> None:
        assert not self._thread.is_alive(), f"{self._thread.name} did not stop"
        if self._error is not None:
            raise self._error
