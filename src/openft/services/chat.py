"""Chat completions: check the request, resolve the model name, and turn engine chunks into
OpenAI's response or stream chunks."""

import json
import time
from collections.abc import AsyncIterator

from openft import ids
from openft.errors import OpenFTError
from openft.inference.engine import Engine, ModelRef, Prompt, SamplingParams
from openft.inference.threaded import iterate_in_thread
from openft.server.protocol.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)
from openft.services.models import ModelService

FINGERPRINT = "fp_openft"


class ChatService:
    def __init__(self, models: ModelService, engine: Engine, default_max_tokens: int):
        self.models = models
        self.engine = engine
        self.default_max_tokens = default_max_tokens

    async def complete(self, organization_id: str, request: ChatCompletionRequest) -> ChatCompletion:
        model, prompt = await self._prepare(organization_id, request)
        completion_id, created = ids.completion_id(), int(time.time())
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index in range(request.n or 1):
            parts, last = [], None
            async for chunk in self._generate(model, prompt, request, index):
                parts.append(chunk.text)
                last = chunk
            choices.append(
                Choice(index=index, message=ResponseMessage(content="".join(parts)), finish_reason=last.finish_reason)
            )
            prompt_tokens = last.prompt_tokens
            completion_tokens += last.completion_tokens
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=request.model,
            choices=choices,
            usage=_usage(prompt_tokens, completion_tokens),
            system_fingerprint=FINGERPRINT,
        )

    async def prepare_stream(self, organization_id: str, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """Checks the request now (so errors get an HTTP status), then returns the SSE frames."""
        model, prompt = await self._prepare(organization_id, request)
        return self._stream(model, prompt, request)

    async def _stream(self, model: ModelRef, prompt: Prompt, request: ChatCompletionRequest) -> AsyncIterator[str]:
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

        prompt_tokens, completion_tokens = 0, 0
        try:
            for index in range(request.n or 1):
                yield frame([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
                async for chunk in self._generate(model, prompt, request, index):
                    if chunk.text:
                        yield frame([ChunkChoice(index=index, delta=Delta(content=chunk.text))])
                    if chunk.finish_reason:
                        yield frame([ChunkChoice(index=index, delta=Delta(), finish_reason=chunk.finish_reason)])
                        prompt_tokens = chunk.prompt_tokens
                        completion_tokens += chunk.completion_tokens
            if request.stream_options and request.stream_options.include_usage:
                yield frame([], _usage(prompt_tokens, completion_tokens))
        except Exception as error:  # headers are sent: the error goes in the stream, as OpenAI does
            body = OpenFTError(500, f"The server had an error while generating: {error}", type="server_error").body()
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"

    def _generate(self, model: ModelRef, prompt: Prompt, request: ChatCompletionRequest, index: int):
        params = SamplingParams(
            max_tokens=request.max_completion_tokens or request.max_tokens or self.default_max_tokens,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            stop=request.stop_strings(),
            seed=None if request.seed is None else request.seed + index,
        )
        return iterate_in_thread(lambda: self.engine.generate(model, prompt, params))

    async def _prepare(self, organization_id: str, request: ChatCompletionRequest) -> tuple[ModelRef, Prompt]:
        _reject_unsupported(request)
        served = self.models.resolve(organization_id, request.model)
        model = ModelRef(base_model=served.base_model, adapter_path=served.adapter_path)
        prompt = Prompt(messages=[_template_message(m) for m in request.messages], tools=request.tools)
        counts = iterate_in_thread(
            lambda: iter([(self.engine.count_prompt_tokens(model, prompt), self.engine.context_length(model))])
        )
        async for prompt_tokens, context in counts:
            requested = request.max_completion_tokens or request.max_tokens or 0
            if prompt_tokens + requested > context:
                raise OpenFTError(
                    400,
                    f"This model's maximum context length is {context} tokens. However, you requested "
                    f"{prompt_tokens + requested} tokens ({prompt_tokens} in the messages, {requested} in the "
                    "completion). Please reduce the length of the messages or completion.",
                    param="messages",
                    code="context_length_exceeded",
                )
        return model, prompt


def _template_message(message) -> dict:
    rendered = {"role": "system" if message.role == "developer" else message.role, "content": message.text()}
    for key in ("name", "tool_calls", "tool_call_id", "function_call"):
        value = getattr(message, key)
        if value is not None:
            rendered[key] = value
    return rendered


def _reject_unsupported(request: ChatCompletionRequest) -> None:
    if request.logprobs:
        raise OpenFTError(400, "logprobs are not supported by this server yet.", param="logprobs")
    if request.response_format and request.response_format.get("type") not in (None, "text"):
        raise OpenFTError(
            400,
            f"response_format type '{request.response_format.get('type')}' is not supported by this server yet.",
            param="response_format",
        )
    if request.presence_penalty or request.frequency_penalty or request.logit_bias:
        raise OpenFTError(
            400,
            "presence_penalty, frequency_penalty and logit_bias are not supported by this server yet.",
            param="presence_penalty" if request.presence_penalty else "frequency_penalty",
        )


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )
