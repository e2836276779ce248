"""What the two engines that run in this process (batched.py, hf.py) share: each base model
loaded once, on first use, and the generations queued for one scheduler thread that owns the
model. The engine process (process.py) runs one of them.

A loaded base runs on the GPU if there is one, else the CPU, with its weights in
`hardware.compute_dtype`: bf16 where the device multiplies it natively, else fp32.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.utils import logging as transformers_logging

from openft.data.chat_format import ChatTemplate
from openft.hardware import compute_dtype
from openft.inference.engine import Chunk, ModelRef, Prompt, SamplingParams
from openft.inference.grammar import Grammars
from openft.inference.rows import Generation
from openft.storage import Storage

# The server's console is for requests, not for weight-loading progress bars.
transformers_logging.disable_progress_bar()


class LoadedBase:
    """A base model as an engine serves it: tokenizer and chat template, device and dtype,
    context length and the tokens that end a reply. Each engine adds its model."""

    def __init__(self, path: Path):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.chat_template = ChatTemplate(self.tokenizer)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, compute_dtype(self.device.type))
        config = AutoConfig.from_pretrained(path)
        self.context_length = config.max_position_embeddings
        # The tokenizer's end of sequence and the model config's.
        eos = config.eos_token_id
        self.stop_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])}
        self.grammars = Grammars(self.tokenizer, config.vocab_size, self.stop_ids)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        return self.chat_template.prompt_ids(prompt.messages, prompt.tools)


class Scheduler:
    """Generations handed to one scheduler thread, started with the first of them."""

    def __init__(self, schedule: Callable[[queue.Queue[Generation]], None]):
        self._schedule = schedule
        self._incoming: queue.Queue[Generation] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, generation: Generation) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._schedule, args=(self._incoming,), name="openft-decode", daemon=True
                )
                self._thread.start()
        self._incoming.put(generation)


class LocalEngine:
    """The engine protocol around a scheduler: an engine says how it loads a base (`_load`) and
    how its scheduler thread decodes the generations it takes from `incoming` (`_schedule`)."""

    def __init__(self, models_dir: Path, threads: int, storage: Storage, cache_dir: Path):
        self.models_dir, self.threads, self.storage, self.cache_dir = models_dir, threads, storage, cache_dir
        self._bases: dict[str, LoadedBase] = {}
        self._lock = threading.Lock()  # loading a base
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

    def _base(self, name: str) -> LoadedBase:
        with self._lock:
            if name not in self._bases:
                torch.set_num_threads(self.threads)
                self._bases[name] = self._load(self.models_dir / name)
            return self._bases[name]

    def _adapter_dir(self, model: ModelRef) -> str | None:
        """The fine-tune's adapter on this host (fetched into the cache dir the first time)."""
        return model.adapter_key and str(self.storage.fetch(model.adapter_key, self.cache_dir))

    def _load(self, path: Path) -> LoadedBase:
        raise NotImplementedError

    def _schedule(self, incoming: queue.Queue[Generation]) -> None:
        raise NotImplementedError
