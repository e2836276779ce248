"""An Ollama `Modelfile` for an exported GGUF: FROM the file, a TEMPLATE that renders chats as the
model's own chat template does, its end-of-turn tokens as stops, and the fine-tune's system
message as a commented example.

Ollama's templates are Go templates and a model's is Jinja, and no converter between them exists
for templates in general. What chat models' templates do, though, is render each message as
`prefix(role) + content + suffix(role)` after a head (a default system message, a BOS) and end
with the assistant's header. `chat_parts` finds those pieces by rendering probe conversations
and cutting them at the probe contents: a template whose renders do not fit that shape (one that
rewrites earlier turns, say) gets no TEMPLATE, and Ollama falls back to the GGUF's own
`tokenizer.chat_template`, which it matches against the templates it knows.

The cut between one message's suffix and the next one's prefix cannot be seen from outside; any
cut that reproduces every pair of neighbours renders the same text, so the one taken is the
earliest (everything between two contents goes to the suffix of the first).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

# Probe contents: plain words the templates pass through untouched (no spaces to trim).
_S, _U1, _A1, _U2 = "SYSTEMPROBE", "USERPROBEONE", "ASSISTANTPROBE", "USERPROBETWO"

Render = Callable[[list[dict]], str]  # messages → text, with the generation prompt


@dataclass(frozen=True)
class ChatParts:
    head: str  # before the first message when it is not a system message
    system_head: str | None  # before a leading system message's content (None: no system role)
    system_suffix: str | None
    user_suffix: str  # after a user message, up to the next message's content
    assistant_suffix: str
    generation: str  # after the last user message's suffix: the assistant's header

    def render(self, messages: list[dict]) -> str:
        """The text these parts give `messages` (what the Go template renders)."""
        out = []
        for index, message in enumerate(messages):
            role = message["role"]
            if index == 0:
                out.append(self.system_head if role == "system" else self.head)
            out.append(message["content"])
            out.append({"system": self.system_suffix, "user": self.user_suffix}.get(role, self.assistant_suffix))
        return "".join(out) + self.generation


def chat_parts(render: Render) -> ChatParts | None:
    """The template's pieces, or None when its renders are not `prefix + content + suffix`."""
    try:
        one = render([{"role": "user", "content": _U1}])
        turns = [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1}]
        three = render([*turns, {"role": "user", "content": _U2}])
    except Exception:
        return None
    pieces = _cut(three, [_U1, _A1, _U2])
    if pieces is None:
        return None
    head, user_suffix, assistant_suffix, end = pieces
    # After the last user message come its suffix and the generation prompt; the history's
    # assistant header (the end of `user_suffix`) must be that prompt.
    if one != head + _U1 + end or not end.startswith(user_suffix):
        return None
    parts = ChatParts(head, None, None, user_suffix, assistant_suffix, end[len(user_suffix) :])
    return _with_system(render, parts) or parts


def _with_system(render: Render, parts: ChatParts) -> ChatParts | None:
    """The parts with a leading system message's head and suffix, if the template has that role."""
    messages = [{"role": "system", "content": _S}, {"role": "user", "content": _U1}]
    try:
        text = render(messages)
    except Exception:  # a template without a system role raises
        return None
    pieces = _cut(text, [_S, _U1])
    if pieces is None:
        return None
    system_head, system_suffix, _ = pieces
    parts = ChatParts(
        parts.head, system_head, system_suffix, parts.user_suffix, parts.assistant_suffix, parts.generation
    )
    return parts if parts.render(messages) == text else None


def _cut(text: str, contents: list[str]) -> list[str] | None:
    """`text` split around each of `contents` in order (each found once), or None."""
    pieces, rest = [], text
    for content in contents:
        if rest.count(content) != 1:
            return None
        before, rest = rest.split(content)
        pieces.append(before)
    return [*pieces, rest]


def go_template(parts: ChatParts) -> str:
    """Ollama's Go template for `parts`. Literal text is written as quoted Go strings, so the
    whitespace trimming of `{{-` never eats a newline that belongs to the prompt."""
    q = lambda text: "{{ " + json.dumps(text, ensure_ascii=False) + " }}"  # noqa: E731
    lines = ["{{- range $i, $m := .Messages }}"]
    if parts.system_head is not None:
        lines.append(f'{{{{- if and (eq $i 0) (eq .Role "system") }}}}{q(parts.system_head)}')
        lines.append(f"{{{{- else if eq $i 0 }}}}{q(parts.head)}{{{{ end }}}}")
    else:
        lines.append(f"{{{{- if eq $i 0 }}}}{q(parts.head)}{{{{ end }}}}")
    lines.append("{{- .Content }}")
    branches = [("user", parts.user_suffix), ("assistant", parts.assistant_suffix)]
    if parts.system_suffix is not None:
        branches.append(("system", parts.system_suffix))
    for n, (role, suffix) in enumerate(branches):
        keyword = "if" if n == 0 else "else if"
        lines.append(f'{{{{- {keyword} eq .Role "{role}" }}}}{q(suffix)}')
    lines.append("{{- end }}")
    lines.append("{{- end }}" + (q(parts.generation) if parts.generation else ""))
    return "\n".join(lines)


def modelfile(gguf_name: str, model: str, parts: ChatParts | None, stops: list[str], system: str | None) -> str:
    """The Modelfile's text, to sit next to `gguf_name`."""
    lines = [
        f"# Ollama Modelfile for {model}, exported by openft.",
        f"#   ollama create {_ollama_name(model)} -f Modelfile && ollama run {_ollama_name(model)}",
        f"FROM ./{gguf_name}",
    ]
    if parts is not None:
        lines.append(f'TEMPLATE """{go_template(parts)}"""')
    else:
        lines.append("# No TEMPLATE: the chat template is not one openft can translate; Ollama reads it from the GGUF.")
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    if system:
        lines.append("# The fine-tune was trained with this system message; uncomment to send it by default:")
        lines += ["# " + line for line in f'SYSTEM """{system}"""'.splitlines()]
    return "\n".join(lines) + "\n"


def _ollama_name(model: str) -> str:
    """An Ollama model name for `model`: lowercase letters, digits, '-', '_' and '.'."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in model.lower())
    return name.strip("-") or "model"
