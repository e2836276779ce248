"""Check chat fine-tuning JSONL before anything is tokenized or trained.

Bytes in, a `ValidationReport` out: `validate_chat_jsonl` for a file in memory, `iter_chat_jsonl`
to stream one line by line in bounded memory (the same report), `scan_chat_jsonl` to stream a
file and count its examples (what the server runs on an upload and a job create). The module is pure (no torch, no
tokenizer), so the server can run it on upload and the CLI can run it offline; the token-level
checks (context length, trained tokens) live next to the tokenizer.

Every problem is a `DataIssue` with a stable `code` that clients can match on, and a message that
starts "Line N: " so the user can jump to it. The whole file is checked and every problem on every
line is reported, so one round of fixes is enough. An example with any error is left out of
`examples`; warnings never drop an example. Codes reuse the names from OpenAI's cookbook script
(Chat_finetuning_data_prep) where one exists.

A file holds one method's examples: supervised (`{"messages": [...]}`) or preference, DPO
(`{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}`).
The caller names the method (a job's), or the first example that parses as JSON decides it (an
upload, `openft data check` without --method); `report.method` says which. A line of the other
method is one error naming the mix-up, not a cascade of missing keys.

Error codes:
  File:      empty_file, not_jsonl, invalid_encoding, invalid_json
  Example:   data_type, example_unrecognized_key, missing_messages_list,
             example_missing_assistant_message, no_trained_assistant_message
  Method:    dpo_example_in_supervised_file, supervised_example_in_dpo_file
  DPO:       missing_input, invalid_preference_output (each output must be a list of exactly
             one assistant message: content or tool calls, no weight)
  Message:   message_missing_key, message_unrecognized_key, unrecognized_role, missing_content,
             invalid_weight
  Tool data: invalid_tools, invalid_functions, invalid_parallel_tool_calls, invalid_tool_calls,
             invalid_function_call, invalid_tool_call_id
Warning codes:
  blank_line, duplicate_example, missing_system_message, missing_user_message,
  short_assistant_reply, invalid_json_reply, identical_system_message (file level),
  identical_preference_outputs (DPO: the two replies are the same, so there is nothing to prefer)

`invalid_json_reply`: a trained assistant reply that is meant to be JSON (its example's system
message says "JSON", or most trained replies of the file are a JSON object or array) but is
not one. The fine-tune would learn to break the format, and a structured-output request
(`response_format`) would force it into JSON it never saw. Replies of files that are mostly
JSON are only known at the end of the file: the lines of replies that are not JSON are kept
(4 bytes each) until then.

The 10-example minimum is not applied here: the server applies `check_example_count` when a job
is created (as OpenAI does), and the CLI applies both.
"""

import codecs
import hashlib
import io
import itertools
import json
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from openft.data.chat_format import content_text

MIN_EXAMPLES = 10
ALLOWED_ROLES = ("system", "user", "assistant", "tool", "function")
ALLOWED_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"})
ALLOWED_EXAMPLE_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
ALLOWED_INPUT_KEYS = ALLOWED_EXAMPLE_KEYS  # a DPO example's `input` is a supervised example's shape
PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")
OUTPUT_KEYS = ("preferred_output", "non_preferred_output")
METHODS = ("supervised", "dpo")
# A trained assistant reply with fewer non-whitespace characters than this is flagged. Two, not
# more: one-word labels ("No", "positive") are a common, legitimate classification target, while
# an empty or one-character reply is usually a data bug (a truncated export, a stray label).
SHORT_REPLY_CHARS = 2


@dataclass(frozen=True)
class DataIssue:
    line: int | None  # 1-based line in the file; None for file-level issues
    code: str
    message: str  # starts with f"Line {line}: " when `line` is set


@dataclass
class ValidationReport:
    examples: list[dict] = field(default_factory=list)
    example_lines: list[int] = field(default_factory=list)
    errors: list[DataIssue] = field(default_factory=list)
    warnings: list[DataIssue] = field(default_factory=list)
    method: str | None = None  # "supervised" or "dpo": the caller's, or the first example's

    @property
    def ok(self) -> bool:
        return not self.errors


