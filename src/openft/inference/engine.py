"""What the server needs from an inference engine. The engine knows nothing about HTTP: it turns
chat messages into streamed text for a base model, optionally with a LoRA adapter."""

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Protocol

# What one engine serves at once, whichever it is: rows decoded together (of one base model), and
# LoRA adapters loaded per base (least recently used evicted).
MAX_BATCH = 16
MAX_LOADED_ADAPTERS = 8


@dataclass(frozen=True)
class ModelRef:
    """A servable model: a base in the model store plus, for a fine-tune, its adapter."""

    base_model: str
    adapter_key: str | None = None  # the adapter's key in the artifact storage (openft/storage.py)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None  # None: up to the context limit
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: str | None = None  # what the reply must match (constraints.py: llguidance's Lark)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token as the client sees it: its text, log-probability and the most
    likely alternatives at that position (text, log-probability)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Chunk:
    """A piece of generated text: of the answer (`text`) and, for a base that thinks, of its
    thought (`reasoning`, reasoning.py). The last chunk of a generation carries the finish reason
    and the token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of the tokens first shown in this chunk
    reasoning: str = ""
    reasoning_tokens: int = 0  # of completion_tokens, those of the thought


@dataclass
class Prompt:
    messages: list[dict]
    tools: list[dict] | None = field(default=None)
    # More variables for the chat template (vLLM's `chat_template_kwargs`: `enable_thinking`)
    template_kwargs: dict = field(default_factory=dict)


class Engine(Protocol):
    def context_length(self, model: ModelRef) -> int: ...

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int: ...

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> Generator[Chunk, None, None]:
        """Yields text chunks; closing the generator early frees the engine for the next request.
        A failure of this generation alone (its sampling, grammar, adapter) is raised here, and
        the engine goes on with the others."""
        ...

    def health(self) -> dict:
        """What `/health` shows of the engine: whether its parts run, and their restarts."""
        ...
