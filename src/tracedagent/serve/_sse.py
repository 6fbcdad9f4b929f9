"""``EventStream``: an ASGI response that sends a run's SSE messages as they come; ``finished_or_gone``:
the same watch for a run answered as JSON.

Both watch the connection while the run goes: when the client goes away, the run (``task``) is cancelled
at once, not at the next write, so a run nobody waits for stops and ends with exactly one ``on_run_end``
(status ``cancelled``). While the run is quiet a keep-alive comment goes out every ``keepalive_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ._wire import KEEPALIVE

__all__ = ["EventStream", "finished_or_gone"]

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class EventStream:
    """Sends ``queue``'s chunks (``None`` ends the stream) as ``text/event-stream``; ``task`` makes them."""

    def __init__(
        self,
        queue: asyncio.Queue[bytes | None],
        task: asyncio.Future[Any],
        headers: dict[str, str],
        *,
        keepalive_s: float,
        first: bytes | None = None,
    ) -> None:
        self.queue = queue
        self.task = task
        self.first = first
        self.keepalive_s = keepalive_s
        self.headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        queue, task = self.queue, self.task
        loop = asyncio.get_running_loop()
        beat: asyncio.TimerHandle | None = None

        def keepalive() -> None:
            nonlocal beat
            queue.put_nowait(KEEPALIVE)
            beat = loop.call_later(self.keepalive_s, keepalive)

        async def watch() -> None:
            await _disconnect(receive)
            task.cancel()
            queue.put_nowait(None)

        watcher = asyncio.ensure_future(watch())
        if self.keepalive_s > 0:
            beat = loop.call_later(self.keepalive_s, keepalive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            if self.first is not None:
                await send({"type": "http.response.body", "body": self.first, "more_body": True})
            while True:
                chunk = await queue.get()
                if chunk is None:
                    break
                # Send what has piled up in one write.
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        queue.put_nowait(None)
                        break
                    chunk += more
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not task.cancelled():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we wrote
            pass
        finally:
            if beat is not None:
                beat.cancel()
            watcher.cancel()
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _disconnect(receive: Receive) -> None:
    """Return when the client has gone (the request's body has been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def finished_or_gone(task: asyncio.Future[Any], receive: Receive) -> bool:
    """Wait for ``task`` (a run answered as JSON) while watching the connection: True when it has
    finished; when the client goes away first, cancel the run, wait until it has ended (its one
    ``on_run_end``, status ``cancelled``) and return False. A cancelled request cancels the run too."""
    gone = False

    def cancel_run(watcher: asyncio.Future[Any]) -> None:
        nonlocal gone
        if not watcher.cancelled() and watcher.exception() is None:
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(_disconnect(receive))
    watcher.add_done_callback(cancel_run)
    try:
        await task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if not gone or (me is not None and me.cancelling()):
            raise  # this request was cancelled (the server is stopping), not the run by the watcher
        return False
    except Exception:
        return True  # the run could not start (Refused): the caller reads that from the task
    finally:
        watcher.remove_done_callback(cancel_run)
        watcher.cancel()
        if not task.done():
            task.cancel()
    return True