def check_example_count(n: int) -> DataIssue | None:
    """OpenAI's job-creation check, with OpenAI's wording."""
    if n >= MIN_EXAMPLES:
        return None
    message = f"Training file has {n} example(s), but must have at least {MIN_EXAMPLES} examples"
    return DataIssue(None, "invalid_n_examples", message)


def validate_chat_jsonl(raw: bytes, method: str | None = None) -> ValidationReport:
    """Check a whole file held in memory. `iter_chat_jsonl` streams one and reports the same."""
    report = ValidationReport(method=method)
    for line, example in iter_chat_jsonl(io.BytesIO(raw), report):
        report.examples.append(example)
        report.example_lines.append(line)
    return report


def scan_chat_jsonl(lines: Iterable[bytes], method: str | None = None) -> tuple[ValidationReport, int]:
    """Check a file as a stream, in bounded memory: its report (errors and warnings; `examples`
    left empty) and how many valid examples it holds. `method`: as `iter_chat_jsonl`."""
    report = ValidationReport(method=method)
    count = sum(1 for _ in iter_chat_jsonl(lines, report))
    return report, count


def iter_chat_jsonl(lines: Iterable[bytes], report: ValidationReport) -> Iterator[tuple[int, dict]]:
    """Check a file as a stream: yield (line, example) for each valid example, in file order, and
    add each error and warning to `report` as it is found (the file-level one at the end).
    The examples are checked as `report.method`'s; when it is None, the first line that parses
    as JSON sets it.

    `lines` is a binary file object, or any iterable of byte lines with or without their b"\n".
    `report.examples` is left alone: of each valid example, only a 16-byte digest is kept (to
    name the first line of a duplicate), so memory grows by about 150 bytes per example, however
    long the examples are, plus the issues found.
    """
    lines = iter(lines)
    blank = 0  # blank lines before the first content line
    for chunk in lines:
        chunk = chunk.removesuffix(b"\n")
        if blank == 0:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
            if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                report.errors.append(_issue(1, "invalid_encoding", "the file is UTF-16; save it as UTF-8"))
                return
        if chunk.strip():
            break
        blank += 1
    else:
        report.errors.append(DataIssue(None, "empty_file", "The training file is empty"))
        return
    ahead: list[bytes] = []  # lines read past the first content line to judge the file's shape
    if not_jsonl := _sniff_not_jsonl(chunk, lines, ahead):
        report.errors.append(_issue(blank + 1, "not_jsonl", not_jsonl))
        return

    report.warnings += [_issue(lineno, "blank_line", BLANK_LINE) for lineno in range(1, blank + 1)]
    state = _FileState(method=report.method)
    rest = itertools.chain([chunk], ahead, (line.removesuffix(b"\n") for line in lines))
    for lineno, chunk in enumerate(rest, start=blank + 1):
        if (example := _check_line(lineno, chunk, report, state)) is not None:
            yield lineno, example
    report.warnings += _json_reply_warnings(state)
    if warning := _identical_system_warning(state):
        report.warnings.append(warning)


BLANK_LINE = "blank line, skipped; remove it to silence this warning"


@dataclass
class _FileState:
    """What checking a line needs to know of the lines before it."""

    first_seen: dict[bytes, int] = field(default_factory=dict)  # digest of an example -> its first line
    examples: int = 0
    system_prompts: set[str | None] = field(default_factory=set)  # the first two seen: enough to tell
    method: str | None = None
    json_replies: int = 0  # trained assistant replies that are a JSON object or array
    text_replies: int = 0  # ... and those that are not
    # Where the text replies are (line, message index) of examples whose system message does not
    # ask for JSON: each gets a warning if most replies of the file turn out to be JSON.
    text_reply_lines: array = field(default_factory=lambda: array("I"))
    text_reply_indexes: array = field(default_factory=lambda: array("I"))
    text_reply_fenced: array = field(default_factory=lambda: array("b"))  # in a ``` code fence


