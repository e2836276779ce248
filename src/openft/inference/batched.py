"""The default engine: continuous batching on the Llama decoder (decoder.py).

One scheduler thread owns the model. Between two decode steps it admits waiting generations (up to
MAX_BATCH rows, of one base model): they are prefilled together (grouped by prompt length), each
into its own KV-cache slot, pick their first token and join the next step. Every step decodes
one token for every running row, each with its own adapter (up to MAX_LOADED_ADAPTERS loaded,
least recently used evicted), sampling parameters, stop strings, seed and grammar. A row that
finishes, or whose caller went away, leaves at once and its slot goes to the next generation. A
generation whose grammar is still compiling (grammar.py, on another thread) waits in the queue
without holding the running rows up.

Bases the decoder does not support (another architecture) are served by the transformers +
peft engine (hf.py).
"""

import queue
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from openft.inference.decoder import LlamaDecoder, unsupported_reason
from openft.inference.engine import MAX_BATCH, MAX_LOADED_ADAPTERS, ModelRef, Prompt
from openft.inference.hf import HFEngine
from openft.inference.local import LoadedBase, LocalEngine
from openft.inference.rows import Generation, Row
from openft.storage import Storage

GRAMMAR_POLL_SECONDS = 0.005  # how often an idle scheduler looks whether a grammar is compiled


class DecoderBase(LoadedBase):
    """A base model in openft's decoder."""

    def __init__(self, path: Path, quantize: str):
        super().__init__(path)
        # Loaded as stored: the decoder converts each weight itself, packing to int4 only the
        # weights whose stored values are exact 4-bit groups (which a bf16 load would round).
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.decoder = LlamaDecoder(model, quantize, self.dtype, self.device, MAX_LOADED_ADAPTERS)


@dataclass
class _Running:
    row: Row
    adapter: int  # its slot in the decoder's adapter bank
    token: int  # the last token picked, fed to the next step


class BatchedEngine(LocalEngine):
    def __init__(self, models_dir: Path, threads: int, storage: Storage, cache_dir: Path, quantize: str = "auto"):
        super().__init__(models_dir, threads, storage, cache_dir)
        self.quantize = quantize
        self._decodable: dict[str, bool] = {}  # base name -> whether the decoder runs it
        self._fallback: HFEngine | None = None  # the transformers engine, for bases the decoder cannot run

    def context_length(self, model: ModelRef) -> int:
        if fallback := self._fallback_for(model):
            return fallback.context_length(model)
        return super().context_length(model)

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int:
        if fallback := self._fallback_for(model):
            return fallback.count_prompt_tokens(model, prompt)
        return super().count_prompt_tokens(model, prompt)

    def submit(self, generation: Generation) -> None:
        if fallback := self._fallback_for(generation.model):
            fallback.submit(generation)
        else:
            super().submit(generation)

    def _fallback_for(self, model: ModelRef) -> HFEngine | None:
        """The transformers engine if this decoder cannot run the model's base, else None."""
        name = model.base_model
        if name not in self._decodable:
            self._decodable[name] = unsupported_reason(AutoConfig.from_pretrained(self.models_dir / name)) is None
        if self._decodable[name]:
            return None
        with self._lock:
            if self._fallback is None:
                self._fallback = HFEngine(self.models_dir, self.threads, self.storage, self.cache_dir)
        return self._fallback

    def _load(self, path: Path) -> DecoderBase:
        return DecoderBase(path, self.quantize)

    def _schedule(self, incoming) -> None:
        waiting: deque[Generation] = deque()
        running: list[_Running] = []  # row i decodes in KV-cache slot i
        while True:
            if not running and not waiting:
                waiting.append(incoming.get())
            elif not running:  # what waits, waits for its grammar (compiled on another thread)
                with suppress(queue.Empty):
                    waiting.append(incoming.get(timeout=GRAMMAR_POLL_SECONDS))
            while not incoming.empty():
                waiting.append(incoming.get_nowait())
            with torch.inference_mode():
                self._admit(waiting, running)
                if running:
                    try:
                        self._step(running)
                    except BaseException as error:  # every running caller hears of it; serving goes on
                        for entry in running:
                            entry.row.generation.fail(error)
                        running.clear()

    def _admit(self, waiting: deque[Generation], running: list[_Running]) -> None:
        """Prefills the waiting generations that can join the running batch (same base, a free row,
        their adapter loadable), in arrival order; each picks its first token."""
        if not waiting:
            return
        base_name = (running[0].row.generation if running else waiting[0]).model.base_model
        joining: list[_Running] = []
        deferred: deque[Generation] = deque()
        while waiting:
            generation = waiting.popleft()
            if generation.gone.is_set():
                continue
            if generation.model.base_model != base_name or len(running) + len(joining) >= MAX_BATCH:
                deferred.append(generation)
                continue
            try:
                base = self._base(base_name)
                if generation.params.grammar and not base.grammars.ready(generation.params.grammar):
                    deferred.append(generation)
                    continue
                adapter_dir = self._adapter_dir(generation.model)
                busy = {entry.adapter for entry in running + joining}
                adapter = base.decoder.adapters.slot(adapter_dir, busy)
                if adapter is None:  # every adapter slot is in use by a running row
                    deferred.append(generation)
                    continue
                row = Row(generation, base, base.prompt_ids(generation.prompt))
                if not row.done:
                    joining.append(_Running(row, adapter, token=-1))
            except BaseException as error:
                generation.fail(error)
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
                    entry.row.generation.fail(error)
                continue
            for index, entry in enumerate(group):
                entry.token = entry.row.step(logits[index])
            running.extend(group)
            self._drop_finished(running, base.decoder)

    def _step(self, running: list[_Running]) -> None:
        decoder = self._bases[running[0].row.generation.model.base_model].decoder
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
