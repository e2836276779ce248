"""Run an engine's blocking generator in its own thread and consume it from asyncio.

The whole generation stays on one thread (torch's inference mode is thread-local), the event loop
never blocks, and a consumer that stops early (a client that disconnected) stops the producer at
its next chunk.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


async def iterate_in_thread(make_iterator: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    abandoned = threading.Event()

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                for item in iterator:
                    loop.call_soon_threadsafe(items.put_nowait, item)
                    if abandoned.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close:
                    close()
        except BaseException as error:  # handed to the consumer, which re-raises it
            loop.call_soon_threadsafe(items.put_nowait, error)
        finally:
            loop.call_soon_threadsafe(items.put_nowait, _END)

    threading.Thread(target=produce, name="openft-generate", daemon=True).start()
    try:
        while (item := await items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        abandoned.set()