def _check_line(lineno: int, chunk: bytes, report: ValidationReport, state: _FileState) -> dict | None:
    """The line's example if it is valid, else None; its problems go to `report`."""
    if not chunk.strip():
        report.warnings.append(_issue(lineno, "blank_line", BLANK_LINE))
        return None
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as e:
        detail = f"byte 0x{chunk[e.start]:02x} at column {e.start + 1} is not valid UTF-8"
        detail += "; save the file as UTF-8"
        report.errors.append(_issue(lineno, "invalid_encoding", detail))
        return None
    try:
        example = json.loads(text)
    except json.JSONDecodeError as e:
        detail = f"invalid JSON: {e.msg} (column {e.colno})"
        detail += "; each line must be one complete JSON object"
        report.errors.append(_issue(lineno, "invalid_json", detail))
        return None
    if state.method is None:
        state.method = report.method = method_of(example)
    dpo = state.method == "dpo"
    errors = _preference_errors(example) if dpo else _example_errors(example)
    report.errors += [_issue(lineno, code, detail) for code, detail in errors]
    if errors:
        return None
    warnings = (
        _preference_warnings(example) if dpo else _example_warnings(example) + _json_replies(lineno, example, state)
    )
    report.warnings += [_issue(lineno, code, detail) for code, detail in warnings]
    digest = hashlib.blake2b(_canonical(example), digest_size=16).digest()
    if digest in state.first_seen:
        detail = (
            f"duplicate of line {state.first_seen[digest]}; a repeated example is trained on twice"
            " as often, remove it unless that is intended"
        )
        report.warnings.append(_issue(lineno, "duplicate_example", detail))
    else:
        state.first_seen[digest] = lineno
    state.examples += 1
    if len(state.system_prompts) < 2:
        state.system_prompts.add(_system_prompt(example))
    return example


def _issue(line: int, code: str, detail: str) -> DataIssue:
    return DataIssue(line, code, f"Line {line}: {detail}")


# ---------------------------------------------------------------------------------------------
# Whole-file shape: catch a JSON array, a pretty-printed object or a CSV once, at its first line,
# instead of burying the real cause under one invalid_json error per line.


def _sniff_not_jsonl(first_line: bytes, lines: Iterator[bytes], ahead: list[bytes]) -> str | None:
    """Why a file whose first content line is `first_line` is not JSONL, or None. Reads on from
    `lines` only as far as that takes, into `ahead`."""
    first = first_line.decode("utf-8", errors="replace").strip()
    parses = _is_json(first)
    if first.startswith("[") and (not parses or _only_content_line(lines, ahead)):
        return "the file looks like a JSON array; expected JSONL: one JSON object per line, without the surrounding [ ]"
    if first.startswith("{") and not parses and _first_value_spans_lines(first_line, lines, ahead):
        return (
            "the file holds a JSON object spread over several lines; expected JSONL: each"
            " example as one JSON object on a single line"
        )
    if not first.startswith(("{", "[")) and not parses and ("," in first or "\t" in first):
        return 'the file looks like CSV; expected JSONL: one JSON object per line, like {"messages": [...]}'
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _only_content_line(lines: Iterator[bytes], ahead: list[bytes]) -> bool:
    for line in lines:
        ahead.append(line.removesuffix(b"\n"))
        if ahead[-1].strip():
            return False
    return True


# A first JSON value still open after this many characters is taken to be spread over lines,
# without reading on: sniffing a huge pretty-printed file must not load it all.
SNIFF_CHARS = 16 * 1024 * 1024


def _first_value_spans_lines(first_line: bytes, lines: Iterator[bytes], ahead: list[bytes]) -> bool:
    """Does the JSON value that opens the file end on a later line than the one it starts on?

    Lines are read on until the value parses or cannot. No JSON token spans a line break, so a
    parse that fails before the end of the text read so far fails the same on all of the file;
    only one that runs out of text needs more. Parsing is retried as the text doubles.
    """
    parts = [first_line.decode("utf-8", errors="replace").lstrip()]
    size, tried, more = len(parts[0]), 0, True
    while True:
        if not more or size >= 2 * tried:
            text = "\n".join(parts)
            try:
                _, end = json.JSONDecoder().raw_decode(text)
            except json.JSONDecodeError as e:
                if e.pos < len(text) or not more:
                    return False
                if size > SNIFF_CHARS:
                    return True
            else:
                return "\n" in text[:end]
            tried = size
        line = next(lines, None)
        if line is None:
            more = False
            continue
        ahead.append(line.removesuffix(b"\n"))
        parts.append(ahead[-1].decode("utf-8", errors="replace"))
        size += 1 + len(parts[-1])


