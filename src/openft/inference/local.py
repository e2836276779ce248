"""The bases the in-process engine (batched.py) serves, and the scheduler thread it feeds.

A base has two parts here. Its tokenizer side (`LoadedBase`: chat template, context length, the
tokens that end a reply) is loaded on first use by whichever thread asks (a token count, a
request) and kept: it is small. Its model (the weights, as openft's decoder or transformers runs
them) is loaded by the scheduler thread alone, under a memory budget (`Models`): when a base must
be loaded and the loaded ones would not leave room for it, the least recently used are unloaded.
The scheduler loads a base only between two batches, so no running row ever needs one it unloads.
The budget is the engine's own (OPENFT_SERVE_MEMORY_GB) within what the training jobs of the host
leave it (openft/memory.py); an idle engine unloads bases for a job that waits for their memory.

A model runs on the GPU if there is one, else the CPU, with its weights in
`hardware.compute_dtype`: bf16 where the device multiplies it natively, else fp32. The model is
openft's decoder (decoder.py) for the families it implements, else transformers + peft (hf.py),
chosen per base; `OPENFT_ENGINE=hf` chooses transformers for every base.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.utils import logging as transformers_logging

from openft.cores import CoreShare
from openft.data.chat_format import ChatTemplate
from openft.hardware import compute_dtype, cpu_memory
from openft.inference.decoder import LlamaDecoder, unsupported_reason
from openft.inference.engine import MAX_LOADED_ADAPTERS, Chunk, ModelRef, Prompt, SamplingParams
from openft.inference.grammar import Grammars
from openft.inference.hf import TransformersModel
from openft.inference.reasoning import PROMPT_TAIL_TOKENS, Opening, opening, thinks, tokenized_as_trained
from openft.inference.rows import Generation
from openft.memory import HostMemory
from openft.models.facts import trusts_remote_code
from openft.models.parameters import parameter_count
from openft.storage import Storage

# The server's console is for requests, not for weight-loading progress bars.
transformers_logging.disable_progress_bar()
log = logging.getLogger("openft.inference")

GIB = 2**30
IDLE_SECONDS = 1.0  # an idle engine keeps its share of the cores this long (openft/cores.py)


class LoadedBase:
    """A base model's tokenizer side, as the engine serves it: tokenizer and chat template,
    device and dtype, context length, the tokens that end a reply, and which model runs it."""

    def __init__(self, path: Path, transformers_only: bool, dtype_setting: str = "auto", batch_invariant: bool = True):
        self.path, self.batch_invariant = path, batch_invariant
        self.remote_code = trusts_remote_code(path)  # added with --trust-remote-code
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.remote_code)
        self.chat_template = ChatTemplate(self.tokenizer)
        self.thinks = thinks(self.tokenizer.chat_template)  # its replies have a thought (reasoning.py)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, compute_dtype(self.device.type, dtype_setting))
        self.config = AutoConfig.from_pretrained(path, trust_remote_code=self.remote_code)
        self.context_length = self.config.max_position_embeddings
        # The tokenizer's end of sequence, the model config's, the generation config's (a list
        # for chat models whose turns end with their own token: Gemma's <end_of_turn>, Phi-3's <|end|>)
        # and the token the chat template ends a turn with, which a GGUF's config may not name.
        ends = [self.tokenizer.eos_token_id, self.config.eos_token_id, self.chat_template.end_of_turn_id]
        if (path / "generation_config.json").exists():
            ends.append(GenerationConfig.from_pretrained(path).eos_token_id)
        self.stop_ids = {token for end in ends for token in (end if isinstance(end, list) else [end])} - {None}
        self.decoded = not transformers_only and unsupported_reason(self.config) is None
        self.grammars = Grammars(self.tokenizer, self.config.vocab_size, self.stop_ids)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        ids = self.chat_template.prompt_ids(prompt.messages, prompt.tools, prompt.template_kwargs)
        return tokenized_as_trained(self.tokenizer, ids) if self.thinks else ids

    def reply_opening(self, prompt_ids: list[int]) -> Opening:
        """Where a reply to this prompt starts: in a thought the prompt opened, after one it
        closed, or where the model decides (reasoning.py)."""
        return opening(self.tokenizer.decode(prompt_ids[-PROMPT_TAIL_TOKENS:]))

    def load_model(self, quantize: str):
        """The weights as openft's decoder runs them (the families it implements), else as
        transformers + peft do."""
        if not self.decoded:
            pad_id = self.tokenizer.pad_token_id
            pad_id = self.tokenizer.eos_token_id if pad_id is None else pad_id
            return TransformersModel(self.path, self.dtype, self.device, pad_id, MAX_LOADED_ADAPTERS, self.remote_code)
        # Loaded as stored: the decoder converts each weight itself, packing to int4 only the
        # weights whose stored values are exact 4-bit groups (which a cast would round).
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype="auto")
        return LlamaDecoder(model, quantize, self.dtype, self.device, MAX_LOADED_ADAPTERS, self.batch_invariant)

    def estimated_bytes(self) -> int:
        """What its weights will take once loaded, before loading them: parameters x dtype."""
        return parameter_count(self.path) * self.dtype.itemsize


class ServingMemoryError(RuntimeError):
    pass


class Models:
    """The bases' models in memory, least recently used first, their weights within `budget`
    bytes and within what the other processes of the host leave (`host`; adapters and KV caches
    not counted). Used by the scheduler thread only."""

    def __init__(self, budget: int, host: HostMemory):
        self.budget = budget
        self.host = host
        self._models: OrderedDict[str, object] = OrderedDict()
        self._sizes: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, base: LoadedBase, quantize: str):
        """The base's model, loaded (after unloading what it needs room from) if it is not."""
        name = base.path.name
        if name in self._models:
            self._models.move_to_end(name)
            return self._models[name]
        needed = base.estimated_bytes()
        if needed > self.budget:
            raise ServingMemoryError(
                f"The base model {name} needs about {needed / GIB:.1f} GiB for its weights, more than the "
                f"engine's memory budget of {self.budget / GIB:.1f} GiB; raise OPENFT_SERVE_MEMORY_GB."
            )
        with self.host.deciding():  # the room checked is the room reserved
            room = self.host.room()
            if needed > room:
                raise ServingMemoryError(
                    f"The base model {name} needs about {needed / GIB:.1f} GiB for its weights, more than the "
                    f"{max(room, 0) / GIB:.1f} GiB of this host's memory that its training jobs leave; "
                    "it can be served once they finish."
                )
            self._make_room(needed, name, min(self.budget, room))
            self.host.record(self._held() + needed)
        try:
            model = base.load_model(quantize)
            self._models[name], self._sizes[name] = model, model.weight_bytes()
        finally:
            with self.host.deciding():  # the estimate may have been short
                self._make_room(0, name, min(self.budget, self.host.room()))
                self.host.record(self._held())
        return model

    def give_way(self) -> None:
        """Unloads the least recently used bases while a process of the host waits for the memory
        they hold (a training job: openft/memory.py). For an idle engine: no row uses them."""
        if not self._models:
            return
        with self.host.deciding():
            wanted = self.host.wanted_from_me()
            for name in list(self._models):
                if wanted <= 0:
                    break
                del self._models[name]
                wanted -= self._sizes[name]
                log.warning(
                    "unloaded base %s (%.1f GiB): a training job on this host waits for its memory",
                    name,
                    self._sizes.pop(name) / GIB,
                )
            self.host.record(self._held())

    def _held(self) -> int:
        return sum(self._sizes.values())

    def _make_room(self, needed: int, loading: str, limit: int) -> None:
        """Unloads the least recently used models (not `loading`) until `needed` more bytes fit
        within `limit`."""
        for name in list(self._models):
            if self._held() + needed <= limit:
                return
            if name != loading:
                del self._models[name]
                log.warning(
                    "unloaded base %s (%.1f GiB) to load %s within %.1f GiB (the serving budget, or what "
                    "this host's training jobs leave); raise OPENFT_SERVE_MEMORY_GB to keep both loaded",
                    name,
                    self._sizes.pop(name) / GIB,
                    loading,
                    limit / GIB,
                )


