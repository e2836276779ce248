"""`OPENFT_ENGINE=vllm`: serving on a GPU with vLLM's engine (continuous batching, paged KV
cache, multi-LoRA kernels), which runs its own engine-core process. vLLM is not a dependency
(`pip install vllm` on the GPU host). This module imports neither vLLM nor transformers: the
server makes its engine when it starts, and a base's vLLM engine and tokenizer load on its
first request.

Prompts are rendered here with the same chat template and message normalisation as training
(data/chat_format.py) and sent as token ids; fine-tunes are LoRARequests on their adapter
directory. A reply's grammar (structured outputs, inference/constraints.py) goes to vLLM's own
structured-output parameters, `StructuredOutputsParams(grammar=...)`, with the engine's backend
set to `guidance`: llguidance, the library openft's engines compile the same text with (not run
here: no GPU host with vLLM; this follows vLLM's documented API). The grammar holds the whole
reply there, a thought the prompt opened included (openft's engine holds only the answer after
it). vLLM's asyncio API runs on a loop of its own thread, behind the engine protocol's blocking
iterators.
"""

import asyncio
import functools
import importlib.util
import itertools
import queue
import threading
import uuid
from collections.abc import Generator
from pathlib import Path

from openft.data.chat_format import ChatTemplate
from openft.inference.engine import MAX_LOADED_ADAPTERS, Chunk, ModelRef, Prompt, SamplingParams, TokenLogprob
from openft.inference.reasoning import PROMPT_TAIL_TOKENS, ReplySplitter, opening, thinks, tokenized_as_trained
from openft.inference.threaded import drain
from openft.models.facts import trusts_remote_code
from openft.storage import Storage

MAX_LORA_RANK = 64