# ---------------------------------------------------------------------------------------------
# One example. Each check returns (code, detail) pairs; the caller adds the line number.

Problems = list[tuple[str, str]]


def method_of(example: object) -> str:
    """The method an example is for: "dpo" when it has a preference key and no messages."""
    if isinstance(example, dict) and "messages" not in example and any(key in example for key in PREFERENCE_KEYS):
        return "dpo"
    return "supervised"


def _example_errors(example: object) -> Problems:
    if not isinstance(example, dict):
        return [("data_type", f"expected a JSON object, got {_json_type(example)}")]
    if method_of(example) == "dpo":
        detail = (
            "a preference (DPO) example, with input/preferred_output/non_preferred_output, in a file of"
            ' supervised examples; a file holds one kind: give this line a "messages" list, or make'
            " every line a DPO example and train with method dpo"
        )
        return [("dpo_example_in_supervised_file", detail)]
    errors: Problems = []
    for key in sorted(example.keys() - ALLOWED_EXAMPLE_KEYS):
        allowed = ", ".join(sorted(ALLOWED_EXAMPLE_KEYS))
        detail = f"unrecognized key {key!r}; an example may only have {allowed}"
        errors.append(("example_unrecognized_key", detail))
    if "tools" in example:
        errors += _definitions_errors(example["tools"], "tools", "invalid_tools")
    if "functions" in example:
        errors += _definitions_errors(example["functions"], "functions", "invalid_functions")
    if "parallel_tool_calls" in example and not isinstance(example["parallel_tool_calls"], bool):
        errors.append(("invalid_parallel_tool_calls", "parallel_tool_calls must be true or false"))
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        errors.append(("missing_messages_list", 'expected a non-empty "messages" list'))
        return errors
    return errors + _messages_errors(messages)


def _messages_errors(messages: list, prefix: str = "", call_ids: set[str] | None = None) -> Problems:
    """The messages' problems, each placed as `{prefix}messages[i]`; `call_ids` collects the ids
    of the tool calls they make."""
    errors: Problems = []
    call_ids = set() if call_ids is None else call_ids  # ids of the calls made so far, which tool messages answer
    assistant_weights = []
    for i, message in enumerate(messages):
        where = f"{prefix}messages[{i}]"
        if not isinstance(message, dict):
            detail = f"{where}: expected a JSON object, got {_json_type(message)}"
            errors.append(("data_type", detail))
            continue
        errors += _message_errors(where, message, call_ids)
        if message.get("role") == "assistant":
            assistant_weights.append(message.get("weight", 1))
    if not assistant_weights:
        detail = "no assistant message; an example needs at least one assistant reply to learn from"
        errors.append(("example_missing_assistant_message", detail))
    elif all(_is_weight(w) for w in assistant_weights) and 1 not in assistant_weights:
        detail = "every assistant message has weight 0, so nothing would be trained; set one to 1"
        errors.append(("no_trained_assistant_message", detail))
    return errors


def _message_errors(where: str, message: dict, call_ids: set[str]) -> Problems:
    errors: Problems = []
    role = message.get("role")
    for key in sorted(message.keys() - ALLOWED_MESSAGE_KEYS):
        allowed = ", ".join(sorted(ALLOWED_MESSAGE_KEYS))
        detail = f"{where}: unrecognized key {key!r}; allowed keys are {allowed}"
        errors.append(("message_unrecognized_key", detail))
    if "role" not in message:
        errors.append(("message_missing_key", f"{where}: missing 'role'"))
    elif role not in ALLOWED_ROLES:
        detail = f"{where}: role {role!r} is not one of {', '.join(ALLOWED_ROLES)}"
        errors.append(("unrecognized_role", detail))

    # An assistant message that calls a tool may leave content out or null, as the API does.
    content_optional = role == "assistant" and _makes_call(message)
    if "content" not in message:
        if not content_optional:
            errors.append(("message_missing_key", f"{where}: missing 'content'"))
    elif message["content"] is None:
        if not content_optional:
            detail = f"{where}: content is null; only an assistant tool call may omit it"
            errors.append(("missing_content", detail))
    elif problem := _content_problem(message["content"]):
        errors.append(("missing_content", f"{where}: {problem}"))

    if "weight" in message:
        if role != "assistant":
            detail = f"{where}: weight is only allowed on assistant messages"
            errors.append(("invalid_weight", detail))
        elif not _is_weight(message["weight"]):
            detail = f"{where}: weight is {message['weight']!r}, but must be 0 or 1"
            errors.append(("invalid_weight", detail))

    errors += _call_errors(where, message, role, call_ids)
    return errors


