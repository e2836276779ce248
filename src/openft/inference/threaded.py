"""Handing a generation's chunks from the thread that makes them to the one that reads them.

Between threads the protocol is one queue: chunks, then None at the end, or an exception that
the reader raises (`drain`). For asyncio, `iterate_in_thread` runs an engine's blocking
generator in its own thread: the whole generation stays on one thread (torch's inference mode
is thread-local), the event loop never blocks, and a consumer that stops early (a client that
disconnected) stops the producer at its next chunk.
"""

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import closing
from typing import TypeVar

T = TypeVar("T")


def drain(items: queue.Queue) -> Iterator:
    """The items another thread puts in `items`, until it puts None; an exception it puts there
    is raised here."""
    while (item := items.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


async def iterate_in_thread(make_iterator: Callable[[], Generator[T, None, None]]) -> AsyncIterator[T]:
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    abandoned = threading.Event()

    def hand_over(item) -> None:
        if not abandoned.is_set():  # else no one reads it, and the event loop may be gone
            loop.call_soon_threadsafe(items.put_nowait, item)

    def produce() -> None:
        try:
            with closing(make_iterator()) as iterator:  # closing a generation frees its row
                for item in iterator:
                    if abandoned.is_set():
                        break
                    hand_over(item)
        except BaseException as error:  # handed to the consumer, which re-raises it
            hand_over(error)
        finally:
            hand_over(None)

    threading.Thread(target=produce, name="openft-generate", daemon=True).start()
    try:
        # `drain`'s loop, awaiting: an asyncio queue is read with `await`.
        while (item := await items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        abandoned.set()
