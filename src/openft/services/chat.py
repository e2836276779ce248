"""Chat completions: check the request, resolve the model name, and turn engine chunks into
OpenAI's response or stream chunks. What the reply must match (response_format, strict tools,
a forced tool call) is structured.py's; what the chat template is told (thinking or not) is
thinking.py's. A model that thinks has its thought sent apart from its answer, as
`reasoning_content` (the engines split them: inference/reasoning.py); tool calls are read from
the answer alone."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import TypeVar

from openft import ids
from openft.data.chat_format import PromptError, chat_tools, content_text
from openft.errors import OpenFTError
from openft.inference.engine import Chunk, Engine, ModelRef, Prompt, SamplingParams
from openft.inference.threaded import iterate_in_thread
from openft.inference.tool_calls import parse_tool_calls
from openft.protocol.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    ResponseMessage,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from openft.services.chat_checks import check_request
from openft.services.models import ModelService
from openft.services.structured import reply_grammar
from openft.services.thinking import template_kwargs

FINGERPRINT = "fp_openft"
T = TypeVar("T")


class ChatService:
    def __init__(self, models: ModelService, engine: Engine, default_max_tokens: int):
        self.models = models
        self.engine = engine
        self.default_max_tokens = default_max_tokens

    def health(self) -> dict:
        return self.engine.health()

    async def complete(self, organization_id: str, request: ChatCompletionRequest) -> ChatCompletion:
        model, prompt, params = await self._prepare(organization_id, request)
        completion_id, created = ids.completion_id(), int(time.time())
        choices = []
        # The n choices are generated at once, so the engine decodes them in one batch.
        wholes = await asyncio.gather(
            *(self._whole(model, prompt, _for_choice(params, index)) for index in range(request.n or 1))
        )
        for index, (text, reasoning, logprobs, last) in enumerate(wholes):
            message, finish_reason = _reply(text, reasoning, last.finish_reason, request)
            choices.append(
                Choice(index=index, message=message, finish_reason=finish_reason, logprobs=_logprobs(request, logprobs))
            )
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=request.model,
            choices=choices,
            usage=_usage([last for *_, last in wholes]),
            system_fingerprint=FINGERPRINT,
        )

    async def prepare_stream(self, organization_id: str, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """Checks the request now (so errors get an HTTP status), then returns the SSE frames."""
        model, prompt, params = await self._prepare(organization_id, request)
        return self._stream(model, prompt, params, request)

    async def _stream(
        self, model: ModelRef, prompt: Prompt, params: SamplingParams, request: ChatCompletionRequest
    ) -> AsyncIterator[str]:
        completion_id, created = ids.completion_id(), int(time.time())

        def frame(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            chunk = ChatCompletionChunk(
                id=completion_id,
                created=created,
                model=request.model,
                choices=choices,
                system_fingerprint=FINGERPRINT,
                usage=usage,
            )
            data = chunk.model_dump()
            for choice in data["choices"]:
                # OpenAI's deltas carry only what changed: the last one is `{}`.
                choice["delta"] = {key: value for key, value in choice["delta"].items() if value is not None}
            return f"data: {json.dumps(data)}\n\n"

        lasts: list[Chunk] = []  # each choice's last chunk, with its token counts

        async def choice_frames(index: int) -> AsyncIterator[str]:
            yield frame([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
            if _may_call_tools(request):
                # A reply may turn out to be a call: it is sent whole, once it is known.
                text, reasoning, logprobs, last = await self._whole(model, prompt, _for_choice(params, index))
                message, finish_reason = _reply(text, reasoning, last.finish_reason, request)
                yield frame([ChunkChoice(index=index, delta=_delta(message), logprobs=_logprobs(request, logprobs))])
            else:
                async for chunk in self._generate(model, prompt, _for_choice(params, index)):
                    if chunk.text or chunk.reasoning or chunk.logprobs:
                        delta = Delta(
                            content=None if chunk.reasoning and not chunk.text else chunk.text,
                            reasoning_content=chunk.reasoning or None,
                        )
                        logprobs = _logprobs(request, chunk.logprobs)
                        yield frame([ChunkChoice(index=index, delta=delta, logprobs=logprobs)])
                    last = chunk
                finish_reason = last.finish_reason
            yield frame([ChunkChoice(index=index, delta=Delta(), finish_reason=finish_reason)])
            lasts.append(last)

        try:
            # The n choices are generated at once (one batch in the engine); their frames are sent
            # as they come, each with its choice's index, as OpenAI interleaves them.
            async with aclosing(_interleave([choice_frames(index) for index in range(request.n or 1)])) as frames:
                async for data in frames:
                    yield data
            if request.stream_options and request.stream_options.include_usage:
                yield frame([], _usage(lasts))
        except Exception as error:  # headers are sent: the error goes in the stream, as OpenAI does
            body = OpenFTError(500, f"The server had an error while generating: {error}", type="server_error").body()
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"

    async def _whole(self, model: ModelRef, prompt: Prompt, params: SamplingParams):
        """One whole generation: (answer, reasoning, token logprobs, the last chunk)."""
        parts, thought, logprobs, last = [], [], [], None
        async for chunk in self._generate(model, prompt, params):
            parts.append(chunk.text)
            thought.append(chunk.reasoning)
            logprobs += chunk.logprobs
            last = chunk
        return "".join(parts), "".join(thought), logprobs, last

    def _generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Chunk]:
        return iterate_in_thread(lambda: self.engine.generate(model, prompt, params))

    async def _prepare(
        self, organization_id: str, request: ChatCompletionRequest
    ) -> tuple[ModelRef, Prompt, SamplingParams]:
        check_request(request)
        # Checking a schema compiles it (milliseconds, more for a large one): off the event loop.
        grammar = await asyncio.to_thread(reply_grammar, request)
        kwargs = template_kwargs(request, constrained=grammar is not None)
        model = self.models.resolve(organization_id, request.model)
        tools = chat_tools(request.tools, request.functions)
        prompt = Prompt([_template_message(m) for m in request.messages], tools, kwargs)
        try:
            prompt_tokens = await asyncio.to_thread(self.engine.count_prompt_tokens, model, prompt)
        except PromptError as error:
            raise OpenFTError(400, str(error), param="messages") from error
        context = await asyncio.to_thread(self.engine.context_length, model)
        # Only a limit the client set counts against the context: without one the reply stops at
        # the default limit or at the context, whichever comes first.
        requested = _requested_max_tokens(request) or 0
        if prompt_tokens + requested > context:
            raise OpenFTError(
                400,
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + requested} tokens ({prompt_tokens} in the messages, {requested} in the "
                "completion). Please reduce the length of the messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        return model, prompt, replace(sampling_params(request, self.default_max_tokens), grammar=grammar)


def sampling_params(request: ChatCompletionRequest, default_max_tokens: int) -> SamplingParams:
    """What the engine is asked for a request: OpenAI's defaults where the request leaves a
    parameter out, and `default_max_tokens` where it sets no limit. (For choice 0: see
    `_for_choice`.)"""
    return SamplingParams(
        max_tokens=_requested_max_tokens(request) or default_max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        stop=request.stop_strings(),
        seed=request.seed,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=tuple((int(token), bias) for token, bias in (request.logit_bias or {}).items()),
        logprobs=bool(request.logprobs),
        top_logprobs=request.top_logprobs or 0,
    )


def _requested_max_tokens(request: ChatCompletionRequest) -> int | None:
    """The limit the client set: `max_completion_tokens`, or the deprecated `max_tokens`."""
    return request.max_completion_tokens or request.max_tokens


def _for_choice(params: SamplingParams, index: int) -> SamplingParams:
    """Choice `index` samples apart from the others, and reproducibly: its seed is seed + index."""
    return params if params.seed is None else replace(params, seed=params.seed + index)


async def _interleave(streams: list[AsyncIterator[T]]) -> AsyncIterator[T]:
    """The items of every stream as they come (each stream's in its order). An error in one
    stream is raised here; closing this iterator, or an error, stops the others."""
    items: asyncio.Queue = asyncio.Queue()

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                items.put_nowait(item)
            items.put_nowait(None)
        except Exception as error:
            items.put_nowait(error)

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        running = len(tasks)
        while running:
            item = await items.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _template_message(message) -> dict:
    rendered = {
        "role": "system" if message.role == "developer" else message.role,
        "content": content_text(message.content),
    }
    for key in ("name", "tool_calls", "tool_call_id", "function_call"):
        value = getattr(message, key)
        if value is not None:
            rendered[key] = value
    return rendered


def _may_call_tools(request: ChatCompletionRequest) -> bool:
    return bool(request.tools or request.functions) and request.tool_choice != "none"


def _reply(
    text: str, reasoning: str, finish_reason: str, request: ChatCompletionRequest
) -> tuple[ResponseMessage, str]:
    """The assistant message: its answer, with the tool calls the model wrote parsed out of it
    (when the request offered tools and the reply ended by itself), and its thought apart. A
    reply that thought and gave no answer (cut short in its thought) has no content, as vLLM's."""
    thought = reasoning or None
    if finish_reason == "stop" and _may_call_tools(request):
        content, calls = parse_tool_calls(text)
        if calls and request.tools:
            calls = [call.as_tool_call() for call in calls]
            return ResponseMessage(content=content, tool_calls=calls, reasoning_content=thought), "tool_calls"
        if calls:
            function_call = {"name": calls[0].name, "arguments": calls[0].arguments}
            return ResponseMessage(content=content, function_call=function_call, reasoning_content=thought), (
                "function_call"
            )
    return ResponseMessage(content=None if thought and not text else text, reasoning_content=thought), finish_reason


def _logprobs(request: ChatCompletionRequest, tokens: list) -> ChoiceLogprobs | None:
    if not request.logprobs:
        return None
    return ChoiceLogprobs(
        content=[
            TokenLogprob(
                token=t.token,
                logprob=t.logprob,
                bytes=list(t.token.encode()),
                top_logprobs=[TopLogprob(token=alt, logprob=lp, bytes=list(alt.encode())) for alt, lp in t.top],
            )
            for t in tokens
        ]
    )


def _delta(message: ResponseMessage) -> Delta:
    calls = [{"index": n, **call} for n, call in enumerate(message.tool_calls)] if message.tool_calls else None
    return Delta(
        content=message.content,
        tool_calls=calls,
        function_call=message.function_call,
        reasoning_content=message.reasoning_content,
    )


def _usage(lasts: list[Chunk]) -> Usage:
    """The n choices' usage, from each one's last chunk: the prompt once, every completion."""
    prompt_tokens = lasts[0].prompt_tokens
    completion_tokens = sum(last.completion_tokens for last in lasts)
    reasoning_tokens = sum(last.reasoning_tokens for last in lasts)
    details = CompletionTokensDetails(reasoning_tokens=reasoning_tokens) if reasoning_tokens else None
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        completion_tokens_details=details,
    )
