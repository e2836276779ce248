"""What every engine does with a chat request around the forward passes: queue it for the
engine's scheduler thread, and decode one row of a batch (sampling, stop strings, streaming)."""

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import torch

from openft.data.chat_format import ChatTemplate
from openft.inference.engine import Chunk, ModelRef, Prompt, SamplingParams, TokenLogprob
from openft.inference.sampling import bias, next_token, penalize, token_logprobs
from openft.inference.stops import find_stop, safe_length


class Request:
    """A generation for the scheduler. Its chunks go to `out` (any object with `put`: by
    default a queue its caller reads with `stream`), then None at the end, or an exception."""

    def __init__(self, model: ModelRef, prompt: Prompt, params: SamplingParams, out=None):
        self.model, self.prompt, self.params = model, prompt, params
        self.out = queue.Queue() if out is None else out
        self.gone = threading.Event()  # the caller stopped reading

    def fail(self, error: BaseException) -> None:
        self.out.put(error)

    def stream(self) -> Iterator[Chunk]:
        try:
            while (item := self.out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.gone.set()


class RequestQueue:
    """Requests handed to one scheduler thread, started with the first request."""

    def __init__(self, schedule: Callable[["queue.Queue[Request]"], None]):
        self._schedule = schedule
        self._incoming: queue.Queue[Request] = queue.Queue()
        self._scheduler: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, request: Request) -> None:
        with self._lock:
            if self._scheduler is None:
                self._scheduler = threading.Thread(
                    target=self._schedule, args=(self._incoming,), name="openft-decode", daemon=True
                )
                self._scheduler.start()
        self._incoming.put(request)


def stop_token_ids(tokenizer, config) -> set[int]:
    """The tokens that end a reply: the tokenizer's end of sequence and the model config's."""
    eos = config.eos_token_id
    return {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])}


def encode_prompt(tokenizer, prompt: Prompt) -> list[int]:
    return ChatTemplate(tokenizer).prompt_ids(prompt.messages, prompt.tools)


class Row:
    """One request's decoding inside a batch: its tokens, what it has streamed, when it ends.
    `base` is the engine's loaded model: its tokenizer, stop ids, context length and device."""

    def __init__(self, request: Request, base, prompt_ids: list[int]):
        params = request.params
        self.request, self.params, self.base = request, params, base
        self.prompt_ids = prompt_ids
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
        logits = penalize(
            bias(logits, params.logit_bias), self.counts, params.presence_penalty, params.frequency_penalty
        )
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
        self.send(
            Chunk(
                "",
                reason,
                prompt_tokens=len(self.prompt_ids),
                completion_tokens=len(self.generated),
                logprobs=_take(self.logprobs),
            )
        )
        self.request.out.put(None)
        self.done = True

    def send(self, chunk: Chunk) -> None:
        self.request.out.put(chunk)

    def close(self) -> None:
        """Ends the caller's stream if the row left early (its caller went away)."""
        if not self.done:
            self.request.out.put(None)
            self.done = True

    @property
    def active(self) -> bool:
        return not self.done and not self.request.gone.is_set()


def _token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprob, alternatives = token_logprobs(logits, token, top)
    return TokenLogprob(
        tokenizer.decode([token]), logprob, tuple((tokenizer.decode([t]), lp) for t, lp in alternatives)
    )


def _take(pending: list) -> list:
    taken = pending[:]
    pending.clear()
    return taken
