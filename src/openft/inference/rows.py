"""A generation in an in-process engine (batched.py, hf.py): where its chunks go, and its row in
a batch: sampling, stop strings and streaming, one token at a time around the engine's forward
passes."""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Generator
from typing import TYPE_CHECKING

import torch

from openft.inference.engine import Chunk, ModelRef, Prompt, SamplingParams, TokenLogprob
from openft.inference.reasoning import ReplySplitter
from openft.inference.sampling import bias, next_token, penalize, token_logprobs
from openft.inference.stops import find_stop, safe_length
from openft.inference.threaded import drain

if TYPE_CHECKING:
    from openft.inference.local import LoadedBase


class Generation:
    """One generation asked of an engine. Its chunks go to `out` (any object with `put`: by
    default a queue its caller reads with `stream`), then None at the end, or an exception."""

    def __init__(self, model: ModelRef, prompt: Prompt, params: SamplingParams, out=None):
        self.model, self.prompt, self.params = model, prompt, params
        self.out = queue.Queue() if out is None else out
        self.gone = threading.Event()  # the caller stopped reading
        self.finished = False  # its end (None) or error was handed to `out`

    def end(self) -> None:
        if not self.finished:
            self.finished = True
            self.out.put(None)

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.out.put(error)

    def stream(self) -> Generator[Chunk, None, None]:
        try:
            yield from drain(self.out)
        finally:
            self.gone.set()


class Row:
    """One generation's decoding inside a batch: its tokens, what it has streamed, when it ends."""

    def __init__(self, generation: Generation, base: LoadedBase, prompt_ids: list[int]):
        params = generation.params
        self.generation, self.params, self.base = generation, params, base
        self.prompt_ids = prompt_ids
        budget = base.context_length - len(prompt_ids)
        self.max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator(device=base.device).manual_seed(params.seed)
        # The reply's grammar, compiled before the row was admitted (grammar.py)
        self.grammar = base.grammars.matcher(params.grammar) if params.grammar else None
        # A thinking base's reply, split into its thought and its answer as it is streamed
        self.splitter = ReplySplitter(base.reply_opening(prompt_ids)) if base.thinks else None
        self.generated: list[int] = []
        self.counts: Counter[int] = Counter()
        self.logprobs: list[TokenLogprob] = []  # of tokens not yet handed out with a chunk
        self.sent: int | None = 0
        # Where stop strings may begin in the text: anywhere in a free reply; in a constrained
        # one only after the token that completed its grammar (None while it is incomplete), so
        # that a stop string never cuts a strict reply's JSON or a tool call short.
        self.stops_from: int | None = 0 if self.grammar is None else None
        self.done = False
        if self.max_tokens <= 0:
            self.finish("length")

    def step(self, logits: torch.Tensor) -> int:
        """Pick the next token from this row's logits, stream what can be sent, and return it."""
        params, tokenizer = self.params, self.base.tokenizer
        logits = penalize(
            bias(logits, params.logit_bias), self.counts, params.presence_penalty, params.frequency_penalty
        )
        # A thought the prompt opened is free: the grammar holds the answer after it.
        constrained = self.grammar is not None and not (self.splitter and self.splitter.thinking)
        if constrained:
            logits = self.grammar.mask(logits)
        token = next_token(logits, params.temperature, params.top_p, self.generator)
        if constrained:
            self.grammar.accept(token)
        self.generated.append(token)
        self.counts[token] += 1
        if token in self.base.stop_ids:
            self.finish("stop")
            return token
        if params.logprobs:
            self.logprobs.append(_token_logprob(tokenizer, logits, token, params.top_logprobs))
        text = tokenizer.decode(self.generated, skip_special_tokens=True)
        if self.splitter is not None:
            self.splitter.token(text)
        if self.grammar is not None:
            if not self.grammar.complete():
                self.stops_from = None
            elif self.stops_from is None:  # this token completed it: what it wrote is the grammar's
                self.stops_from = len(text)
        stops = params.stop if self.stops_from is not None else ()
        stop_at = find_stop(text, stops, self.stops_from or 0)
        if stop_at is not None:
            self.send_text(text[:stop_at], final=True)
            self.sent = None
            self.finish("stop")
            return token
        self.send_text(text[: safe_length(text, stops, self.stops_from or 0)], final=False)
        if len(self.generated) >= self.max_tokens:
            self.finish("length")
        return token

    def finish(self, reason: str) -> None:
        if self.sent is not None:
            self.send_text(self.base.tokenizer.decode(self.generated, skip_special_tokens=True), final=True)
        self.send(
            Chunk(
                "",
                reason,
                prompt_tokens=len(self.prompt_ids),
                completion_tokens=len(self.generated),
                logprobs=_take(self.logprobs),
                reasoning_tokens=self.splitter.thought_tokens if self.splitter else 0,
            )
        )
        self.generation.end()
        self.done = True

    def fail(self, error: BaseException) -> None:
        """Ends this row alone with `error` (its caller raises it); the batch goes on."""
        self.generation.fail(error)
        self.done = True

    def send_text(self, upto: str, final: bool) -> None:
        """Streams the reply up to `upto` (its text so far, less what a stop string may still
        take): what was not sent, as answer and thought. `final`: the reply ends there."""
        if len(upto) <= self.sent and not final:
            return
        if self.splitter is None:
            reasoning, answer = "", upto[self.sent :]
        else:
            reasoning, answer = self.splitter.advance(upto, final)
        if answer or reasoning:
            self.send(Chunk(answer, reasoning=reasoning, logprobs=_take(self.logprobs)))
        self.sent = len(upto)

    def send(self, chunk: Chunk) -> None:
        self.generation.out.put(chunk)

    def close(self) -> None:
        """Ends the caller's stream if the row left early (its caller went away)."""
        if not self.done:
            self.generation.end()
            self.done = True

    @property
    def active(self) -> bool:
        return not self.done and not self.generation.gone.is_set()


def _token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprob, alternatives = token_logprobs(logits, token, top)
    return TokenLogprob(
        tokenizer.decode([token]), logprob, tuple((tokenizer.decode([t]), lp) for t, lp in alternatives)
    )


def _take(pending: list) -> list:
    taken = pending[:]
    pending.clear()
    return taken
