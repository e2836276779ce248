"""The default engine: continuous batching on openft's decoder (decoder.py), and on transformers
(hf.py) for the bases of other architectures, in one scheduler.

One scheduler thread owns the models. Between two decode steps it admits waiting generations (up
to MAX_BATCH rows, of one base model): they are prefilled together (grouped by prompt length),
each into its own KV-cache slot, pick their first token and join the next step. Every step
decodes one token for every running row, each with its own adapter (up to MAX_LOADED_ADAPTERS
loaded, least recently used evicted), sampling parameters, stop strings, seed and grammar. A row
that finishes, or whose caller went away, leaves at once and its slot goes to the next generation.
A transformers base runs the same way, except that its rows cannot join a running batch (hf.py).
A generation whose grammar is still compiling (grammar.py, on another thread) waits in the queue
without holding the running rows up.

Between bases: a batch holds rows of one base, and a batch of another base starts when it ends.
Fairness: a batch starts with every waiting generation of the base of the oldest waiting one,
and admits newcomers of its base only while no generation of another base waits; once one does,
the batch takes no more rows, and when its rows are done the base of the oldest waiting
generation goes next. A request so waits at most for the running rows to finish, plus one batch
per base whose oldest request came before it. Loading a base (local.Models, under the memory
budget) happens only between batches, so it never unloads a base whose rows are running.
"""

import queue
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass

import torch

from openft.inference.engine import MAX_BATCH
from openft.inference.local import LocalEngine
from openft.inference.rows import Generation, Row

GATHER_SECONDS = 0.01  # an idle engine waits this long for generations sent at the same moment
GRAMMAR_POLL_SECONDS = 0.005  # how often an idle scheduler looks whether a grammar is compiled


@dataclass
class _Running:
    row: Row
    adapter: int  # its slot in the model's adapters
    token: int  # the last token picked, fed to the next step


class BatchedEngine(LocalEngine):
    def _schedule(self, incoming: queue.Queue[Generation]) -> None:
        waiting: deque[Generation] = deque()
        running: list[_Running] = []  # row i decodes in KV-cache slot i
        model = None  # the running rows' base's model
        while True:
            if not running and not waiting:
                model = None  # an idle engine may unload it for a training job (local.Models.give_way)
                waiting.append(self._next(incoming))
                time.sleep(GATHER_SECONDS)
            elif not running:  # what waits, waits for its grammar (compiled on another thread)
                with suppress(queue.Empty):
                    waiting.append(incoming.get(timeout=GRAMMAR_POLL_SECONDS))
            self._use_cores(True)
            while not incoming.empty():
                waiting.append(incoming.get_nowait())
            with torch.inference_mode():
                model = self._admit(waiting, running, model)
                if running:
                    try:
                        self._step(running, model)
                    except BaseException as error:  # every running caller hears of it; serving goes on
                        for entry in running:
                            entry.row.generation.fail(error)
                        running.clear()

    def _admit(self, waiting: deque[Generation], running: list[_Running], model):
        """Prefills the waiting generations that may join the batch (see the module docstring:
        its base, a free row, their adapter loadable), in arrival order; each picks its first
        token. Returns the batch's model (a new batch's: loaded if it is not)."""
        for generation in [g for g in waiting if g.gone.is_set() or g.finished]:
            waiting.remove(generation)
            generation.end()
        if not waiting:
            return model
        if running:
            base_name = running[0].row.generation.model.base_model
            if not model.joins_running or any(g.model.base_model != base_name for g in waiting):
                return model
        else:
            base_name = waiting[0].model.base_model
            try:
                model = self.models.get(self._base(base_name), self.quantize)
            except BaseException as error:  # the base cannot be served: its callers hear why
                for generation in [g for g in waiting if g.model.base_model == base_name]:
                    waiting.remove(generation)
                    generation.fail(error)
                return None
        base = self._base(base_name)
        joining: list[_Running] = []
        deferred: deque[Generation] = deque()
        while waiting:
            generation = waiting.popleft()
            if generation.model.base_model != base_name or len(running) + len(joining) >= self._batch_limit(model):
                deferred.append(generation)
                continue
            try:
                if generation.params.grammar and not base.grammars.ready(generation.params.grammar):
                    deferred.append(generation)
                    continue
                adapter_dir = self._adapter_dir(generation.model)
                busy = {entry.adapter for entry in running + joining}
                adapter = model.adapters.slot(adapter_dir, busy)
                if adapter is None:  # every adapter slot is in use by a running row
                    deferred.append(generation)
                    continue
                row = Row(generation, base, base.prompt_ids(generation.prompt))
                if not row.done:
                    joining.append(_Running(row, adapter, token=-1))
            except BaseException as error:
                generation.fail(error)
        waiting.extend(deferred)
        for group in self._prefill_groups(joining, model):
            first = len(running)
            try:
                logits = model.prefill(
                    list(range(first, first + len(group))),
                    [entry.row.prompt_ids for entry in group],
                    [entry.adapter for entry in group],
                )
            except BaseException as error:
                for entry in group:
                    entry.row.generation.fail(error)
                continue
            for index, entry in enumerate(group):
                self._pick(entry, logits[index])
            running.extend(group)
            self._drop_finished(running, model)
        return model

    def _batch_limit(self, model) -> int:
        """Rows a batch of this model may hold. With batch invariance, a transformers model's
        batch is one row: its left-padded batch would change each row's numbers."""
        return 1 if self.batch_invariant and not model.joins_running else MAX_BATCH

    def _prefill_groups(self, joining: list[_Running], model) -> list[list[_Running]]:
        """How the joining rows are prefilled: alone, with batch invariance (a prompt's shapes
        then never depend on the others'); else a transformers batch as one left-padded prefill,
        the decoder's in groups of similar prompt length, shortest first, so that padding every
        prompt of a group to its longest at most doubles the group's tokens."""
        if self.batch_invariant or not joining:
            return [[entry] for entry in joining]
        if not model.joins_running:
            return [joining]
        groups: list[list[_Running]] = []
        for entry in sorted(joining, key=lambda entry: len(entry.row.prompt_ids)):
            group = groups[-1] if groups else None
            length = len(entry.row.prompt_ids)
            if group and (len(group) + 1) * length <= 2 * (sum(len(e.row.prompt_ids) for e in group) + length):
                group.append(entry)
            else:
                groups.append([entry])
        return groups

    def _step(self, running: list[_Running], model) -> None:
        logits = model.decode([entry.token for entry in running], [entry.adapter for entry in running])
        for index, entry in enumerate(running):
            if entry.row.active:
                self._pick(entry, logits[index])
        self._drop_finished(running, model)

    @staticmethod
    def _pick(entry: _Running, logits: torch.Tensor) -> None:
        """The row's next token. What goes wrong in one row (its sampling, grammar, tokenizer,
        stop strings) ends that row's request alone: the others in the batch go on."""
        try:
            entry.token = entry.row.step(logits)
        except Exception as error:
            entry.row.fail(error)

    @staticmethod
    def _drop_finished(running: list[_Running], model) -> None:
        """Removes the rows that are done or whose caller left, moving the others down so that
        row i stays in KV-cache slot i."""
        if all(entry.row.active for entry in running):
            return
        for entry in running:
            if not entry.row.active:
                entry.row.close()
        model.keep([slot for slot, entry in enumerate(running) if entry.row.active])
        running[:] = [entry for entry in running if entry.row.active]
