"""Chat completion wire types, after openai-python's `types/chat/` and the API reference
(https://platform.openai.com/docs/api-reference/chat/create)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from openft.protocol.common import Metadata


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None

    # Kept as dicts (templates take them so), but the keys a prompt is rendered from must be there.
    @field_validator("content")
    @classmethod
    def _text_parts_have_text(cls, content):
        for part in content if isinstance(content, list) else ():
            if part.get("type") == "text" and not isinstance(part.get("text"), str):
                raise ValueError("a content part of type 'text' needs a string 'text'")
        return content

    @field_validator("tool_calls")
    @classmethod
    def _calls_name_a_function(cls, calls):
        for call in calls or ():
            _check_function(call.get("function"))
        return calls

    @field_validator("function_call")
    @classmethod
    def _call_names_a_function(cls, call):
        if call is not None:
            _check_function(call)
        return call


def _check_function(function) -> None:
    """A call's `function`: its name, and its arguments as a JSON string (or an object)."""
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError("a tool call needs a 'function' with a string 'name'")
    if not isinstance(function.get("arguments", ""), str | dict):
        raise ValueError("a tool call's 'arguments' must be a JSON string")


class StreamOptions(BaseModel):
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    # Unknown fields are ignored rather than rejected: clients add new ones faster than any
    # server follows.
    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1)
    model: str
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    function_call: Any = None
    functions: list[dict[str, Any]] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    metadata: Metadata | None = None
    n: int | None = Field(default=1, ge=1, le=128)
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    # "none", "minimal", "low", "medium" or "high" (services/thinking.py; checked there, with
    # OpenAI's message)
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # OpenAI's: a 64-bit integer
    stop: str | list[str] | None = None
    # Keep the request and its reply (services/stored_completions.py).
    store: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    tool_choice: Any = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    top_p: float | None = Field(default=None, ge=0, le=1)  # 0: the most likely token alone
    user: str | None = None

    # vLLM's extension: more variables for the chat template, `{"enable_thinking": false}`
    chat_template_kwargs: dict[str, Any] | None = None

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    # The thought of a model that thinks, apart from its answer (vLLM's and DeepSeek's field)
    reasoning_content: str | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class Choice(BaseModel):
    index: int
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int  # of the completion's tokens, those of its thought (tags included)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None  # only for a reply that thought


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # each with its "index", as OpenAI streams them
    function_call: dict[str, Any] | None = None
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None