def _makes_call(message: dict) -> bool:
    return message.get("tool_calls") is not None or message.get("function_call") is not None


def _content_problem(content: object) -> str | None:
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"content must be a string, got {_json_type(content)}"
    if content and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in content
    ):
        return None
    return 'content given as a list must hold only text parts, like {"type": "text", "text": "..."}'


def _is_weight(weight: object) -> bool:
    return not isinstance(weight, bool) and isinstance(weight, (int, float)) and weight in (0, 1)


# ---------------------------------------------------------------------------------------------
# A preference (DPO) example: OpenAI's `input` (a supervised example's messages and tools, its
# earlier assistant turns context only) and one assistant message on each side.


def _preference_errors(example: object) -> Problems:
    if not isinstance(example, dict):
        return [("data_type", f"expected a JSON object, got {_json_type(example)}")]
    if method_of(example) == "supervised" and "messages" in example:
        detail = (
            'a supervised example (a "messages" list) in a file of preference (DPO) examples; a file'
            ' holds one kind: write it as {"input": {"messages": [...]}, "preferred_output": [...],'
            ' "non_preferred_output": [...]}, or train the file with method supervised'
        )
        return [("supervised_example_in_dpo_file", detail)]
    errors: Problems = []
    for key in sorted(example.keys() - set(PREFERENCE_KEYS)):
        detail = f"unrecognized key {key!r}; a DPO example may only have {', '.join(PREFERENCE_KEYS)}"
        errors.append(("example_unrecognized_key", detail))
    given = example.get("input")
    messages = given.get("messages") if isinstance(given, dict) else None
    if not isinstance(messages, list) or not messages:
        errors.append(("missing_input", 'expected an "input" object with a non-empty "messages" list'))
        messages = []
    else:
        for key in sorted(given.keys() - ALLOWED_INPUT_KEYS):
            allowed = ", ".join(sorted(ALLOWED_INPUT_KEYS))
            errors.append(("example_unrecognized_key", f"input: unrecognized key {key!r}; it may only have {allowed}"))
        if "tools" in given:
            errors += _definitions_errors(given["tools"], "tools", "invalid_tools")
        if "functions" in given:
            errors += _definitions_errors(given["functions"], "functions", "invalid_functions")
        if "parallel_tool_calls" in given and not isinstance(given["parallel_tool_calls"], bool):
            errors.append(("invalid_parallel_tool_calls", "input.parallel_tool_calls must be true or false"))
    call_ids: set[str] = set()
    errors += [problem for problem in _messages_errors(messages, "input.", call_ids) if problem[0] not in _NO_REPLY]
    for key in OUTPUT_KEYS:
        errors += _output_errors(key, example.get(key), set(call_ids))
    return errors


# The input need not hold a reply: the outputs are the replies compared.
_NO_REPLY = ("example_missing_assistant_message", "no_trained_assistant_message")


def _output_errors(key: str, output: object, call_ids: set[str]) -> Problems:
    shape = f'{key} must be a list of exactly one assistant message, like [{{"role": "assistant", "content": "..."}}]'
    if not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], dict):
        return [("invalid_preference_output", shape)]
    message = output[0]
    where = f"{key}[0]"
    if message.get("role") != "assistant":
        return [("invalid_preference_output", f"{where}: role is {message.get('role')!r}; {shape}")]
    if "weight" in message:
        return [("invalid_preference_output", f"{where}: weight is not allowed; the compared replies are trained")]
    return _message_errors(where, message, call_ids)


