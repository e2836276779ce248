"""The default engine: continuous batching on the Llama decoder (decoder.py).

One scheduler thread owns the model. Between two decode steps it admits waiting requests (up to
MAX_BATCH rows, of one base model): they are prefilled together (grouped by prompt length), each
into its own KV-cache slot, pick their first token and join the next step. Every step decodes
one token for every running row, each with its own adapter (up to MAX_LOADED_ADAPTERS loaded,
least recently used evicted), sampling parameters, stop strings and seed. A row that finishes,
or whose caller went away, leaves at once and its slot goes to the next request.

Bases the decoder does not support (another architecture) are served by the transformers +
peft engine (hf.py).
"""

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from openft.hardware import cpu_has_native_bf16
from openft.inference.decoder import LlamaDecoder, unsupported
from openft.inference.engine import ModelRef, Prompt, SamplingParams
from openft.inference.hf import HFEngine
from openft.inference.requests import Request, RequestQueue, Row, encode_prompt, stop_token_ids
from openft.storage import Storage

MAX_BATCH = 16
MAX_LOADED_ADAPTERS = 8

transformers_logging.disable_progress_bar()


class ServedBase:
    def __init__(self, path: Path, quantize: str):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.type == "cuda" or cpu_has_native_bf16() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.decoder = LlamaDecoder(model, quantize, dtype, self.device, MAX_LOADED_ADAPTERS)
        self.context_length = model.config.max_position_embeddings
        self.stop_ids = stop_token_ids(self.tokenizer, model.config)


@dataclass
class _Running:
    row: Row
    adapter: int  # its slot in the decoder's adapter bank
    token: int  # the last token picked, fed to the next step


class BatchedEngine:
    def __init__(self, models_dir: Path, threads: int, storage: Storage, cache_dir: Path, quantize: str = "auto"):
        self.models_dir, self.threads, self.storage, self.cache_dir = models_dir, threads, storage, cache_dir
        self.quantize = quantize
        self._bases: dict[str, ServedBase] = {}
        self._decodable: dict[str, bool] = {}  # base name -> whether the decoder runs it
        self._fallback: HFEngine | None = None
        self._lock = threading.Lock()  # loading a base
        self._queue = RequestQueue(self._schedule)

    def context_length(self, model: ModelRef) -> int:
        if engine := self._other_engine(model):
            return engine.context_length(model)
        return self._base(model.base_model).context_length

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int:
        if engine := self._other_engine(model):
            return engine.count_prompt_tokens(model, prompt)
        return len(encode_prompt(self._base(model.base_model).tokenizer, prompt))

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams):
        request = Request(model, prompt, params)
        self.submit(request)
        return request.stream()

    def submit(self, request: Request) -> None:
        """Queues a request whose chunks go to its `out` (see process.py)."""
        if engine := self._other_engine(request.model):
            engine.submit(request)
        else:
            self._queue.submit(request)

    def _other_engine(self, model: ModelRef) -> HFEngine | None:
        """The transformers engine, for a base this decoder cannot run."""
        name = model.base_model
        if name not in self._decodable:
            self._decodable[name] = not unsupported(AutoConfig.from_pretrained(self.models_dir / name))
        if self._decodable[name]:
            return None
        with self._lock:
            if self._fallback is None:
                self._fallback = HFEngine(self.models_dir, self.threads, self.storage, self.cache_dir)
        return self._fallback

    def _base(self, name: str) -> ServedBase:
        with self._lock:
            if name not in self._bases:
                torch.set_num_threads(self.threads)
                self._bases[name] = ServedBase(self.models_dir / name, self.quantize)
            return self._bases[name]

    def _schedule(self, incoming) -> None:
        waiting: deque[Request] = deque()
        running: list[_Running] = []  # row i decodes in KV-cache slot i
        while True:
            if not running and not waiting:
                waiting.append(incoming.get())
            while not incoming.empty():
                waiting.append(incoming.get_nowait())
            with torch.inference_mode():
                self._admit(waiting, running)
                if running:
                    try:
                        self._step(running)
                    except BaseException as error:  # every running caller hears of it; serving goes on
                        for entry in running:
                            entry.row.request.fail(error)
                        running.clear()

    def _admit(self, waiting: deque[Request], running: list[_Running]) -> None:
        """Prefills the waiting requests that can join the running batch (same base, a free row,
        their adapter loadable), in arrival order; each picks its first token."""
        if not waiting:
            return
        base_name = (running[0].row.request if running else waiting[0]).model.base_model
        joining: list[_Running] = []
        deferred: deque[Request] = deque()
        while waiting:
            request = waiting.popleft()
            if request.gone.is_set():
                continue
            if request.model.base_model != base_name or len(running) + len(joining) >= MAX_BATCH:
                deferred.append(request)
                continue
            try:
                base = self._base(base_name)
                adapter_dir = request.model.adapter_key and str(
                    self.storage.fetch(request.model.adapter_key, self.cache_dir)
                )
                busy = {entry.adapter for entry in running + joining}
                adapter = base.decoder.adapters.slot(adapter_dir, busy)
                if adapter is None:  # every adapter slot is in use by a running row
                    deferred.append(request)
                    continue
                row = Row(request, base, encode_prompt(base.tokenizer, request.prompt))
                if not row.done:
                    joining.append(_Running(row, adapter, token=-1))
            except BaseException as error:
                request.fail(error)
        waiting.extend(deferred)
        for group in _prefill_groups(joining):
            first = len(running)
            try:
                logits = base.decoder.prefill(
                    list(range(first, first + len(group))),
                    [entry.row.prompt_ids for entry in group],
                    [entry.adapter for entry in group],
                )
            except BaseException as error:
                for entry in group:
                    entry.row.request.fail(error)
                continue
            for index, entry in enumerate(group):
                entry.token = entry.row.step(logits[index])
            running.extend(group)
            self._drop_finished(running, base.decoder)

    def _step(self, running: list[_Running]) -> None:
        decoder = self._bases[running[0].row.request.model.base_model].decoder
        logits = decoder.decode([entry.token for entry in running], [entry.adapter for entry in running])
        for index, entry in enumerate(running):
            if entry.row.active:
                entry.token = entry.row.step(logits[index])
        self._drop_finished(running, decoder)

    @staticmethod
    def _drop_finished(running: list[_Running], decoder: LlamaDecoder) -> None:
        """Removes the rows that are done or whose caller left, moving the others down so that
        row i stays in KV-cache slot i. (Rows keep their order, so each moves into a slot
        already vacated or moved from.)"""
        staying = [entry for entry in running if entry.row.active]
        for entry in running:
            if not entry.row.active:
                entry.row.close()
        slots = {id(entry): slot for slot, entry in enumerate(running)}
        for slot, entry in enumerate(staying):
            if slots[id(entry)] != slot:
                decoder.move(slots[id(entry)], slot)
        running[:] = staying


def _prefill_groups(joining: list[_Running]) -> list[list[_Running]]:
    """Joining rows in groups of similar prompt length, shortest first, so that padding every
    prompt of a group to its longest at most doubles the group's tokens."""
    groups: list[list[_Running]] = []
    for entry in sorted(joining, key=lambda entry: len(entry.row.prompt_ids)):
        group = groups[-1] if groups else None
        length = len(entry.row.prompt_ids)
        if group and (len(group) + 1) * length <= 2 * (sum(len(e.row.prompt_ids) for e in group) + length):
            group.append(entry)
        else:
            groups.append([entry])
    return groups
