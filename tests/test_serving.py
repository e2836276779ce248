"""Serving many requests on one base, through a live server: requests join a running batch
instead of waiting for it, a client that leaves frees its row, the engine process comes back
after it dies, and n choices are sampled apart. (The decoder's arithmetic: tests/test_decoder.py;
how fast: bench/serve_bench.py.)"""

import threading
import time

import psutil
import pytest

EOS = "2"  # <|im_end|>: banned with logit_bias where a reply must run to max_tokens


def long_stream(client, model: str = "gpt-3.5-turbo", max_tokens: int = 300):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count from 1 to 1000."}],
        temperature=0,
        max_tokens=max_tokens,
        logit_bias={EOS: -100},
        stream=True,
    )


@pytest.mark.slow
def test_a_request_joins_a_running_batch(live_server):
    """A short request sent while a long reply streams is answered before the long one ends (with
    batches that run to the end, it would wait for all 300 tokens)."""
    client = live_server.client()
    long_chunks: list[float] = []
    first = threading.Event()

    def read_long():
        for _ in long_stream(client):
            long_chunks.append(time.monotonic())
            first.set()

    reader = threading.Thread(target=read_long)
    reader.start()
    assert first.wait(120)
    short = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Say hi."}], temperature=0, max_tokens=4
    )
    answered = time.monotonic()
    reader.join()
    assert short.choices[0].finish_reason in ("stop", "length") and short.choices[0].message.content
    later = [t for t in long_chunks if t > answered]
    assert len(later) > 100, f"only {len(later)} of {len(long_chunks)} long-reply chunks came after the short answer"


@pytest.mark.slow
def test_clients_that_disconnect_free_their_rows(live_server):
    """16 streams (a full batch) of 2,000 tokens, each closed after its first chunk: a request
    sent next is answered at once, not after the abandoned rows (minutes of decoding)."""
    client = live_server.client()
    streams = [long_stream(client, max_tokens=2000) for _ in range(16)]
    for stream in streams:
        next(iter(stream))
        stream.close()
    started = time.monotonic()
    reply = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Say hi."}], temperature=0, max_tokens=4
    )
    assert reply.choices[0].message.content
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_the_engine_process_comes_back_after_it_dies(live_server):
    """The engine runs in a child of the server: killed, it fails only what it was doing, and the
    next request starts it again."""
    client = live_server.client()
    ask = lambda: client.chat.completions.create(  # noqa: E731
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Say hi."}], temperature=0, max_tokens=4
    )
    before = ask().choices[0].message.content
    engines = [
        child
        for child in psutil.Process(live_server.process.pid).children()
        if "openft.inference.process" in child.cmdline()
    ]
    assert len(engines) == 1
    engines[0].kill()
    time.sleep(1)  # a request sent while it dies may fail with it
    assert ask().choices[0].message.content == before


@pytest.mark.slow
def test_n_choices_are_sampled_apart_and_reproducibly(live_server):
    """Also when streamed: the choices' deltas, joined per index, are the choices' messages."""
    client = live_server.client()
    ask = lambda stream=False: client.chat.completions.create(  # noqa: E731
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "Name an animal."}],
        n=3,
        temperature=1.0,
        seed=11,
        max_tokens=12,
        stream=stream,
    )
    first, second = ask(), ask()
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    assert len({c.message.content for c in first.choices}) > 1  # each choice its own seed

    streamed = ["", "", ""]
    for chunk in ask(stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == [c.message.content for c in first.choices]