def default_memory_budget(device: torch.device) -> int:
    """How much of the machine the bases' weights may take, when OPENFT_SERVE_MEMORY_GB does not
    say: 60% of a GPU (the KV caches, fp32, and the activations take the rest), half of a CPU
    host's memory, or of the container's limit. What training jobs hold is taken off at each
    load (`Models`)."""
    if device.type == "cuda":
        return int(0.6 * device_memory(device))
    return device_memory(device) // 2


def device_memory(device: torch.device) -> int:
    """The memory of the device the engine runs on: a GPU's, or the host's RAM (or cgroup limit)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return cpu_memory()


class SchedulerRestarted(RuntimeError):
    pass


class Scheduler:
    """Generations handed to one scheduler thread, started with the first of them.

    Faults of one generation end that generation (batched.py); an error that escapes the
    schedule itself (a bug outside any one row) would otherwise end the thread and leave every
    caller waiting forever. So the thread runs the schedule again after one: the
    generations it held (and those still queued) fail at once with SchedulerRestarted, later
    ones are decoded as usual, and `health` counts the restarts and keeps the last error."""

    def __init__(self, schedule: Callable[[queue.Queue[Generation]], None]):
        self._schedule = schedule
        self._incoming: queue.Queue[Generation] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._in_flight: set[Generation] = set()  # submitted and not yet ended (pruned on submit)
        self.restarts = 0
        self.last_error: dict | None = None

    def submit(self, generation: Generation) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="openft-decode", daemon=True)
                self._thread.start()
            self._in_flight = {g for g in self._in_flight if not g.finished}
            self._in_flight.add(generation)
        self._incoming.put(generation)

    def health(self) -> dict:
        with self._lock:
            return {
                "alive": self._thread is not None and self._thread.is_alive(),
                "restarts": self.restarts,
                "last_error": self.last_error,
            }

    def _run(self) -> None:
        while True:
            try:
                self._schedule(self._incoming)
            except Exception as error:
                log.exception("the decode scheduler failed; its requests fail, and it starts again")
                with self._lock:
                    self.restarts += 1
                    self.last_error = {"type": type(error).__name__, "at": int(time.time())}
                    held = [g for g in self._in_flight if not g.finished]
                lost = SchedulerRestarted(f"The decode scheduler failed ({type(error).__name__}); retry the request.")
                for generation in held:
                    generation.fail(lost)


class LocalEngine:
    """The engine protocol around a scheduler: the bases' tokenizer sides for any thread, their
    models (`models`) for the scheduler thread, which decodes the generations it takes from
    `incoming` (`_schedule`)."""

    def __init__(
        self,
        models_dir: Path,
        threads: int | None,
        storage: Storage,
        cache_dir: Path,
        cores_dir: Path | None = None,
        memory_dir: Path | None = None,
        quantize: str = "auto",
        transformers_only: bool = False,
        memory_budget: int | None = None,
        compute_dtype: str = "auto",
        batch_invariant: bool = True,
    ):
        self.models_dir, self.threads, self.storage, self.cache_dir = models_dir, threads, storage, cache_dir
        self.quantize, self.transformers_only = quantize, transformers_only
        self.compute_dtype, self.batch_invariant = compute_dtype, batch_invariant
        # This engine's share of the host's cores, beside the training jobs busy there (openft/cores.py).
        self.cores = CoreShare(cores_dir, "engine", threads)
        self._bases: dict[str, LoadedBase] = {}
        self._lock = threading.Lock()  # loading a base's tokenizer side
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # What the bases' weights hold of the host's memory, beside its training jobs (openft/memory.py).
        host = HostMemory(memory_dir, "engine", device.type, device_memory(device))
        self.models = Models(default_memory_budget(device) if memory_budget is None else memory_budget, host)
        self._scheduler = Scheduler(self._schedule)

    def context_length(self, model: ModelRef) -> int:
        return self._base(model.base_model).context_length

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int:
        return len(self._base(model.base_model).prompt_ids(prompt))

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> Generator[Chunk, None, None]:
        generation = Generation(model, prompt, params)
        self.submit(generation)
        return generation.stream()

    def submit(self, generation: Generation) -> None:
        """Queues a generation whose chunks go to its `out` (see process.py)."""
        self._scheduler.submit(generation)

    def health(self) -> dict:
        """The decode scheduler: alive, how often it was restarted, and its last error's kind."""
        return {"scheduler": self._scheduler.health()}

    def _base(self, name: str) -> LoadedBase:
        with self._lock:
            if name not in self._bases:
                self._bases[name] = LoadedBase(
                    self.models_dir / name, self.transformers_only, self.compute_dtype, self.batch_invariant
                )
            return self._bases[name]

    def _next(self, incoming: queue.Queue[Generation]) -> Generation:
        """The next generation, waited for by an idle scheduler. The cores are given back only
        after IDLE_SECONDS without one: back-to-back requests keep them. While idle, it looks
        every IDLE_SECONDS whether a training job of the host waits for its bases' memory."""
        try:
            return incoming.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            self._use_cores(False)
        while True:
            self.models.give_way()
            try:
                return incoming.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                continue

    def _use_cores(self, busy: bool) -> None:
        """Called by the scheduler thread between two steps: say whether this engine is decoding,
        and decode on its share of the cores (changed only on the thread that runs the torch ops)."""
        self.cores.busy(busy)
        if (threads := self.cores.threads()) != torch.get_num_threads():
            torch.set_num_threads(threads)

    def _adapter_dir(self, model: ModelRef) -> str | None:
        """The fine-tune's adapter on this host (fetched into the cache dir the first time)."""
        return model.adapter_key and str(self.storage.fetch(model.adapter_key, self.cache_dir))

    def _schedule(self, incoming: queue.Queue[Generation]) -> None:
        raise NotImplementedError
