"""Serving many requests, and many bases. In the engine (in process): bases of any family, by
openft's decoder or by transformers, give the same answers with adapters mixed in a batch; bases
beyond the memory budget take turns (least recently used unloaded, never under running rows);
a base's requests do not starve another's. Through a live server: requests join a running batch
instead of waiting for it, a client that leaves frees its row, the engine process comes back
after it dies, n choices are sampled apart, tiny bases of several families are served next to
the bundled one, and Gemma and Phi-3 (transformers) stop at their end-of-turn tokens. (The
decoder's arithmetic: tests/test_decoder.py; how fast: bench/serve_bench.py.)"""

import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from transformers import AutoTokenizer

from openft.inference.batched import BatchedEngine
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.inference.rows import Generation
from openft.memory import HostMemory
from openft.models.store import register_base
from openft.settings import BUNDLED_MODEL, Settings
from openft.storage import Storage
from openft.store.db import Database
from tests.helpers import REPO, LiveServer, new_data_dir

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


# ---- many bases in one engine (in process)

MIB = 2**20
HELLO = Prompt([{"role": "user", "content": "Hello there, how are you?"}])


def engine_over(root: Path, tiny_models: dict[str, Path], **options) -> BatchedEngine:
    """An engine whose model store holds every tiny base (`tiny-<family>`)."""
    models = root / "models"
    models.mkdir(parents=True)
    for family, path in tiny_models.items():
        (models / f"tiny-{family}").symlink_to(path, target_is_directory=True)
    return BatchedEngine(models, 1, Storage.for_settings(Settings(data_dir=root)), root / "cache", **options)


def text_of(chunks) -> str:
    return "".join(chunk.text for chunk in chunks)


def greedy(tokens: int = 8) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0)


