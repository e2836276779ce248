"""The transformers + peft engine (CPU or one GPU).

One copy of each base model is loaded; fine-tunes are LoRA adapters attached to it on demand and
evicted least-recently-used. An adapter is named by its key in the artifact storage and fetched
to this host (once, into the cache dir) the first time it is needed.

Requests are decoded in batches by one scheduler thread: requests that arrive while a batch runs
wait for it to end, then the waiting ones for the same base model (up to `MAX_BATCH`, and up to
`MAX_LOADED_ADAPTERS` different adapters) are decoded together: one left-padded prefill, then
KV-cached steps in which every row picks its own next token with its own sampling parameters,
stop strings and seed, and streams its text to its caller. Rows of different adapters run in one
forward pass (peft's `adapter_names`). A row that is done, or whose caller went away, stops
streaming; the batch ends when every row is done.
"""

import queue
import threading
import time
import warnings
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as transformers_logging

from openft.data.labels import chat_messages
from openft.inference.engine import Chunk, ModelRef, Prompt, SamplingParams, TokenLogprob
from openft.inference.sampling import bias, next_token, penalize, token_logprobs
from openft.inference.stops import find_stop, safe_length
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
        config = self.model.config
        self.context_length = config.max_position_embeddings
        eos = config.eos_token_id
        self.stop_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id

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


class _Request:
    def __init__(self, model: ModelRef, prompt: Prompt, params: SamplingParams):
        self.model, self.prompt, self.params = model, prompt, params
        self.out: queue.Queue = queue.Queue()  # Chunk, then None at the end, or an exception
        self.gone = threading.Event()  # the caller stopped reading


class _Row:
    """One request's decoding inside a batch: its tokens, what it has streamed, when it ends."""

    def __init__(self, request: _Request, base: LoadedBase, prompt_ids: list[int]):
        params = request.params
        self.request, self.params, self.base = request, params, base
        self.prompt_tokens = len(prompt_ids)
        budget = base.context_length - len(prompt_ids)
        self.max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator(device=base.device).manual_seed(params.seed)
        self.generated: list[int] = []
        self.counts: Counter[int] = Counter()
        self.logprobs: list[TokenLogprob] = []  # of tokens not yet handed out with a chunk
        self.sent: int | None = 0
        self.done = False
        if self.max_tokens <= 0:
            self.finish("length")

    def step(self, logits: torch.Tensor) -> int:
        """Pick the next token from this row's logits, stream what can be sent, and return it."""
        params, tokenizer = self.params, self.base.tokenizer
        logits = penalize(bias(logits, params.logit_bias), self.counts, params.presence_penalty, params.frequency_penalty)
        token = next_token(logits, params.temperature, params.top_p, self.generator)
        self.generated.append(token)
        self.counts[token] += 1
        if token in self.base.stop_ids:
            self.finish("stop")
            return token
        if params.logprobs:
            self.logprobs.append(_token_logprob(tokenizer, logits, token, params.top_logprobs))
        text = tokenizer.decode(self.generated, skip_special_tokens=True)
        stop_at = find_stop(text, params.stop)
        if stop_at is not None:
            if stop_at > self.sent:
                self.send(Chunk(text[self.sent : stop_at], logprobs=_take(self.logprobs)))
            self.sent = None
            self.finish("stop")
            return token
        ready = safe_length(text, params.stop)
        if ready > self.sent:
            self.send(Chunk(text[self.sent : ready], logprobs=_take(self.logprobs)))
            self.sent = ready
        if len(self.generated) >= self.max_tokens:
            self.finish("length")
        return token

    def finish(self, reason: str) -> None:
        if self.sent is not None:
            text = self.base.tokenizer.decode(self.generated, skip_special_tokens=True)
            if len(text) > self.sent:
                self.send(Chunk(text[self.sent :], logprobs=_take(self.logprobs)))
        self.send(Chunk("", reason, prompt_tokens=self.prompt_tokens, completion_tokens=len(self.generated),
                        logprobs=_take(self.logprobs)))  # fmt: skip
        self.request.out.put(None)
        self.done = True

    def send(self, chunk: Chunk) -> None:
        self.request.out.put(chunk)

    @property
    def active(self) -> bool:
        return not self.done and not self.request.gone.is_set()


