"""A grader as OpenAI's JSON describes it, checked and compiled once (`parse_grader`), then
graded many times (`grade.grade`).

Every way a grader can be wrong is found here and is a 400 naming the field (`param`, e.g.
`grader.graders.accuracy.input`): an unknown type or field, a template that does not parse,
a multi inside a multi, a formula that names no grader, Python source without `grade`. What
only the data can break (a template variable an item lacks, a formula dividing by zero) is
found while grading and is an error flag with grade 0, never an exception."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from openft.errors import OpenFTError
from openft.graders import formula, similarity, templates
from openft.graders.sandbox import Sandbox, SandboxLimits
from openft.protocol import graders as wire

_GRADER = TypeAdapter(wire.Grader)


@dataclass(eq=False)
class Grader:
    """A parsed grader. `spec` is the grader as validated, in OpenAI's JSON (what `validate`
    echoes and an eval stores)."""

    type: ClassVar[str]
    name: str
    spec: dict[str, Any]
    pass_threshold: float | None

    def close(self) -> None:
        """Stops what the grader holds between grades (a Python grader's warm process; it
        would stop by itself when idle); grading again starts it anew."""


@dataclass(eq=False)
class StringCheck(Grader):
    type: ClassVar[str] = "string_check"
    input: templates.Template
    reference: templates.Template
    operation: str


@dataclass(eq=False)
class TextSimilarity(Grader):
    type: ClassVar[str] = "text_similarity"
    input: templates.Template
    reference: templates.Template
    evaluation_metric: str


@dataclass(eq=False)
class Python(Grader):
    type: ClassVar[str] = "python"
    source: str
    sandbox: Sandbox
    """The warm sandbox process this grader's items run in (started on the first, reused by
    the next ones, stopped when idle or when the grader is garbage collected)."""

    def close(self) -> None:
        self.sandbox.close()


@dataclass(frozen=True)
class Message:
    role: str
    content: templates.Template | tuple[dict[str, Any], ...]
    """A template, or content parts whose `text` is a template (`{"type": "input_text",
    "text": Template}`) or images as given."""


@dataclass(eq=False)
class ScoreModel(Grader):
    type: ClassVar[str] = "score_model"
    model: str
    input: tuple[Message, ...]
    range: tuple[float, float]
    sampling: dict[str, Any]
    """The chat parameters: temperature, top_p, seed, max_completion_tokens, reasoning_effort."""


@dataclass(eq=False)
class LabelModel(Grader):
    type: ClassVar[str] = "label_model"
    model: str
    input: tuple[Message, ...]
    labels: tuple[str, ...]
    passing_labels: tuple[str, ...]


@dataclass(eq=False)
class Multi(Grader):
    type: ClassVar[str] = "multi"
    graders: dict[str, Grader]
    calculate_output: formula.Formula

    def close(self) -> None:
        for grader in self.graders.values():
            if isinstance(grader, Python):
                grader.close()


def parse_grader(spec: Any, *, param: str = "grader", limits: SandboxLimits | None = None) -> Grader:
    """The grader `spec` (OpenAI's JSON), checked and compiled; OpenFTError 400 with `param`
    set to the faulty field's path under `param` otherwise. Accepts string_check,
    text_similarity, python, score_model, label_model and multi, `pass_threshold` on each (the
    evals variant), and the single grader that older SDKs send as `multi.graders`.
    `limits` bound each Python grader's sandbox (default: `SandboxLimits()`, OpenAI's)."""
    if not isinstance(spec, dict):
        raise OpenFTError(400, f"Invalid type for '{param}': expected an object.", param=param)
    spec = _graders_as_map(spec, param)
    try:
        parsed = _GRADER.validate_python(spec)
    except ValidationError as error:
        raise _invalid(error, spec, param) from None
    return _compile(parsed, param, limits or SandboxLimits())


def _graders_as_map(spec: dict[str, Any], param: str) -> dict[str, Any]:
    """A multi whose `graders` is one grader (SDK ≤ 3.57's type) as a map of one, keyed by the
    grader's name; a multi inside a multi is refused here, by name, rather than as an
    unexpected type."""
    if spec.get("type") != "multi" or not isinstance(spec.get("graders"), dict):
        return spec
    graders = spec["graders"]
    if isinstance(graders.get("type"), str):
        graders = {str(graders.get("name", "grader")): graders}
    for key, grader in graders.items():
        if isinstance(grader, dict) and grader.get("type") == "multi":
            raise OpenFTError(
                400,
                "A multi grader cannot contain another multi grader: "
                f"'{param}.graders.{key}' is a multi; put its graders and formula in the outer one.",
                param=f"{param}.graders.{key}",
            )
    return {**spec, "graders": graders}


def _invalid(error: ValidationError, spec: dict[str, Any], param: str) -> OpenFTError:
    """OpenAI's message and `param` for pydantic's complaint. Of its complaints (one per union
    member it tried), the one reaching deepest into the data is told: for a list of content
    parts, the part at fault rather than "not a string"; at one depth, a missing or unknown
    field or type rather than a mismatched member of a union."""
    first = max(error.errors(), key=lambda complaint: (_data_path(complaint, spec, param)[0], _specific(complaint)))
    path = _data_path(first, spec, param)[1]
    kind = first["type"]
    if kind == "missing":
        return OpenFTError(400, f"Missing required parameter: '{path}'.", param=path)
    if kind == "extra_forbidden":
        return OpenFTError(400, f"Unknown parameter: '{path}'.", param=path, code="unknown_parameter")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        path, context = f"{path}.type", first.get("ctx", {})
        if kind == "union_tag_not_found":
            return OpenFTError(400, f"Missing required parameter: '{path}'.", param=path)
        message = f"Invalid value for '{path}': '{context['tag']}'. Supported values are: {context['expected_tags']}."
        return OpenFTError(400, message, param=path, code="invalid_value")
    return OpenFTError(400, f"Invalid value for '{path}': {first['msg']}.", param=path, code="invalid_value")


def _specific(complaint: dict[str, Any]) -> bool:
    return complaint["type"] in ("missing", "extra_forbidden", "union_tag_invalid", "union_tag_not_found")


def _data_path(complaint: dict[str, Any], spec: dict[str, Any], param: str) -> tuple[int, str]:
    """How many steps of the complaint's location the data has, and their path under `param`.
    Pydantic's location holds the union members it tried (`string_check`, `str`, ...) between
    the real keys; they are left out."""
    depth, path, value = 0, param, spec
    for step in complaint["loc"]:
        if isinstance(value, dict) and step in value:
            depth, path, value = depth + 1, f"{path}.{step}", value[step]
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            depth, path, value = depth + 1, f"{path}[{step}]", value[step]
        elif complaint["type"] in ("missing", "extra_forbidden") and step == complaint["loc"][-1]:
            depth, path = depth + 1, f"{path}.{step}"
    return depth, path


def _compile(parsed: Any, param: str, limits: SandboxLimits) -> Grader:
    spec = parsed.model_dump(exclude_none=True)
    common = {"name": parsed.name, "spec": spec, "pass_threshold": getattr(parsed, "pass_threshold", None)}
    if isinstance(parsed, wire.StringCheckGrader):
        return StringCheck(
            **common,
            input=_template(parsed.input, f"{param}.input"),
            reference=_template(parsed.reference, f"{param}.reference"),
            operation=parsed.operation,
        )
    if isinstance(parsed, wire.TextSimilarityGrader):
        unavailable = similarity.unavailable(parsed.evaluation_metric)
        if unavailable:
            raise OpenFTError(400, unavailable, param=f"{param}.evaluation_metric", code="unsupported_value")
        return TextSimilarity(
            **common,
            input=_template(parsed.input, f"{param}.input"),
            reference=_template(parsed.reference, f"{param}.reference"),
            evaluation_metric=parsed.evaluation_metric,
        )
    if isinstance(parsed, wire.PythonGrader):
        _check_source(parsed.source, f"{param}.source")
        return Python(**common, source=parsed.source, sandbox=Sandbox(parsed.source, limits))
    if isinstance(parsed, wire.ScoreModelGrader):
        low, high = parsed.range or (0.0, 1.0)
        if not low < high:
            raise OpenFTError(400, f"'{param}.range' must be [min, max] with min < max.", param=f"{param}.range")
        return ScoreModel(
            **common,
            model=parsed.model,
            input=_messages(parsed.input, f"{param}.input"),
            range=(low, high),
            sampling=_sampling(parsed.sampling_params),
        )
    if isinstance(parsed, wire.LabelModelGrader):
        strangers = [label for label in parsed.passing_labels if label not in parsed.labels]
        if strangers:
            raise OpenFTError(
                400,
                f"'{param}.passing_labels' must be a subset of '{param}.labels'; {strangers} are not labels.",
                param=f"{param}.passing_labels",
            )
        if len(set(parsed.labels)) != len(parsed.labels):
            raise OpenFTError(400, f"'{param}.labels' has a label twice.", param=f"{param}.labels")
        return LabelModel(
            **common,
            model=parsed.model,
            input=_messages(parsed.input, f"{param}.input"),
            labels=tuple(parsed.labels),
            passing_labels=tuple(parsed.passing_labels),
        )
    assert isinstance(parsed, wire.MultiGrader)
    graders = {key: _compile(grader, f"{param}.graders.{key}", limits) for key, grader in parsed.graders.items()}
    try:
        calculate_output = formula.parse(parsed.calculate_output, graders)
    except formula.FormulaError as error:
        raise OpenFTError(400, str(error), param=f"{param}.calculate_output", code="invalid_value") from None
    return Multi(**common, graders=graders, calculate_output=calculate_output)


def _template(text: str, param: str) -> templates.Template:
    try:
        return templates.parse(text)
    except templates.TemplateError as error:
        raise OpenFTError(400, f"Invalid template in '{param}': {error}", param=param, code="invalid_value") from None


def _messages(messages: list[wire.InputMessage], param: str) -> tuple[Message, ...]:
    compiled = []
    for n, message in enumerate(messages):
        where = f"{param}[{n}].content"
        content = message.content
        if isinstance(content, str):
            compiled.append(Message(message.role, _template(content, where)))
            continue
        parts = content if isinstance(content, list) else [content]
        compiled.append(Message(message.role, tuple(_part(part, f"{where}[{i}]") for i, part in enumerate(parts))))
    return tuple(compiled)


def _part(part: str | Any, param: str) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "input_text", "text": _template(part, param)}
    if isinstance(part, wire.InputText | wire.OutputText):
        return {"type": part.type, "text": _template(part.text, f"{param}.text")}
    return part.model_dump(exclude_none=True)


def _sampling(params: wire.SamplingParams | None) -> dict[str, Any]:
    if params is None:
        return {}
    given = params.model_dump(exclude_none=True)
    tokens = given.pop("max_completions_tokens", None)
    if tokens is not None:
        given.setdefault("max_completion_tokens", tokens)
    return given


def _check_source(source: str, param: str) -> None:
    """The source parses, and defines `grade` with two parameters at its top level (what OpenAI
    asks); nothing of it runs here."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise OpenFTError(
            400,
            f"'{param}' is not valid Python: {error.msg}" + (f" (line {error.lineno})." if error.lineno else "."),
            param=param,
        ) from None
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        raise OpenFTError(400, f"'{param}' cannot be parsed: {error}.", param=param) from None
    grade = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "grade"]
    if not grade:
        raise OpenFTError(400, f"'{param}' must define `def grade(sample, item) -> float`.", param=param)
    arguments = grade[-1].args
    positional = arguments.posonlyargs + arguments.args
    if len(positional) - len(arguments.defaults) > 2 or (len(positional) < 2 and not arguments.vararg):
        raise OpenFTError(400, f"'{param}': `grade` must take exactly two arguments, (sample, item).", param=param)
