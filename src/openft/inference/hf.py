"""The transformers + peft engine (CPU or one GPU).

One copy of each base model is loaded; fine-tunes are LoRA adapters attached to it on demand and
evicted least-recently-used. An adapter is named by its key in the artifact storage and fetched
to this host (once, into the cache dir) the first time it is needed. Requests run one at a time
behind a lock: the decode loop is a plain prefill + KV-cached step loop, so it can stream and
stop on strings.
"""

import threading
from contextlib import ExitStack, contextmanager
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator
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

    @contextmanager
    def selected(self, adapter_path: str | None) -> Iterator:
        """The module to run for one request, with the right adapter active (or, for the base
        model, every adapter disabled) for the whole request: toggling peft's adapters walks
        every LoRA layer, too slow to do per token."""
        if adapter_path is None:
            if self.peft is None:
                yield self.model
            else:
                with self.peft.disable_adapter():
                    yield self.peft
            return
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
        self.peft.set_adapter(name)
        yield self.peft


class HFEngine:
    def __init__(self, models_dir: Path, threads: int, storage: Storage, cache_dir: Path):
        self.models_dir = models_dir
        self.threads = threads
        self.storage = storage
        self.cache_dir = cache_dir
        self._bases: dict[str, LoadedBase] = {}
        self._lock = threading.Lock()

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
        with self._lock, torch.inference_mode(), ExitStack() as stack:
            base = self._base(model.base_model)
            adapter = model.adapter_path and str(self.storage.fetch(model.adapter_path, self.cache_dir))
            module = stack.enter_context(base.selected(adapter))
            prompt_ids = self._encode(base, prompt)
            budget = base.context_length - len(prompt_ids)
            max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
            generator = None
            if params.seed is not None:
                generator = torch.Generator(device=base.device).manual_seed(params.seed)

            cache = DynamicCache()
            inputs = torch.tensor([prompt_ids], device=base.device)
            generated: list[int] = []
            counts: Counter[int] = Counter()
            logprobs: list[TokenLogprob] = []  # of tokens not yet handed out with a chunk
            sent = 0
            finish_reason = "length"
            while len(generated) < max_tokens:
                logits = module(input_ids=inputs, cache=cache, use_cache=True).logits[0, -1]
                logits = penalize(bias(logits, params.logit_bias), counts, params.presence_penalty, params.frequency_penalty)
                token = next_token(logits, params.temperature, params.top_p, generator)
                generated.append(token)
                counts[token] += 1
                if token in base.stop_ids:
                    finish_reason = "stop"
                    break
                if params.logprobs:
                    logprobs.append(_token_logprob(base.tokenizer, logits, token, params.top_logprobs))
                text = base.tokenizer.decode(generated, skip_special_tokens=True)
                stop_at = find_stop(text, params.stop)
                if stop_at is not None:
                    if stop_at > sent:
                        yield Chunk(text[sent:stop_at], logprobs=_take(logprobs))
                    sent = None
                    finish_reason = "stop"
                    break
                ready = safe_length(text, params.stop)
                if ready > sent:
                    yield Chunk(text[sent:ready], logprobs=_take(logprobs))
                    sent = ready
                inputs = torch.tensor([[token]], device=base.device)
            if sent is not None:
                text = base.tokenizer.decode(generated, skip_special_tokens=True)
                if len(text) > sent:
                    yield Chunk(text[sent:], logprobs=_take(logprobs))
            yield Chunk("", finish_reason, prompt_tokens=len(prompt_ids), completion_tokens=len(generated),
                        logprobs=_take(logprobs))  # fmt: skip


def _token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprob, alternatives = token_logprobs(logits, token, top)
    return TokenLogprob(tokenizer.decode([token]), logprob, tuple((tokenizer.decode([t]), lp) for t, lp in alternatives))


def _take(pending: list) -> list:
    taken = pending[:]
    pending.clear()
    return taken
