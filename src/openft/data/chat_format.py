"""OpenAI chat messages → what a Hugging Face chat template takes: the one normalisation that
training (labels.py) and inference (`ChatTemplate.prompt_ids`) share, so a fine-tune is asked
exactly as it was taught.

Content given as a list of parts becomes its text (`content_text`), and openft's keys (`weight`)
are left out. Legacy `functions` / `function_call` / role `function` become `tools` /
`tool_calls` / role `tool` (`chat_tools`), and JSON-string `arguments` become objects (what HF
templates expect). When the template renders tools and tool calls natively (it is probed with a
dummy call, once per `ChatTemplate`), they go through the template untouched. When it ignores
them (SmolLM2's ChatML template does), openft renders them the Hermes/Qwen2.5 way, so they are
still seen and trained:

- an assistant's `tool_calls` are appended to its content, one per call, as
  `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`;
- `tools` are appended to the first system message (a system message holding only them is
  inserted when there is none) as a `# Tools` block listing one JSON schema per line inside
  `<tools></tools>`.

Two more shapes of template are probed once each. One with no system role (Gemma's raises
"System role not supported", others drop it), or one that drops the system message once the
assistant has answered (Mistral v0.3's writes it into the last user turn, and so nowhere when
the conversation ends with a reply), gets each system message folded into the next user turn,
the system text first and a blank line after it, as Gemma 2/3's own templates do: in training
and at inference alike, so a fine-tune is asked as it was taught. One that
ends a conversation rendered without the generation prompt with a token of its own (Phi-3's EOS)
has that suffix named (`conversation_end`), so that labels.py knows it belongs to no turn.
"""

from __future__ import annotations

import json
import os
import weakref
from functools import cached_property

from openft.data.pieces import PieceEncoder

_PROBE = "openft_probe_fn"
_TOOLS_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n"
    "</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


_TEMPLATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its ChatTemplate


class PromptError(ValueError):
    """Messages a model's chat template or tokenizer cannot turn into a prompt: the request's fault."""


