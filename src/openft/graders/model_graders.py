"""`score_model` and `label_model`: a model reads the rendered prompt and answers in OpenAI's
grader JSON, `{"steps": [{"description", "conclusion"}], "result": …}` (GRADERS-GUIDE), asked
for with a strict `json_schema` response format, so a model served by openft (whose structured
outputs are grammar-constrained) always answers JSON that parses. A score is clipped to the
grader's `range`; a label must be one of `labels` (the schema's `enum`).

The model is called through a `ModelCaller` the caller supplies: the server's goes through
openft's chat service (a base, an `ft:` model, or an upstream the gateway allows, for the
caller's organization); a test's may be anything."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from openft.graders import templates
from openft.graders.result import GradeResult
from openft.graders.spec import LabelModel, Message, ScoreModel

# Steps before the verdict, as OpenAI's grader schema has them, but few: each is generated
# before the result, and a small model that lists many can run out of tokens before it.
MAX_STEPS = 4


class ModelCaller(Protocol):
    async def __call__(
        self,
        model: str,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        sampling: dict[str, Any],
    ) -> tuple[str, dict[str, int]]:
        """The model's reply to `messages` (chat format) and its usage
        (`prompt_tokens`, `completion_tokens`, `total_tokens`, `cached_tokens`).

        `response_format` is a chat `response_format` (here always a strict `json_schema`);
        `sampling` holds any of `temperature`, `top_p`, `seed`, `max_completion_tokens`,
        `reasoning_effort`. Raises `ModelRefusal` when the model refuses; any other exception
        is reported as `model_grader_server_error` with its message."""
        ...


class ModelRefusal(Exception):
    """The grader model refused to answer (a chat reply's `refusal`)."""


def score_schema(low: float, high: float) -> dict[str, Any]:
    return _schema(
        "float_score_classification",
        {"type": "number", "description": f"The score, a number in the inclusive range {low:g} to {high:g}."},
    )


def label_schema(labels: tuple[str, ...]) -> dict[str, Any]:
    return _schema("label_classification", {"type": "string", "enum": list(labels), "description": "The label."})


def _schema(name: str, result: dict[str, Any]) -> dict[str, Any]:
    step = {
        "type": "object",
        "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
        "required": ["description", "conclusion"],
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": step, "maxItems": MAX_STEPS}, "result": result},
        "required": ["steps", "result"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


async def grade_model(
    grader: ScoreModel | LabelModel, sample: dict[str, Any], item: Any, models: ModelCaller
) -> GradeResult:
    started = time.perf_counter()
    result = GradeResult(reward=0.0, name=grader.name, type=grader.type, sampled_model_name=grader.model)
    try:
        messages = [_render(message, item, sample) for message in grader.input]
    except templates.MissingVariable as missing:
        result.errors["invalid_variable_error"] = True
        result.errors["invalid_variable_error_details"] = str(missing)
        return _finished(result, started)
    if isinstance(grader, ScoreModel):
        response_format, sampling = score_schema(*grader.range), grader.sampling
    else:
        response_format, sampling = label_schema(grader.labels), {}
    try:
        text, usage = await models(grader.model, messages, response_format, sampling)
    except ModelRefusal as refusal:
        result.errors["model_grader_refusal_error"] = True
        result.errors["model_grader_server_error_details"] = str(refusal)
        return _finished(result, started)
    except Exception as error:  # a caller's failure of any kind is the grader's server error
        result.errors["model_grader_server_error"] = True
        result.errors["model_grader_server_error_details"] = (
            getattr(error, "message", None) or str(error) or repr(error)
        )
        return _finished(result, started)
    result.token_usage_per_model = {grader.model: _usage(usage)}
    result.model_sample = {"input": messages, "output": text, "usage": _usage(usage), "model": grader.model}
    verdict = _verdict(text)
    if isinstance(grader, ScoreModel):
        if isinstance(verdict, int | float) and not isinstance(verdict, bool):
            low, high = grader.range
            result.reward = min(max(float(verdict), low), high)
            result.passed = None if grader.pass_threshold is None else result.reward >= grader.pass_threshold
        else:
            result.errors["model_grader_parse_error"] = True
    elif isinstance(verdict, str) and verdict in grader.labels:
        result.label = verdict
        result.passed = verdict in grader.passing_labels
        result.reward = 1.0 if result.passed else 0.0
    else:
        result.errors["model_grader_parse_error"] = True
    return _finished(result, started)


def _verdict(text: str) -> Any:
    """The `result` of the grader JSON, or None if the reply is not that JSON."""
    try:
        reply = json.loads(text)
    except ValueError:
        return None
    return reply.get("result") if isinstance(reply, dict) else None


def _render(message: Message, item: Any, sample: dict[str, Any]) -> dict[str, Any]:
    """A chat message: text parts rendered, `input_text`/`output_text` as chat `text` parts,
    images as `image_url` parts."""
    if isinstance(message.content, templates.Template):
        return {"role": message.role, "content": message.content.render(item, sample)}
    parts = []
    for part in message.content:
        if part["type"] in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part["text"].render(item, sample)})
        elif part["type"] == "input_image":
            url = {"url": part["image_url"], **({"detail": part["detail"]} if "detail" in part else {})}
            parts.append({"type": "image_url", "image_url": url})
        else:
            parts.append(part)
    return {"role": message.role, "content": parts}


def _usage(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage.get("total_tokens", prompt + completion),
        "cached_tokens": usage.get("cached_tokens", 0),
    }


def _finished(result: GradeResult, started: float) -> GradeResult:
    if result.errored:
        result.passed = False
    result.execution_time = time.perf_counter() - started
    return result