def _preference_warnings(example: dict) -> Problems:
    preferred, rejected = (_canonical(example[key][0]) for key in OUTPUT_KEYS)
    if preferred != rejected:
        return []
    detail = "preferred_output and non_preferred_output are identical: the pair teaches nothing; remove or fix it"
    return [("identical_preference_outputs", detail)]


# ---------------------------------------------------------------------------------------------
# Function and tool calling: definitions on the example, calls on assistant messages, results in
# tool/function messages. Malformed data here would otherwise fail late, in the chat template.


def _definitions_errors(definitions: object, key: str, code: str) -> Problems:
    shape = '{"type": "function", "function": {"name": ...}}' if key == "tools" else '{"name": ...}'
    if not isinstance(definitions, list):
        return [(code, f"{key} must be a list of {shape} objects")]
    errors: Problems = []
    for j, definition in enumerate(definitions):
        if key == "tools":
            if not isinstance(definition, dict) or definition.get("type") != "function":
                errors.append((code, f"tools[{j}]: must be {shape}"))
                continue
            definition = definition.get("function")
        if problem := _function_definition_problem(definition):
            errors.append((code, f"{key}[{j}]: {problem}"))
    return errors


def _function_definition_problem(function: object) -> str | None:
    if not isinstance(function, dict):
        return "the function definition must be an object with a name"
    if not isinstance(function.get("name"), str) or not function["name"]:
        return "the function needs a non-empty string 'name'"
    if not isinstance(function.get("description", ""), str):
        return "the function 'description' must be a string"
    if not isinstance(function.get("parameters", {}), dict):
        return "the function 'parameters' must be a JSON Schema object"
    return None


def _call_errors(where: str, message: dict, role: object, call_ids: set[str]) -> Problems:
    errors: Problems = []
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            detail = f"{where}: only assistant messages may have tool_calls"
            errors.append(("invalid_tool_calls", detail))
        elif not isinstance(tool_calls, list) or not tool_calls:
            detail = f"{where}: tool_calls must be a non-empty list"
            errors.append(("invalid_tool_calls", detail))
        else:
            for j, call in enumerate(tool_calls):
                if problem := _tool_call_problem(call):
                    errors.append(("invalid_tool_calls", f"{where}.tool_calls[{j}]: {problem}"))
                else:
                    call_ids.add(call["id"])

    function_call = message.get("function_call")
    if function_call is not None:
        if role != "assistant":
            detail = f"{where}: only assistant messages may have function_call"
            errors.append(("invalid_function_call", detail))
        elif problem := _function_call_problem(function_call):
            errors.append(("invalid_function_call", f"{where}.function_call: {problem}"))

    if role == "tool":
        call_id = message.get("tool_call_id")
        if call_id is None:
            detail = f"{where}: a tool message needs the 'tool_call_id' of the call it answers"
            errors.append(("message_missing_key", detail))
        elif not isinstance(call_id, str) or call_id not in call_ids:
            detail = f"{where}: tool_call_id {call_id!r} matches no earlier assistant tool call"
            errors.append(("invalid_tool_call_id", detail))
    if role == "function" and not isinstance(message.get("name"), str):
        detail = f"{where}: a function message needs the 'name' of the function it answers"
        errors.append(("message_missing_key", detail))
    return errors


def _tool_call_problem(call: object) -> str | None:
    if not isinstance(call, dict):
        return 'must be an object like {"id": ..., "type": "function", "function": {...}}'
    if not isinstance(call.get("id"), str) or not call["id"]:
        return "needs a non-empty string 'id'"
    if call.get("type") != "function":
        return 'needs "type": "function"'
    return _function_call_problem(call.get("function"))


def _function_call_problem(function_call: object) -> str | None:
    if not isinstance(function_call, dict):
        return 'must be an object like {"name": ..., "arguments": "{...}"}'
    if not isinstance(function_call.get("name"), str) or not function_call["name"]:
        return "needs a non-empty string function 'name'"
    arguments = function_call.get("arguments")
    if not isinstance(arguments, str):
        return 'arguments must be a string holding a JSON object, like "{\\"city\\": \\"Paris\\"}"'
    try:
        decoded = json.loads(arguments)
    except json.JSONDecodeError:
        return "arguments is not valid JSON"
    if not isinstance(decoded, dict):
        return "arguments must encode a JSON object"
    return None


