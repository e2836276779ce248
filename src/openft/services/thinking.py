"""What a chat request asks of a model that thinks: OpenAI's `reasoning_effort` and vLLM's
`chat_template_kwargs`, turned into the variables its chat template is rendered with.

The switch is the template's own: Qwen3's reads `enable_thinking` (false writes an empty thought
into the prompt, so the reply is the answer alone). `reasoning_effort` maps onto it, as no
template has degrees of effort: "none" and "minimal" turn thinking off, "low", "medium" and
"high" leave it on. `chat_template_kwargs` are passed as they are (the template ignores what it
does not read), but for the names `apply_chat_template` takes for itself; one that says
`enable_thinking` contrary to `reasoning_effort` is refused rather than one of them ignored.

A reply held to a grammar (a `response_format`, strict tools, a forced call) is asked without
thinking unless the request says otherwise: the grammar holds the reply from its first token, and
a model of Qwen3's kind answers then as its template writes an answer without a thought.
"""

from typing import Any

from openft.errors import OpenFTError
from openft.protocol.chat import ChatCompletionRequest

EFFORTS = ("none", "minimal", "low", "medium", "high")
THINKING_EFFORTS = ("low", "medium", "high")
# apply_chat_template's own arguments and the variables it sets: not for a request to override.
RESERVED = frozenset(
    {
        "conversation",
        "messages",
        "tools",
        "documents",
        "chat_template",
        "add_generation_prompt",
        "continue_final_message",
        "tokenize",
        "sanitize_control_tokens",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
    }
)


def template_kwargs(request: ChatCompletionRequest, constrained: bool) -> dict[str, Any]:
    """The chat template's variables for `request` (OpenFTError(400) for values it refuses).
    `constrained`: the reply is held to a grammar."""
    effort = request.reasoning_effort
    if effort is not None and effort not in EFFORTS:
        raise OpenFTError(
            400,
            f"Invalid value: '{effort}'. Supported values are: "
            + ", ".join(f"'{name}'" for name in EFFORTS[:-1])
            + f", and '{EFFORTS[-1]}'.",
            param="reasoning_effort",
            code="invalid_value",
        )
    kwargs = dict(request.chat_template_kwargs or {})
    for name in kwargs:
        if name in RESERVED or not name.isidentifier():
            raise OpenFTError(
                400,
                f"Invalid 'chat_template_kwargs': '{name}' is not a variable a request may set "
                "(it is the chat template's input or an argument of the renderer).",
                param=f"chat_template_kwargs.{name}",
                code="invalid_value",
            )
    switch = kwargs.get("enable_thinking")
    if switch is not None and not isinstance(switch, bool):
        raise OpenFTError(
            400,
            f"Invalid 'chat_template_kwargs.enable_thinking': expected a boolean, got {switch!r}.",
            param="chat_template_kwargs.enable_thinking",
            code="invalid_type",
        )
    if effort is not None:
        thinking = effort in THINKING_EFFORTS
        if switch is not None and switch != thinking:
            raise OpenFTError(
                400,
                f"reasoning_effort '{effort}' and chat_template_kwargs.enable_thinking {str(switch).lower()} "
                "contradict each other: send one of them.",
                param="reasoning_effort",
                code="invalid_value",
            )
        kwargs["enable_thinking"] = thinking
    elif switch is None and constrained:
        kwargs["enable_thinking"] = False
    return kwargs