def content_text(content) -> str:
    """A message's content as text: a string as it is, None as "", a list of content parts as
    its text parts joined (other parts, an image for one, are not read)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def chat_tools(tools: list[dict] | None, functions: list[dict] | None) -> list[dict] | None:
    """The tools a chat offers: its `tools`, else its legacy `functions` as tools; None if neither."""
    if tools:
        return tools
    if functions:
        return [{"type": "function", "function": function} for function in functions]
    return None


class ChatTemplate:
    """A tokenizer's chat template as openft renders with it. What the template does itself (tool
    calls, tools, a system role, an end of conversation) is probed once each, when first needed."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.source = tokenizer.chat_template

    @classmethod
    def of(cls, tokenizer) -> ChatTemplate:
        """The tokenizer's ChatTemplate, probed once while the tokenizer and its template last (the
        trainer labels one example at a time)."""
        template = _TEMPLATES.get(tokenizer)
        if template is None or template.source != tokenizer.chat_template:
            template = _TEMPLATES[tokenizer] = cls(tokenizer)
        return template

    def messages(self, messages: list[dict], tools: list[dict] | None = None) -> tuple[list[dict], list[dict] | None]:
        """Normalise OpenAI chat messages for `apply_chat_template` (see the module docstring).

        Returns (messages, tools): messages with str content and no openft keys, legacy function
        calling mapped to tools, tools / tool_calls folded into the text when the template
        would drop them, and system messages folded into the next user turn when the template
        takes none. Assistant messages map one to one, in order. Pass the returned tools on to
        the template.
        """
        out = []
        for m in messages:
            msg = {"role": "tool" if m["role"] == "function" else m["role"], "content": content_text(m.get("content"))}
            for key in ("name", "tool_call_id"):
                if m.get(key) is not None:
                    msg[key] = m[key]
            calls = m.get("tool_calls") or []
            if m.get("function_call"):
                calls = [{"type": "function", "function": m["function_call"]}]
            if calls:
                msg["tool_calls"] = [_with_object_arguments(call) for call in calls]
            out.append(msg)

        if any("tool_calls" in m for m in out) and not self.renders_tool_calls:
            for m in out:
                if "tool_calls" in m:
                    blocks = [_tool_call_text(call["function"]) for call in m.pop("tool_calls")]
                    m["content"] = "\n".join(([m["content"]] if m["content"] else []) + blocks)
        if tools and not self.renders_tools:
            block = _TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
            if out and out[0]["role"] == "system":
                out[0]["content"] = f"{out[0]['content']}\n\n{block}" if out[0]["content"] else block
            else:
                out.insert(0, {"role": "system", "content": block})
            tools = None
        if any(m["role"] == "system" for m in out) and not self.renders_system:
            out = _fold_system(out)
        return out, tools or None

    def prompt_ids(
        self, messages: list[dict], tools: list[dict] | None = None, template_kwargs: dict | None = None
    ) -> list[int]:
        """The token ids a model is prompted with to answer `messages`: normalised as in
        training, rendered with the generation prompt (the assistant's role header), and
        tokenized as training tokenizes the text before a reply: cut at the end of each earlier
        assistant turn's own generation prompt where the prompt holds it (`labels.py`), so that
        the tokens are those the fine-tune was trained on; with the request's template variables
        (`enable_thinking`, say). PromptError when they cannot be: the template refuses them
        (roles that do not alternate, say), or the tokenizer does (a lone surrogate is no
        character to encode)."""
        try:
            messages, tools = self.messages(messages, tools)
            turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i > 0]
            *earlier, prompt = self.render_many(
                [messages[:i] for i in turns] + [messages], tools, True, template_kwargs
            )
            cuts = sorted({len(text) for text in earlier if prompt.startswith(text)})
            return self.encoder.encode([prompt], [cuts])[0].ids
        except Exception as error:
            raise PromptError(f"The messages cannot be rendered as this model's prompt: {error}") from error

    @cached_property
    def encoder(self) -> PieceEncoder:
        return PieceEncoder.for_tokenizer(self.tokenizer)

    def render(self, messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def render_many(
        self, conversations: list[list[dict]], tools, add_generation_prompt: bool, template_kwargs: dict | None = None
    ) -> list[str]:
        """`render` of each conversation, half again as fast: the compiled template rendered
        directly, without what `apply_chat_template` adds around it: normalising message objects
        to dicts without None values, and rebuilding every input out of plain JSON types (a guard
        against rich objects). `messages` output is plain JSON-parsed data with no None values
        already. The oracle test (`tests/test_labels_batched.py`) holds this to
        `apply_chat_template`."""
        from transformers.utils.chat_template_utils import _compile_jinja_template

        template = _compile_jinja_template(self.tokenizer.get_chat_template(None, tools))
        special_tokens = self.tokenizer.special_tokens_map
        return [
            template.render(
                messages=messages,
                tools=tools,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **{**special_tokens, **(template_kwargs or {})},
            )
            for messages in conversations
        ]

    @cached_property
    def renders_system(self) -> bool:
        """The system message is rendered, and stays rendered once the assistant answers (Mistral
        v0.3's writes it into the last user turn only while that turn is the last message)."""
        system = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "x"}]
        return self._probe(system, None) and self._probe([*system, {"role": "assistant", "content": "y"}], None)

    @cached_property
    def conversation_end(self) -> str:
        """What the template writes after the last turn of a conversation rendered without the
        generation prompt and that no turn owns (Phi-3's EOS): the tokens a one-turn conversation
        has beyond those it shares with the same turn plus the generation prompt, if a two-turn
        one ends with them too. "" for most templates."""
        user = {"role": "user", "content": "x"}
        try:
            whole = self.render([user], None)
            prompted = self.render([user], None, add_generation_prompt=True)
            two_turns = self.render([user, {"role": "assistant", "content": "y"}], None)
        except Exception:  # a template that rejects the probe shows its error on real data instead
            return ""
        # Compared by tokens: by characters, `<|end|>` and `<|assistant|>` would share `<|`.
        ids = [
            self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True) for text in (whole, prompted)
        ]
        shared = len(os.path.commonprefix([ids[0]["input_ids"], ids[1]["input_ids"]]))
        offsets = ids[0]["offset_mapping"]
        end = whole[offsets[shared][0] :] if shared < len(offsets) else ""
        return end if two_turns.endswith(end) else ""

    @cached_property
    def end_of_turn_id(self) -> int | None:
        """The special token the template closes an assistant turn with (Gemma's
        `<end_of_turn>`, Llama 3's `<|eot_id|>`): a reply ends there even where no config names it
        (a base added from a GGUF names only its EOS). None if the turn ends with no such token."""
        try:
            text = self.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}], None)
        except Exception:  # a template that rejects the probe shows its error on real data instead
            return None
        after = text[text.rfind(_PROBE) + len(_PROBE) :].lstrip()
        ids = self.tokenizer(after, add_special_tokens=False).input_ids if after else []
        return ids[0] if ids and ids[0] in self.tokenizer.added_tokens_decoder else None

    @cached_property
    def renders_tool_calls(self) -> bool:
        call = {"id": "call_0", "type": "function", "function": {"name": _PROBE, "arguments": {}}}
        messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
        return self._probe(messages, None)

    @cached_property
    def renders_tools(self) -> bool:
        parameters = {"type": "object", "properties": {}}
        tool = {"type": "function", "function": {"name": _PROBE, "description": "", "parameters": parameters}}
        return self._probe([{"role": "user", "content": "x"}], [tool])

    def _probe(self, messages: list[dict], tools: list[dict] | None) -> bool:
        try:
            return _PROBE in self.render(messages, tools)
        except Exception:  # a template that rejects the probe does not render it either
            return False


def _fold_system(messages: list[dict]) -> list[dict]:
    """Each system message's text put at the start of the next user turn, a blank line between
    (a user turn of its own when no user turn follows)."""
    out, pending = [], []
    for m in messages:
        if m["role"] == "system":
            pending += [m["content"]] if m["content"] else []
            continue
        if pending and m["role"] == "user":
            m = {**m, "content": "\n\n".join([*pending, m["content"]])}
        elif pending:
            out.append({"role": "user", "content": "\n\n".join(pending)})
        pending = []
        out.append(m)
    if pending:
        out.append({"role": "user", "content": "\n\n".join(pending)})
    return out


def _with_object_arguments(call: dict) -> dict:
    function = dict(call["function"])
    if isinstance(function.get("arguments"), str):
        try:
            function["arguments"] = json.loads(function["arguments"])
        except json.JSONDecodeError:
            pass  # kept as the string the user wrote
    return {**call, "type": call.get("type", "function"), "function": function}


def _tool_call_text(function: dict) -> str:
    call = {"name": function["name"], "arguments": function.get("arguments", {})}
    return f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"