# ---------------------------------------------------------------------------------------------
# Warnings, for valid examples only: things that train, but probably not as intended.


def _example_warnings(example: dict) -> Problems:
    warnings: Problems = []
    messages = example["messages"]
    roles = {message["role"] for message in messages}
    if "system" not in roles:
        detail = "no system message; fine if you will send none at inference, else add yours"
        warnings.append(("missing_system_message", detail))
    if "user" not in roles:
        detail = "no user message; fine if the model should answer without one, else add it"
        warnings.append(("missing_user_message", detail))
    for i, message in enumerate(messages):
        trained = message["role"] == "assistant" and message.get("weight", 1) == 1
        short = len(content_text(message.get("content")).strip()) < SHORT_REPLY_CHARS
        if trained and short and not _makes_call(message):
            detail = (
                f"messages[{i}]: the assistant reply is under {SHORT_REPLY_CHARS} characters;"
                " fine for single-character labels, otherwise check the export"
            )
            warnings.append(("short_assistant_reply", detail))
    return warnings


_JSON_WORD = re.compile(r"\bjson\b", re.IGNORECASE)


def _json_replies(lineno: int, example: dict, state: _FileState) -> Problems:
    """Counts the example's trained replies that are JSON and those that are not; the latter are
    warned about now if the system message asks for JSON, else remembered for the end."""
    asks_for_json = bool(_JSON_WORD.search(_system_prompt(example) or ""))
    warnings: Problems = []
    for i, message in enumerate(example["messages"]):
        if message["role"] != "assistant" or message.get("weight", 1) != 1 or _makes_call(message):
            continue
        reply = content_text(message.get("content")).strip()
        if _is_json_document(reply):
            state.json_replies += 1
            continue
        state.text_replies += 1
        fenced = reply.startswith("```")
        if asks_for_json:
            warnings.append(("invalid_json_reply", _not_json_detail(i, fenced, "the system message asks for JSON")))
        else:
            state.text_reply_lines.append(lineno)
            state.text_reply_indexes.append(i)
            state.text_reply_fenced.append(fenced)
    return warnings


def _json_reply_warnings(state: _FileState) -> list[DataIssue]:
    """The replies that are not JSON in a file whose trained replies mostly are."""
    if state.json_replies <= state.text_replies:
        return []
    total = state.json_replies + state.text_replies
    why = f"{state.json_replies} of the file's {total} trained replies are JSON"
    return [
        _issue(line, "invalid_json_reply", _not_json_detail(index, fenced, why))
        for line, index, fenced in zip(state.text_reply_lines, state.text_reply_indexes, state.text_reply_fenced)
    ]


def _not_json_detail(index: int, fenced: bool, why: str) -> str:
    return (
        f"messages[{index}]: the assistant reply is not a JSON object or array"
        + (" (it is wrapped in a ``` code fence)" if fenced else "")
        + f", but {why}; the fine-tune would learn to break the format. Make it valid JSON, or remove"
        " the example, to silence this warning"
    )


def _is_json_document(text: str) -> bool:
    if not text.startswith(("{", "[")):  # most text replies: no parse attempted
        return False
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


def _identical_system_warning(state: _FileState) -> DataIssue | None:
    if state.examples < 2 or len(state.system_prompts) != 1 or None in state.system_prompts:
        return None
    message = (
        f"All {state.examples} examples share the same system message. If the fine-tuned model "
        "should behave this way without being told, you could drop it from the training data "
        "(and from your requests) to save tokens; otherwise keep it and send it unchanged at"
        " inference."
    )
    return DataIssue(None, "identical_system_message", message)


def chat_messages(example: dict) -> list[dict]:
    """A valid example's conversation before its trained replies: the supervised example's
    messages, a DPO example's input messages."""
    return example["input"]["messages"] if "input" in example else example["messages"]


def _system_prompt(example: dict) -> str | None:
    for message in chat_messages(example):
        if message["role"] == "system":
            return content_text(message["content"])
    return None


def _canonical(example: dict) -> bytes:
    return json.dumps(example, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")
