"""The inference engine in a child process of the server.

Decoding is a Python loop around torch ops. In the server's process every one of those ops had
to win the GIL back from the event loop and the threads that stream replies: 8 streams decoded
40% slower there than the same engine alone in a process (bench/README.md). So the engine runs
in a child, and one pipe carries requests, token counts and cancellations down and chunks up.
The child dies with the server (PR_SET_PDEATHSIG); if it dies first, its callers hear of it and
the next request starts a new one.
"""

import itertools
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Generator
from multiprocessing.connection import Connection

from openft.inference import local_engine
from openft.inference.engine import Chunk, ModelRef, Prompt, SamplingParams
from openft.inference.threaded import drain
from openft.processes import die_with_parent
from openft.settings import Settings

SETTINGS_VARIABLE = "_OPENFT_ENGINE_SETTINGS"  # not OPENFT_*: that is the Settings prefix
HEALTH_SECONDS = 5.0  # an engine process that takes longer to say how it is counts as not answering


class ProcessEngine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()  # starting the child, and writing to the pipe
        self._connection: Connection | None = None
        # call id -> where its answer goes, and the connection to the child that has it
        self._replies: dict[int, tuple[queue.Queue, Connection]] = {}
        self._ids = itertools.count()
        self.starts = 0  # engine processes started: more than one means one died

    def context_length(self, model: ModelRef) -> int:
        return self._call("context_length", model)

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int:
        return self._call("count_prompt_tokens", model, prompt)

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> Generator[Chunk, None, None]:
        call_id, replies = self._send("generate", model, prompt, params)
        return self._stream(call_id, replies)

    def health(self) -> dict:
        """The engine process (never started by asking) and, while it runs, its scheduler."""
        process = {"running": self._connection is not None, "starts": self.starts}
        if self._connection is None:
            return {"process": process}
        try:
            return {"process": process, **self._call("health", timeout=HEALTH_SECONDS)}
        except (queue.Empty, RuntimeError):
            return {"process": {**process, "answering": False}}

    def _stream(self, call_id: int, replies: queue.Queue) -> Generator[Chunk, None, None]:
        try:
            yield from drain(replies)
        except GeneratorExit:  # the caller went away: free its row
            self._post(("cancel", call_id, ()))
            raise
        finally:
            self._replies.pop(call_id, None)

    def _call(self, kind: str, *args, timeout: float | None = None):
        call_id, replies = self._send(kind, *args)
        try:
            answer = replies.get(timeout=timeout)
        finally:
            self._replies.pop(call_id, None)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _send(self, kind: str, *args) -> tuple[int, queue.Queue]:
        call_id, replies = next(self._ids), queue.Queue()
        with self._lock:
            for _ in range(2):  # a child found dead is replaced once
                if self._connection is None:
                    self._start()
                if self._connection is None:
                    break
                self._replies[call_id] = (replies, self._connection)
                try:
                    self._connection.send((kind, call_id, args))
                    return call_id, replies
                except OSError:
                    self._connection = None
            self._replies.pop(call_id, None)
        raise RuntimeError("The inference process could not be started.")

    def _post(self, message: tuple) -> None:
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.send(message)
                except OSError:  # the child is gone, and what it ran with it
                    pass

    def _start(self) -> None:
        started = threading.Event()

        def start_and_read() -> None:
            # A new interpreter, not a fork (which would copy the server's threads and locks) nor
            # multiprocessing's spawn (which re-imports the parent's __main__). Started from the
            # thread that reads its replies: PR_SET_PDEATHSIG fires when the *thread* that
            # started a child exits.
            ours, theirs = socket.socketpair()
            try:
                subprocess.Popen(
                    [sys.executable, "-m", "openft.inference.process", str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    preexec_fn=die_with_parent,
                    # Settings hold API keys: in the environment, not on a command line anyone can read.
                    env={**os.environ, SETTINGS_VARIABLE: self.settings.model_dump_json()},
                )
                self._connection = Connection(ours.detach())
                self.starts += 1
            finally:
                theirs.close()
                started.set()
            self._read(self._connection)

        threading.Thread(target=start_and_read, name="openft-engine-reader", daemon=True).start()
        started.wait()

    def _read(self, connection: Connection) -> None:
        while True:
            try:
                call_id, item = connection.recv()
            except (EOFError, OSError):
                break
            pending = self._replies.get(call_id)
            if pending is not None:
                pending[0].put(item)
        with self._lock:
            if self._connection is connection:
                self._connection = None
            lost = [replies for replies, sent_to in self._replies.values() if sent_to is connection]
        for replies in lost:
            replies.put(RuntimeError("The inference process exited; the next request starts it again."))


class _Outbox:
    """A generation's `out` in the child: every chunk goes up the pipe, tagged with its call."""

    def __init__(self, call_id: int, send, generations: dict):
        self.call_id, self._send, self._generations = call_id, send, generations

    def put(self, item) -> None:
        if item is None or isinstance(item, BaseException):
            self._generations.pop(self.call_id, None)
        self._send(self.call_id, item)


def _serve(settings: Settings, connection: Connection) -> None:
    """The child: an in-process engine, fed from the pipe."""
    from openft.inference.rows import Generation

    engine = local_engine(settings)
    lock = threading.Lock()
    generations: dict = {}  # call id -> running Generation

    def send(call_id: int, item) -> None:
        with lock:
            connection.send((call_id, _portable(item)))

    def answer(kind: str, call_id: int, args: tuple) -> None:
        try:
            send(call_id, getattr(engine, kind)(*args))
        except Exception as error:
            send(call_id, error)

    while True:
        try:
            kind, call_id, args = connection.recv()
        except EOFError:
            return
        if kind == "generate":
            generation = Generation(*args, out=_Outbox(call_id, send, generations))
            generations[call_id] = generation
            engine.submit(generation)
        elif kind == "cancel":
            if (generation := generations.pop(call_id, None)) is not None:
                generation.gone.set()
        else:  # token counts load the model on first use: not on the loop that reads cancellations
            threading.Thread(target=answer, args=(kind, call_id, args), daemon=True).start()


def _portable(item):
    """Exceptions cross the pipe as themselves if they pickle and unpickle, else as their text.
    (Many pickle but do not unpickle: one whose __init__ takes other arguments than its `args`.
    Unpickling fails in the server's reader thread, which would then hear nothing more.)"""
    if isinstance(item, BaseException):
        try:
            pickle.loads(pickle.dumps(item))
        except Exception:
            return RuntimeError(f"{type(item).__name__}: {item}")
    return item


if __name__ == "__main__":
    _serve(Settings.model_validate_json(os.environ.pop(SETTINGS_VARIABLE)), Connection(int(sys.argv[1])))
