"""The transformers + peft engine (CPU or one GPU), for bases the batched decoder does not run
(`OPENFT_ENGINE=hf` serves every base with it).

One copy of each base model is loaded; fine-tunes are LoRA adapters attached to it on demand and
evicted least-recently-used. An adapter is named by its key in the artifact storage and fetched
to this host (once, into the cache dir) the first time it is needed.

Requests are decoded in static batches by one scheduler thread: requests that arrive while a
batch runs wait for it to end, then the waiting ones for the same base model (up to `MAX_BATCH`,
and up to `MAX_LOADED_ADAPTERS` different adapters) are decoded together: one left-padded
prefill, then KV-cached steps. Rows of different adapters run in one forward pass (peft's
`adapter_names`). The batch ends when every row is done.
"""

import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as transformers_logging

from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.inference.requests import Request, RequestQueue, Row, encode_prompt, stop_token_ids
from openft.storage import Storage

MAX_LOADED_ADAPTERS = 8
MAX_BATCH = 16
GATHER_SECONDS = 0.01  # how long a new batch waits for requests sent at the same moment

# The server's console is for requests, not for weight-loading progress bars; and peft 0.21 still
# reads the deprecated `is_gradient_checkpointing`, which warns on every adapter load.
transformers_logging.disable_progress_bar()
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class LoadedBase:
    def __init__(self, path: Path):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device = device
        self.peft: PeftModel | None = None
        self.adapters: OrderedDict[str, str] = OrderedDict()  # adapter path -> adapter name
        self.adapters_loaded = 0
        self.context_length = self.model.config.max_position_embeddings
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.config)
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )

    @contextmanager
    def selected(self, adapter_paths: list[str | None]) -> Iterator[tuple[object, dict]]:
        """The module to run for a batch, and the extra forward arguments, with each row's
        adapter in effect for the whole batch (toggling peft's adapters walks every LoRA layer,
        too slow to do per token): the base model alone, one adapter set active, or, for rows of
        different adapters, peft's per-row `adapter_names`."""
        distinct = set(adapter_paths)
        if distinct == {None}:
            if self.peft is None:
                yield self.model, {}
            else:
                with self.peft.disable_adapter():
                    yield self.peft, {}
            return
        names = {path: self._load(path) for path in distinct if path is not None}
        if len(distinct) == 1:
            self.peft.set_adapter(names[adapter_paths[0]])
            yield self.peft, {}
            return
        yield self.peft, {"adapter_names": [names[path] if path else "__base__" for path in adapter_paths]}

    def _load(self, adapter_path: str) -> str:
        name = self.adapters.get(adapter_path)
        if name is None:
            self.adapters_loaded += 1
            name = f"adapter{self.adapters_loaded}"
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, adapter_path, adapter_name=name).eval()
            else:
                self.peft.load_adapter(adapter_path, adapter_name=name)
            self.adapters[adapter_path] = name
            if len(self.adapters) > MAX_LOADED_ADAPTERS:
                _, evicted = self.adapters.popitem(last=False)
                self.peft.delete_adapter(evicted)
        self.adapters.move_to_end(adapter_path)
        return name


class HFEngine:
    def __init__(self, models_dir: Path, threads: int, storage: Storage, cache_dir: Path):
        self.models_dir = models_dir
        self.threads = threads
        self.storage = storage
        self.cache_dir = cache_dir
        self._bases: dict[str, LoadedBase] = {}
        self._lock = threading.Lock()  # the model: one batch, or one token count, at a time
        self._queue = RequestQueue(self._schedule)

    def _base(self, name: str) -> LoadedBase:
        if name not in self._bases:
            torch.set_num_threads(self.threads)
            self._bases[name] = LoadedBase(self.models_dir / name)
        return self._bases[name]

    def context_length(self, model: ModelRef) -> int:
        with self._lock:
            return self._base(model.base_model).context_length

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int:
        with self._lock:
            return len(encode_prompt(self._base(model.base_model).tokenizer, prompt))

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> Iterator:
        request = Request(model, prompt, params)
        self.submit(request)
        return request.stream()

    def submit(self, request: Request) -> None:
        """Queues a request whose chunks go to its `out` (see process.py)."""
        self._queue.submit(request)

    def _schedule(self, incoming) -> None:
        waiting: deque[Request] = deque()
        while True:
            if not waiting:
                waiting.append(incoming.get())
                time.sleep(GATHER_SECONDS)
            while not incoming.empty():
                waiting.append(incoming.get_nowait())
            batch = self._next_batch(waiting)
            try:
                with self._lock, torch.inference_mode():
                    self._decode(batch)
            except BaseException as error:  # every caller hears of it; the scheduler goes on
                for request in batch:
                    request.fail(error)

    @staticmethod
    def _next_batch(waiting: deque[Request]) -> list[Request]:
        """The oldest request and the waiting ones that can share its batch (same base model)."""
        first = waiting.popleft()
        batch, adapters, rest = [first], {first.model.adapter_key}, deque()
        while waiting:
            request = waiting.popleft()
            fits = (
                request.model.base_model == first.model.base_model
                and len(batch) < MAX_BATCH
                and (request.model.adapter_key in adapters or len(adapters) < MAX_LOADED_ADAPTERS)
            )
            if fits:
                batch.append(request)
                adapters.add(request.model.adapter_key)
            else:
                rest.append(request)
        waiting.extend(rest)
        return batch

    def _decode(self, batch: list[Request]) -> None:
        base = self._base(batch[0].model.base_model)
        prompts = [encode_prompt(base.tokenizer, request.prompt) for request in batch]
        rows = [Row(request, base, prompt) for request, prompt in zip(batch, prompts)]
        adapters = [r.model.adapter_key and str(self.storage.fetch(r.model.adapter_key, self.cache_dir)) for r in batch]
        width = max(map(len, prompts))
        input_ids = torch.tensor([[base.pad_id] * (width - len(p)) + p for p in prompts], device=base.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=base.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with base.selected(adapters) as (module, extra):
            while any(row.active for row in rows):
                logits = module(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    **extra,
                ).logits[:, -1]
                tokens = [row.step(logits[n]) if row.active else base.pad_id for n, row in enumerate(rows)]
                input_ids = torch.tensor(tokens, device=base.device)[:, None]
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = positions[:, -1:] + 1
        for row in rows:
            row.close()
