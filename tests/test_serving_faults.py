"""Faults stay with the request that caused them. In the engine (in process): a row whose scores
are not finite, or whose step raises, fails alone while the rows beside it decode on to the
answers they give alone; a scheduler that fails is started again, the requests it held hear of
it at once, and its health says so. Across the engine process's pipe, an exception that would
not unpickle arrives as text. On a live server: values at the edges of OpenAI's ranges (a
temperature of 1e-40, a top_p of 0) are answered as their limits, and the server goes on.
(Every parameter thrown at a live server at once: tests/test_serving_fuzz.py.)"""

import queue
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

from openft.inference.batched import BatchedEngine
from openft.inference.engine import Chunk, ModelRef, Prompt, SamplingParams
from openft.inference.local import Scheduler, SchedulerRestarted
from openft.inference.process import _portable
from openft.inference.rows import Generation, Row
from openft.inference.sampling import SamplingError, next_token
from openft.settings import Settings
from openft.storage import Storage

EOS = 2  # <|im_end|> of the bundled tokenizer (the tiny models share it)
HELLO = Prompt([{"role": "user", "content": "Hello there, how are you?"}])
FAULTY_SEED = 666  # the seed of the row whose third step raises
ANSWERED_WITHIN = 120  # seconds; a request that waits longer is taken to hang


def tiny_engine(root: Path, tiny_models: dict[str, Path]) -> BatchedEngine:
    models = root / "models"
    models.mkdir(parents=True)
    (models / "tiny-llama").symlink_to(tiny_models["llama"], target_is_directory=True)
    return BatchedEngine(models, 1, Storage.for_settings(Settings(data_dir=root)), root / "cache")


def outcome(generation: Generation, timeout: float = ANSWERED_WITHIN) -> str | BaseException:
    """The generation's text, or the error it ended with; raises queue.Empty if it hangs."""
    parts = []
    while (item := generation.out.get(timeout=timeout)) is not None:
        if isinstance(item, BaseException):
            return item
        parts.append(item.text)
    return "".join(parts)


def test_a_row_that_fails_ends_alone_and_the_batch_goes_on(tiny_models, tmp_path, monkeypatch):
    """Two faulty rows join a running one: a NaN logit bias (its first token, picked as it is
    admitted, has no finite score) and a row whose third step raises. Each fails with its own
    error; the running row still gives the answer it gives alone, and the engine serves on."""
    real_step = Row.step

    def step(row, logits):
        if row.params.seed == FAULTY_SEED and len(row.generated) == 2:
            raise RuntimeError("a fault in this row alone")
        return real_step(row, logits)

    monkeypatch.setattr(Row, "step", step)
    engine = tiny_engine(tmp_path, tiny_models)
    model = ModelRef("tiny-llama")
    ordinary = SamplingParams(max_tokens=100, temperature=0, logit_bias=((EOS, -100),))
    alone = Generation(model, HELLO, ordinary)
    engine.submit(alone)
    expected = outcome(alone)

    running = Generation(model, HELLO, ordinary)
    engine.submit(running)
    first = running.out.get(timeout=ANSWERED_WITHIN)  # it is decoding: the faulty rows join it
    nan_bias = Generation(model, HELLO, SamplingParams(max_tokens=8, logit_bias=((5, float("nan")),)))
    raising = Generation(model, HELLO, SamplingParams(max_tokens=8, seed=FAULTY_SEED))
    engine.submit(nan_bias)
    engine.submit(raising)
    assert isinstance(outcome(nan_bias), SamplingError)
    assert "alone" in str(outcome(raising))
    assert first.text + outcome(running) == expected
    after = Generation(model, HELLO, ordinary)
    engine.submit(after)
    assert outcome(after) == expected
    assert engine.health()["scheduler"] == {"alive": True, "restarts": 0, "last_error": None}