class VLLMEngine:
    def __init__(self, models_dir: Path, storage: Storage, cache_dir: Path):
        if importlib.util.find_spec("vllm") is None:
            raise RuntimeError("OPENFT_ENGINE=vllm needs vLLM on this host: pip install vllm (a GPU machine).")
        self.models_dir, self.storage, self.cache_dir = models_dir, storage, cache_dir
        self._engines: dict[str, object] = {}
        self._templates: dict[str, ChatTemplate] = {}
        self._adapter_ids: dict[str, int] = {}
        self._next_adapter_id = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="openft-vllm", daemon=True).start()

    def context_length(self, model: ModelRef) -> int:
        return _context_length(self.models_dir / model.base_model)

    def health(self) -> dict:
        """vLLM schedules its own batches; what is openft's here is the loop that drives them."""
        return {"loop": {"alive": self._loop.is_running(), "bases": sorted(self._engines)}}

    def count_prompt_tokens(self, model: ModelRef, prompt: Prompt) -> int:
        return len(self._prompt_ids(self._template(model.base_model), prompt))

    def generate(self, model: ModelRef, prompt: Prompt, params: SamplingParams) -> Generator[Chunk, None, None]:
        engine = self._engine(model.base_model)
        template = self._template(model.base_model)
        ids = self._prompt_ids(template, prompt)
        tokenizer = template.tokenizer
        splitter = None
        if thinks(template.source):
            splitter = ReplySplitter(opening(tokenizer.decode(ids[-PROMPT_TAIL_TOKENS:])))
        request_id = uuid.uuid4().hex
        chunks: queue.Queue = queue.Queue()
        running = asyncio.run_coroutine_threadsafe(
            self._run(engine, tokenizer, ids, params, self._lora(model), request_id, chunks, splitter), self._loop
        )
        try:
            yield from drain(chunks)
        finally:
            if not running.done():  # the caller went away: free its sequence
                asyncio.run_coroutine_threadsafe(engine.abort(request_id), self._loop)

    async def _run(
        self, engine, tokenizer, ids, params: SamplingParams, lora, request_id: str, chunks: queue.Queue, splitter
    ):
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        sampling = VLLMSamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop),
            seed=params.seed,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            logit_bias=dict(params.logit_bias) or None,
            logprobs=max(params.top_logprobs, 1) if params.logprobs else None,
            output_kind=RequestOutputKind.DELTA,
            # openft's grammar text is llguidance's Lark, which vLLM's guidance backend compiles
            structured_outputs=StructuredOutputsParams(grammar=params.grammar) if params.grammar else None,
        )
        generated, text = 0, ""
        try:
            async for output in engine.generate(
                TokensPrompt(prompt_token_ids=ids), sampling, request_id, lora_request=lora
            ):
                completion = output.outputs[0]
                generated += len(completion.token_ids)
                logprobs = _logprobs(tokenizer, completion, params) if params.logprobs else []
                answer, reasoning = completion.text, ""
                if splitter is not None:
                    text += completion.text
                    splitter.token(text, len(completion.token_ids))
                    reasoning, answer = splitter.advance(text, final=output.finished)
                if answer or reasoning or logprobs:
                    chunks.put(Chunk(answer, reasoning=reasoning, logprobs=logprobs))
                if output.finished:
                    reason = "length" if completion.finish_reason == "length" else "stop"
                    thought = splitter.thought_tokens if splitter else 0
                    chunks.put(
                        Chunk("", reason, prompt_tokens=len(ids), completion_tokens=generated, reasoning_tokens=thought)
                    )
            chunks.put(None)
        except BaseException as error:
            chunks.put(error)

    @staticmethod
    def _prompt_ids(template: ChatTemplate, prompt: Prompt) -> list[int]:
        ids = template.prompt_ids(prompt.messages, prompt.tools, prompt.template_kwargs)
        return tokenized_as_trained(template.tokenizer, ids) if thinks(template.source) else ids

    def _engine(self, base: str):
        with self._lock:
            if base not in self._engines:
                from vllm import AsyncEngineArgs, AsyncLLMEngine
                from vllm.config import StructuredOutputsConfig

                self._engines[base] = AsyncLLMEngine.from_engine_args(
                    AsyncEngineArgs(
                        model=str(self.models_dir / base),
                        trust_remote_code=trusts_remote_code(self.models_dir / base),
                        dtype="bfloat16",
                        enable_lora=True,
                        max_loras=MAX_LOADED_ADAPTERS,
                        max_lora_rank=MAX_LORA_RANK,
                        structured_outputs_config=StructuredOutputsConfig(backend="guidance"),
                    )
                )
            return self._engines[base]

    def _template(self, base: str) -> ChatTemplate:
        from transformers import AutoTokenizer

        with self._lock:
            if base not in self._templates:
                path = self.models_dir / base
                tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trusts_remote_code(path))
                self._templates[base] = ChatTemplate(tokenizer)
            return self._templates[base]

    def _lora(self, model: ModelRef):
        if model.adapter_key is None:
            return None
        from vllm.lora.request import LoRARequest

        with self._lock:
            if model.adapter_key not in self._adapter_ids:
                self._adapter_ids[model.adapter_key] = next(self._next_adapter_id)
            adapter_id = self._adapter_ids[model.adapter_key]
        local = self.storage.fetch(model.adapter_key, self.cache_dir)
        return LoRARequest(model.adapter_key, adapter_id, str(local))


@functools.cache
def _context_length(base_dir: Path) -> int:
    """Read once per base: every chat request asks."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(base_dir, trust_remote_code=trusts_remote_code(base_dir)).max_position_embeddings


def _logprobs(tokenizer, completion, params: SamplingParams) -> list[TokenLogprob]:
    """vLLM's per-token {token id: Logprob} as the engine protocol's TokenLogprobs."""
    described = []
    for token, candidates in zip(completion.token_ids, completion.logprobs or []):
        ranked = sorted(candidates.items(), key=lambda item: item[1].rank or 0)[: params.top_logprobs]
        described.append(
            TokenLogprob(
                tokenizer.decode([token]),
                candidates[token].logprob,
                tuple((tokenizer.decode([t]), lp.logprob) for t, lp in ranked),
            )
        )
    return described