def stored_adapters(root: Path, base: Path, storage: Storage) -> list[str]:
    """Two random peft all-linear adapters (ranks 4 and 8) of `base`, in the storage: their keys."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    keys = []
    for n, rank in enumerate((4, 8)):
        torch.manual_seed(n)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(r=rank, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.5)
        model.save_pretrained(root / f"adapter{n}")
        storage.put_dir(root / f"adapter{n}", f"adapters/{base.name}-{n}")
        keys.append(f"adapters/{base.name}-{n}")
    return keys


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decoder_and_transformers_serve_a_base_alike_with_adapters_mixed(tiny_models, tmp_path, dtype):
    """A base row and two adapters' rows, submitted together (one batch), then each alone: each
    engine, openft's decoder and transformers (`OPENFT_ENGINE=hf`), gives every row the greedy
    answer it gives it alone, on both float paths, and the adapters change them. In fp32 the two
    engines agree (in bf16 two implementations round differently: tests/test_decoder.py bounds it)."""
    answers = {}
    for engine_name, transformers_only in (("openft", False), ("hf", True)):
        engine = engine_over(
            tmp_path / engine_name, tiny_models, transformers_only=transformers_only, compute_dtype=dtype
        )
        keys = stored_adapters(tmp_path / engine_name, tiny_models["llama"], engine.storage)
        refs = [ModelRef("tiny-llama"), *(ModelRef("tiny-llama", key) for key in keys)]
        streams = [engine.generate(ref, HELLO, greedy(12)) for ref in refs]
        answers[engine_name] = [text_of(stream) for stream in streams]
        assert [text_of(engine.generate(ref, HELLO, greedy(12))) for ref in refs] == answers[engine_name]
        assert len(set(answers[engine_name])) == 3
    if dtype == "float32":
        assert answers["openft"] == answers["hf"]


def test_bases_beyond_the_memory_budget_take_turns(tiny_models, tmp_path):
    """With room for one tiny base (about 13 MB each in fp32), asking for another unloads the least
    recently used; answers do not change. A base larger than the budget is refused, saying
    which setting to raise."""
    engine = engine_over(tmp_path, tiny_models, memory_budget=20 * MIB, compute_dtype="float32")
    alone = {}
    for name in ("tiny-llama", "tiny-qwen3", "tiny-gemma", "tiny-llama"):
        answer = text_of(engine.generate(ModelRef(name), HELLO, greedy()))
        assert alone.setdefault(name, answer) == answer
        assert engine.models.names == [name]
    roomy = engine_over(tmp_path / "roomy", tiny_models, memory_budget=64 * MIB, compute_dtype="float32")
    for name in ("tiny-llama", "tiny-qwen3", "tiny-gemma"):
        assert text_of(roomy.generate(ModelRef(name), HELLO, greedy())) == alone[name]
    assert roomy.models.names == ["tiny-llama", "tiny-qwen3", "tiny-gemma"]

    small = engine_over(tmp_path / "small", tiny_models, memory_budget=MIB, compute_dtype="float32")
    with pytest.raises(RuntimeError, match="OPENFT_SERVE_MEMORY_GB"):
        text_of(small.generate(ModelRef("tiny-qwen2"), HELLO, greedy()))


def test_the_engine_loads_into_what_training_jobs_leave_and_gives_way_to_a_waiting_one(tiny_models, tmp_path):
    """One memory budget per host (openft/memory.py): a base the host's training jobs leave no
    room for is refused, saying so; once they are done it loads; and an idle engine unloads it
    for a job that waits for its memory."""
    memory_dir = tmp_path / "host-memory"
    engine = engine_over(tmp_path, tiny_models, memory_budget=64 * MIB, compute_dtype="float32", memory_dir=memory_dir)
    total = engine.models.host.total
    trainer = HostMemory(memory_dir, "trainer", engine.models.host.device, total)
    trainer.record(total - 5 * MIB)  # a job holds all but 5 MiB; a tiny base takes ~13 MB
    with pytest.raises(RuntimeError, match="training jobs leave"):
        text_of(engine.generate(ModelRef("tiny-llama"), HELLO, greedy()))
    trainer.record(0)
    text_of(engine.generate(ModelRef("tiny-llama"), HELLO, greedy()))
    assert engine.models.names == ["tiny-llama"] and trainer.room() < total

    trainer.record(0, wanted=total)  # a job waits for all of it
    deadline = time.monotonic() + 10
    while engine.models.names and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.models.names == [] and trainer.room() == total


class Recorder:
    """A generation's `out` that logs every chunk as the scheduler thread hands it over, so the
    log's order is the order of production."""

    def __init__(self, name: str, log: list, done: threading.Event):
        self.name, self.log, self.done = name, log, done

    def put(self, item) -> None:
        self.log.append((self.name, item))
        if item is None or isinstance(item, BaseException):
            self.done.set()


def test_another_base_waits_for_running_rows_and_is_not_starved(tiny_models, tmp_path):
    """Room for one base. A long reply of tiny-llama streams; then come a request for tiny-qwen2
    and another for tiny-llama. tiny-qwen2 is loaded only after the long reply has ended (not
    cut short: it equals the reply alone), and goes before the second tiny-llama request, which
    would otherwise have joined the running batch (and so on, for as long as tiny-llama
    requests kept coming)."""
    long_params = SamplingParams(max_tokens=600, temperature=0, logit_bias=((tiny_eos(tiny_models["llama"]), -100.0),))
    engine = engine_over(tmp_path, tiny_models, memory_budget=20 * MIB, compute_dtype="float32")
    long_alone = text_of(engine.generate(ModelRef("tiny-llama"), HELLO, long_params))
    qwen_alone = text_of(engine.generate(ModelRef("tiny-qwen2"), HELLO, greedy()))

    log: list = []
    events = {name: threading.Event() for name in ("long", "qwen2", "llama")}

    def submit(name: str, model: str, params: SamplingParams) -> None:
        recorder = Recorder(name, log, events[name])
        engine.submit(Generation(ModelRef(model), HELLO, params, out=recorder))

    submit("long", "tiny-llama", long_params)
    while not any(name == "long" for name, _ in log):  # the long reply is decoding
        time.sleep(0.001)
    submit("qwen2", "tiny-qwen2", greedy())
    submit("llama", "tiny-llama", greedy())
    for event in events.values():
        assert event.wait(300)
    order = [name for name, _ in log]
    assert "".join(item.text for name, item in log if name == "long" and item is not None) == long_alone
    assert "".join(item.text for name, item in log if name == "qwen2" and item is not None) == qwen_alone
    last = {name: max(i for i, n in enumerate(order) if n == name) for name in events}
    start = {name: order.index(name) for name in events}
    assert last["long"] < start["qwen2"] and last["qwen2"] < start["llama"], order
    assert engine.models.names == ["tiny-llama"]


