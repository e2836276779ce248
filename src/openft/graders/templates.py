"""Grader templates: text with `{{ item.x }}`, `{{ sample.output_json.a.b }}` or
`{{ sample.output_tools[0].function.arguments }}` in it (GRADERS-GUIDE, "Templating").

A template is only substitutions of a path in the `item` or `sample` namespace, which is all
OpenAI documents; a hand parser rather than jinja2, whose filters, loops and attribute access
would be a language to sandbox for no documented use. A malformed template is a 400 when the
grader is parsed; a path the data lacks is `MissingVariable` when it is rendered, which the
grader reports as `invalid_variable_error` with grade 0."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

NAMESPACES = ("item", "sample")
# One step of a path: `.key` (anything but dots, brackets, braces and spaces), `[3]`, `["key"]`.
_STEP = re.compile(r"""\.([^.\[\]{}\s]+)|\[(\d+)\]|\["([^"]*)"\]|\['([^']*)'\]""")
_NAMESPACE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


class TemplateError(ValueError):
    """A template that cannot be parsed; the message says what and where."""


class MissingVariable(LookupError):
    """A path the item or sample does not have."""


@dataclass(frozen=True)
class Path:
    namespace: str
    steps: tuple[str | int, ...]
    text: str

    def resolve(self, namespaces: dict[str, Any]) -> Any:
        value = namespaces.get(self.namespace)
        for step in self.steps:
            if isinstance(step, int) and isinstance(value, list) and step < len(value):
                value = value[step]
            elif isinstance(step, str) and isinstance(value, dict) and step in value:
                value = value[step]
            else:
                value = None
            if value is None:
                break
        if value is None:  # `output_json` unset, a key absent, or a null: nothing to put in the text
            raise MissingVariable(f"The variable `{self.text}` is not in the {self.namespace} namespace.")
        return value


@dataclass(frozen=True)
class Template:
    """Literal text and paths, in order."""

    parts: tuple[str | Path, ...]

    def render(self, item: Any, sample: dict[str, Any]) -> str:
        namespaces = {"item": item, "sample": sample}
        return "".join(part if isinstance(part, str) else _text(part.resolve(namespaces)) for part in self.parts)


def parse(text: str) -> Template:
    parts: list[str | Path] = []
    position = 0
    while (start := text.find("{{", position)) != -1:
        end = text.find("}}", start)
        if end == -1:
            raise TemplateError(f"The template has `{{{{` at character {start} without a closing `}}}}`.")
        parts += [text[position:start], _path(text[start + 2 : end], start)]
        position = end + 2
    parts.append(text[position:])
    return Template(tuple(part for part in parts if part != ""))


def _path(expression: str, at: int) -> Path:
    namespace = _NAMESPACE.match(expression)
    if not namespace or namespace.group(1) not in NAMESPACES:
        raise TemplateError(
            f"The template variable `{{{{{expression}}}}}` at character {at} is not in a known namespace: "
            "the only namespaces are `item` and `sample` (e.g. `{{ item.answer }}`, `{{ sample.output_text }}`)."
        )
    steps: list[str | int] = []
    position = namespace.end()
    rest = expression.rstrip()
    while position < len(rest):
        step = _STEP.match(rest, position)
        if not step:
            raise TemplateError(
                f"The template variable `{{{{{expression}}}}}` at character {at} is not a path: only "
                '`.key`, `[0]` and `["key"]` steps are supported (no filters, calls or expressions).'
            )
        key, index, double, single = step.groups()
        steps.append(int(index) if index is not None else next(s for s in (key, double, single) if s is not None))
        position = step.end()
    return Path(namespace.group(1), tuple(steps), expression.strip())


def _text(value: Any) -> str:
    """A string as it is; anything else (numbers, objects, lists) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