def test_a_scheduler_that_fails_is_restarted_and_its_requests_hear_at_once():
    """A schedule that holds one generation, then fails on the next: both callers get
    SchedulerRestarted at once (not after a timeout), a later request is served, and the
    health shows the restart and the error's kind."""
    started = []

    def schedule(incoming: queue.Queue[Generation]) -> None:
        started.append(time.monotonic())
        held = []
        while True:
            generation = incoming.get()
            if generation.finished:  # failed while queued, by the restart
                continue
            if generation.params.seed == FAULTY_SEED:
                raise ZeroDivisionError("a bug in the scheduler")
            if generation.params.max_tokens == 1:  # held, as a row in a running batch is
                held.append(generation)
                continue
            generation.out.put(Chunk("served", "stop"))
            generation.end()

    scheduler = Scheduler(schedule)
    model, prompt = ModelRef("base"), Prompt([])
    held = Generation(model, prompt, SamplingParams(max_tokens=1))
    fatal = Generation(model, prompt, SamplingParams(seed=FAULTY_SEED))
    scheduler.submit(held)
    scheduler.submit(fatal)
    assert isinstance(outcome(held, timeout=10), SchedulerRestarted)
    assert isinstance(outcome(fatal, timeout=10), SchedulerRestarted)
    later = Generation(model, prompt, SamplingParams())
    scheduler.submit(later)
    assert outcome(later, timeout=10) == "served"
    health = scheduler.health()
    assert health["alive"] and health["restarts"] == 1 and len(started) == 2
    assert health["last_error"]["type"] == "ZeroDivisionError"


class NeedsTwoArguments(Exception):
    def __init__(self, what: str, where: str):
        super().__init__(f"{what} at {where}")


def test_an_exception_that_would_not_unpickle_crosses_the_pipe_as_text():
    """It pickles, but unpickling calls __init__ with its one `args` entry: in the server's
    reader thread that would end the thread, and every caller after would wait forever."""
    portable = _portable(NeedsTwoArguments("a fault", "row 3"))
    assert type(portable) is RuntimeError and "a fault at row 3" in str(portable)
    assert isinstance(_portable(SamplingError("no token")), SamplingError)  # kept as itself


def test_a_top_p_of_0_picks_greedys_token_when_the_likeliest_tie():
    """bf16 logits often tie at the top: greedy takes the first tied token, and so must a top_p
    of 0 (an unstable sort handed it the other one about half the time)."""
    for seed in range(20):
        logits = (torch.randn(49152, generator=torch.Generator().manual_seed(seed)) * 4).bfloat16().float()
        logits[(seed * 7919) % 49152] = logits.max()  # another token as likely as the likeliest
        assert next_token(logits, 1.0, 0.0, torch.Generator().manual_seed(seed)) == int(logits.argmax())


def test_values_at_the_edges_are_answered_as_their_limits(live_server):
    """A temperature of 1e-40 is greedy (dividing by it overflowed, and the scheduler thread died
    with every request after it), a top_p of 0 keeps the likeliest token: both give the
    temperature-0 answer, and an ordinary request after them is answered too."""
    client = live_server.client().with_options(timeout=ANSWERED_WITHIN)
    messages = [{"role": "user", "content": "Name a colour."}]

    def ask(**sampling) -> str:
        reply = client.chat.completions.create(model="gpt-3.5-turbo", messages=messages, max_tokens=8, **sampling)
        return reply.choices[0].message.content

    greedy = ask(temperature=0)
    with ThreadPoolExecutor(3) as pool:
        edges = [pool.submit(ask, temperature=1e-40), pool.submit(ask, top_p=0, seed=1), pool.submit(ask, top_p=1e-300)]
        assert [edge.result() for edge in edges] == [greedy] * 3
    assert ask(temperature=0) == greedy
    engine = httpx.get(live_server.base_url.removesuffix("/v1") + "/health", timeout=30).json()["engine"]
    assert engine["process"]["running"] and engine["scheduler"]["alive"]