def tiny_eos(model_dir: Path) -> int:
    return AutoTokenizer.from_pretrained(model_dir).eos_token_id


# ---- many bases behind one live server


@pytest.fixture(scope="module")
def many_bases(tmp_path_factory, model_store, tiny_models):
    """A live server whose store holds the bundled model and four tiny bases: Llama and Qwen2
    (openft's decoder), Gemma and Phi-3 (transformers). As in their real checkpoints, Gemma's and
    Phi-3's configs name one end of sequence, and their end-of-turn tokens are in the generation
    config's eos list only."""
    data_dir = new_data_dir(tmp_path_factory.mktemp("many-bases"), model_store)
    settings = Settings(data_dir=data_dir)
    db = Database(settings)
    for family in ("llama", "qwen2", "gemma", "phi3"):
        target = settings.models_dir / f"tiny-{family}"
        shutil.copytree(tiny_models[family], target)
        config = json.loads((target / "config.json").read_text())
        if isinstance(config["eos_token_id"], list):
            config["eos_token_id"] = config["eos_token_id"][0]
            (target / "config.json").write_text(json.dumps(config))
        register_base(db, target.name)
    server = LiveServer(data_dir)
    yield server
    server.stop()


def reply_text(client, model: str, stream: bool, **options) -> str:
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Tell me about the sea."}],
        temperature=0,
        max_tokens=12,
        stream=stream,
        **options,
    )
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in answer if chunk.choices)
    return answer.choices[0].message.content


def test_tiny_bases_and_the_bundled_one_are_served_together(many_bases):
    """Two tiny bases and the bundled one, asked at once (each streamed and not): every answer
    is the one that base gives alone."""
    client = many_bases.client()
    models = ["tiny-llama", "tiny-qwen2", BUNDLED_MODEL]
    assert set(models) <= {model.id for model in client.models.list()}
    alone = {model: reply_text(client, model, stream=False) for model in models}
    with ThreadPoolExecutor(6) as pool:
        together = {
            (model, stream): pool.submit(reply_text, client, model, stream)
            for model in models
            for stream in (False, True)
        }
    assert {key: future.result() for key, future in together.items()} == {
        (model, stream): alone[model] for model, stream in together
    }


@pytest.mark.parametrize("family, end_of_turn", [("gemma", "<end_of_turn>"), ("phi3", "<|end|>")])
def test_other_families_are_served_by_transformers_and_stop_at_their_end_of_turn(
    many_bases, tiny_models, family, end_of_turn
):
    """Gemma and Phi-3 answer, streamed as whole, and a reply ends at the end-of-turn token that
    only their generation config names (here made the likeliest token)."""
    client = many_bases.client()
    model = f"tiny-{family}"
    whole = reply_text(client, model, stream=False)
    assert whole and reply_text(client, model, stream=True) == whole
    end = AutoTokenizer.from_pretrained(tiny_models[family]).convert_tokens_to_ids(end_of_turn)
    stopped = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Tell me about the sea."}],
        max_tokens=12,
        logit_bias={str(end): 100},
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == "" and stopped.usage.completion_tokens == 1


def test_the_gpu_serving_bench_runs_on_cpu_with_a_tiny_model():
    """bench/gpu_serve_bench.py waits for a GPU session; `--tiny` keeps it known to run."""
    result = subprocess.run(
        [sys.executable, "bench/gpu_serve_bench.py", "--tiny", "--tokens", "4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "engine, 16 streams" in result.stdout and "engine / generate, 16 streams" in result.stdout