class HFEngine:
    def __init__(self, models_dir: Path, threads: int, storage: Storage, cache_dir: Path):
        self.models_dir = models_dir
        self.threads = threads
        self.storage = storage
        self.cache_dir = cache_dir
        self._bases: dict[str, LoadedBase] = {}
        self._lock = threading.Lock()  # the model: one batch, or one token count, at a time
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._scheduler: threading.Thread | None = None

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
            return len(self._encode(self._base(model.base_model), prompt))

    @staticmethod
    def _encode(base: LoadedBase, prompt: Prompt) -> list[int]:
        # The same message normalisation as training, so a fine-tune sees tools as it learned them.
        messages, tools = chat_messages(base.tokenizer, prompt.messages, prompt.tools)
        return base.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> Iterator[Chunk]:
        request = _Request(model, prompt, params)
        with self._lock:
            if self._scheduler is None:
                self._scheduler = threading.Thread(target=self._schedule, name="openft-decode", daemon=True)
                self._scheduler.start()
        self._requests.put(request)
        try:
            while (item := request.out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.gone.set()

    def _schedule(self) -> None:
        waiting: deque[_Request] = deque()
        while True:
            if not waiting:
                waiting.append(self._requests.get())
                time.sleep(GATHER_SECONDS)
            while not self._requests.empty():
                waiting.append(self._requests.get_nowait())
            batch = self._next_batch(waiting)
            try:
                with self._lock, torch.inference_mode():
                    self._decode(batch)
            except BaseException as error:  # every caller hears of it; the scheduler goes on
                for request in batch:
                    request.out.put(error)

    @staticmethod
    def _next_batch(waiting: deque[_Request]) -> list[_Request]:
        """The oldest request and the waiting ones that can share its batch (same base model)."""
        first = waiting.popleft()
        batch, adapters, rest = [first], {first.model.adapter_path}, deque()
        while waiting:
            request = waiting.popleft()
            fits = request.model.base_model == first.model.base_model and len(batch) < MAX_BATCH and (
                request.model.adapter_path in adapters or len(adapters) < MAX_LOADED_ADAPTERS
            )
            if fits:
                batch.append(request)
                adapters.add(request.model.adapter_path)
            else:
                rest.append(request)
        waiting.extend(rest)
        return batch

    def _decode(self, batch: list[_Request]) -> None:
        base = self._base(batch[0].model.base_model)
        prompts = [self._encode(base, request.prompt) for request in batch]
        rows = [_Row(request, base, prompt) for request, prompt in zip(batch, prompts)]
        adapters = [r.model.adapter_path and str(self.storage.fetch(r.model.adapter_path, self.cache_dir)) for r in batch]
        width = max(map(len, prompts))
        input_ids = torch.tensor([[base.pad_id] * (width - len(p)) + p for p in prompts], device=base.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=base.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        with base.selected(adapters) as (module, extra):
            while any(row.active for row in rows):
                logits = module(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                                use_cache=True, **extra).logits[:, -1]  # fmt: skip
                tokens = [row.step(logits[n]) if row.active else base.pad_id for n, row in enumerate(rows)]
                input_ids = torch.tensor(tokens, device=base.device)[:, None]
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = positions[:, -1:] + 1
        for row in rows:
            if not row.done:  # its caller went away: end its stream all the same
                row.request.out.put(None)


def _token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprob, alternatives = token_logprobs(logits, token, top)
    return TokenLogprob(tokenizer.decode([token]), logprob, tuple((tokenizer.decode([t]), lp) for t, lp in alternatives))


def _take(pending: list) -> list:
    taken = pending[:]
    pending.clear()
    return taken
