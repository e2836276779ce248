"""Constrained decoding in openft's engines: a reply's grammar (constraints.py) compiled by
llguidance for a base's tokenizer, and each constrained row's token mask.

Compiling runs on a thread of its own, never the scheduler's: `ready` starts it and says when
it is done, so a request waits for its grammar in the queue while the rows already decoding go
on. Compiled grammars are kept per grammar text (the request's schema, tools and options), as
pristine matchers; a row decodes with a copy, so a repeated schema costs a copy, not a compile.

Each step a constrained row asks its matcher which tokens may come next (a bitmask over the
vocabulary), sets every other logit to -inf before sampling, and tells the matcher the token
it picked. Masks are per row, so constrained and free rows, of any adapters, share a batch;
the end-of-turn token is allowed exactly when the grammar is complete.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import llguidance
import llguidance.hf
import numpy as np
import torch

CACHED_GRAMMARS = 256  # compiled grammars kept per base, least recently used dropped


class Grammars:
    """The grammars of one base model's tokenizer."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: set[int]):
        self.vocab_size = vocab_size
        self._hf_tokenizer, self._stop_ids = tokenizer, sorted(stop_ids)
        self._tokenizer: llguidance.LLTokenizer | None = None  # built with the first grammar (about 1 s)
        self._compiled: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="openft-grammar")

    def ready(self, grammar: str) -> bool:
        """Whether `grammar` is compiled (or failed to compile); starts compiling it if not."""
        return self._future(grammar).done()

    def matcher(self, grammar: str) -> RowGrammar:
        """A fresh matcher for one row (waits for the compilation; raises its error)."""
        return RowGrammar(self._future(grammar).result().deep_copy(), self.vocab_size)

    def _future(self, grammar: str) -> Future:
        with self._lock:
            future = self._compiled.get(grammar)
            if future is None:
                future = self._compiled[grammar] = self._pool.submit(self._compile, grammar)
                if len(self._compiled) > CACHED_GRAMMARS:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(grammar)
            return future

    def _compile(self, grammar: str) -> llguidance.LLMatcher:
        if self._tokenizer is None:
            self._tokenizer = llguidance.hf.from_tokenizer(
                self._hf_tokenizer, n_vocab=self.vocab_size, eos_token=self._stop_ids
            )
        matcher = llguidance.LLMatcher(self._tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar))
        if matcher.is_error():
            raise ValueError(f"The reply's grammar does not compile: {matcher.get_error()}")
        return matcher


class RowGrammar:
    """One row's place in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._bits = np.zeros((vocab_size + 31) // 32, dtype=np.int32)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` with every token the grammar forbids next at -inf (a new tensor)."""
        self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        allowed = np.unpackbits(self._bits.view(np.uint8), count=self.vocab_size, bitorder="little").view(np.bool_)
        if logits.device.type == "cpu":
            # numpy runs single-threaded; torch would spread 49k elements over the engine's OpenMP
            # team, which costs more in waking threads than in masking.
            return torch.from_numpy(np.where(allowed, logits.float().numpy(), np.float32(-np.inf)))
        return logits.masked_fill(torch.from_numpy(~allowed).to(logits.device, non_blocking=True), float("-inf"))

    def complete(self) -> bool:
        """Whether what the row wrote so far is a whole reply (the end-of-turn token may follow)."""
        return self.matcher.is_accepting()

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"Token {token} broke the reply's grammar: {self.matcher.get_error()}")
