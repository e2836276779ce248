"""The graders in process (openft.graders): each kind's grade against a direct computation with
the library or rule it stands for, templates and their missing variables, the formula parser's
edge cases, every malformed grader a 400 naming its field, model graders through a
ModelCaller, and the Python grader's sandbox against escapes (the data on disk, the network, a
fork bomb, 10 GB, an endless loop)."""

import asyncio
import json
import math
import os
import socket

import pytest
from nltk.tokenize import NLTKWordTokenizer
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from rapidfuzz import fuzz, utils
from rouge_score.rouge_scorer import RougeScorer

from openft.errors import OpenFTError
from openft.graders import ERROR_FLAGS, SandboxLimits, grade, make_sample, parse_grader, similarity
from openft.graders.model_graders import ModelRefusal

ITEM = {"answer": "Paris", "nested": {"list": [{"x": 3}]}, "reference": "the cat sat on the mat and it slept all day"}
SHORT = SandboxLimits(seconds=2, idle_seconds=30)


async def no_model(*_):
    raise AssertionError("this grader calls no model")


def run(grader, sample, item=ITEM, models=no_model):
    return asyncio.run(grade(grader, sample, item, models))


def string_check(input, reference, operation="eq", **extra):
    return {
        "type": "string_check",
        "name": "s",
        "input": input,
        "reference": reference,
        "operation": operation,
        **extra,
    }


def bad(spec, param, fragment=""):
    with pytest.raises(OpenFTError) as raised:
        parse_grader(spec)
    assert raised.value.status == 400 and raised.value.param == param, raised.value.body()
    assert fragment in raised.value.message
    return raised.value


# ---- string_check and templates


@pytest.mark.parametrize(
    "operation,text,reference,expected",
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "paris", "Paris", 0.0),
        ("ne", "paris", "Paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "It is Paris.", "Paris", 1.0),
        ("like", "It is paris.", "Paris", 0.0),
        ("ilike", "It is PARIS.", "paris", 1.0),
        ("ilike", "It is Rome.", "paris", 0.0),
    ],
)
def test_string_check_operations(operation, text, reference, expected):
    grader = parse_grader(string_check("{{ sample.output_text }}", reference, operation))
    result = run(grader, make_sample(text))
    assert result.reward == expected
    assert result.passed is (expected == 1.0)
    assert set(ERROR_FLAGS) <= set(result.errors) and not result.errored


def test_templates_reach_json_tools_and_nested_items():
    tools = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city": "Paris"}'}}]
    sample = make_sample('{"a": {"b": "Paris"}}', tool_calls=tools)
    for path in ("sample.output_json.a.b", "item.answer", 'item["answer"]'):
        assert run(parse_grader(string_check(f"{{{{ {path} }}}}", "Paris")), sample).reward == 1.0, path
    arguments = parse_grader(string_check("{{sample.output_tools[0].function.arguments}}", '{"city": "Paris"}'))
    assert run(arguments, sample).reward == 1.0
    numbers = parse_grader(string_check("x={{ item.nested.list[0].x }}", "x=3"))
    assert run(numbers, sample).reward == 1.0
    objects = parse_grader(string_check("{{ item.nested }}", json.dumps(ITEM["nested"])))
    assert run(objects, sample).reward == 1.0


@pytest.mark.parametrize(
    "path", ["item.missing", "item.nested.list[5].x", "sample.output_json.a", "sample.output_tools[0].function"]
)
def test_a_missing_variable_is_an_invalid_variable_error_with_grade_0(path):
    result = run(parse_grader(string_check(f"{{{{ {path} }}}}", "x", "ne")), make_sample("not json"))
    assert result.reward == 0.0 and result.passed is False
    assert result.errors["invalid_variable_error"] and path in result.errors["invalid_variable_error_details"]
    assert not any(result.errors[flag] for flag in ERROR_FLAGS if flag != "invalid_variable_error")


# ---- text_similarity against the libraries


def words(text):
    return NLTKWordTokenizer().tokenize(text)


TEXT, REFERENCE = "the cat sat on the mat, then it slept", "the cat sat on the mat and it slept all day"
EXPECTED = {
    "fuzzy_match": fuzz.WRatio(TEXT, REFERENCE, processor=utils.default_process) / 100,
    "bleu": sentence_bleu([words(REFERENCE)], words(TEXT), smoothing_function=SmoothingFunction().method1),
    "gleu": sentence_gleu([words(REFERENCE)], words(TEXT)),
    **{
        f"rouge_{n}": RougeScorer([f"rouge{n}"]).score(REFERENCE, TEXT)[f"rouge{n}"].fmeasure
        for n in ("1", "2", "3", "4", "5", "L")
    },
}


@pytest.mark.parametrize("metric", sorted(EXPECTED))
def test_text_similarity_equals_the_library(metric):
    spec = {
        "type": "text_similarity",
        "name": "t",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.reference }}",
        "evaluation_metric": metric.lower(),
        "pass_threshold": 0.5,
    }
    result = run(parse_grader(spec), make_sample(TEXT))
    assert result.reward == pytest.approx(EXPECTED[metric], abs=1e-12)
    assert 0 < result.reward < 1 and result.passed is (result.reward >= 0.5)


def test_meteor_uses_wordnet_or_is_refused():
    spec = {
        "type": "text_similarity",
        "name": "m",
        "input": TEXT,
        "reference": REFERENCE,
        "evaluation_metric": "meteor",
    }
    if similarity.unavailable("meteor"):
        bad(spec, "grader.evaluation_metric", "WordNet")
        return
    from nltk.translate.meteor_score import single_meteor_score

    expected = single_meteor_score(words(REFERENCE), words(TEXT), wordnet=similarity._wordnet())
    assert run(parse_grader(spec), make_sample("")).reward == pytest.approx(expected)


def test_cosine_is_refused_with_a_reason():
    spec = {"type": "text_similarity", "name": "c", "input": "a", "reference": "b", "evaluation_metric": "cosine"}
    bad(spec, "grader.evaluation_metric", "embedding model")


# ---- multi and its formula


def multi(formula, graders=None):
    graders = graders or {
        "exact": string_check("{{ sample.output_text }}", "{{ item.answer }}"),
        "close": string_check("{{ sample.output_text }}", "par", "ilike"),
    }
    return {"type": "multi", "name": "m", "graders": graders, "calculate_output": formula}


@pytest.mark.parametrize(
    "formula,expected",
    [
        ("exact + close * 2", 1 + 2),  # * before +
        ("(exact + close) * 2", 4),
        ("2 ^ 3 ^ 2", 512),  # ^ to the right
        ("-2 ^ 2", -4),  # ^ before unary minus
        ("2 * 3 ^ 2", 18),  # ^ before *
        ("8 / 2 / 2", 2),  # / to the left
        ("0.5 * exact + 0.5 * close", 1),
        ("min(exact, 0.3, close) + max(2, 3)", 3.3),
        ("abs(-1.5) + floor(2.7) + ceil(2.1)", 6.5),
        ("exp(0) + sqrt(16) + log(1)", 5),
        ("1e-1 * 10", 1),
    ],
)
def test_the_formula_computes_as_arithmetic_does(formula, expected):
    result = run(parse_grader(multi(formula)), make_sample("Paris"))
    assert result.reward == pytest.approx(expected) and not result.errored
    assert result.scores == {"exact": 1.0, "close": 1.0}
    assert result.run_response()["sub_rewards"] == {"exact": 1.0, "close": 1.0}


@pytest.mark.parametrize(
    "formula,fragment",
    [
        ("exact + unknown", "`unknown`, which is not a grader key"),
        ("pow(exact, 2)", "`pow`, which is not one of"),
        ("exact ** 2", "`^`, not `**`"),
        ("exact +", "not a formula"),
        ("exact.real", "not allowed"),
        ("exact if close else 1", "not allowed"),
        ("__import__('os')", "not one of"),
        ("'a' + exact", "not allowed"),
        ("sqrt(exact, close)", "takes 1 argument"),
        ("max()", "one or more arguments"),
        ("(" * 300 + "exact" + ")" * 300, ""),
    ],
)
def test_a_bad_formula_is_a_400_on_calculate_output(formula, fragment):
    bad(multi(formula), "grader.calculate_output", fragment)


@pytest.mark.parametrize("formula", ["exact / (close - 1)", "sqrt(close - 2)", "log(close - 1)", "exp(1000 * exact)"])
def test_a_formula_that_cannot_be_computed_is_an_other_error_with_grade_0(formula):
    result = run(parse_grader(multi(formula)), make_sample("Paris"))
    assert result.reward == 0.0 and result.errors["other_error"] and result.passed is False
    assert formula in result.errors["other_error_details"]


def test_multi_takes_the_single_grader_older_sdks_send():
    grader = parse_grader(multi("exact * 3", string_check("{{ sample.output_text }}", "Paris") | {"name": "exact"}))
    assert list(grader.graders) == ["exact"]
    assert run(grader, make_sample("Paris")).reward == 3.0


def test_a_sub_graders_error_zeroes_the_multi():
    graders = {"exact": string_check("{{ item.nope }}", "Paris"), "close": string_check("a", "a")}
    result = run(parse_grader(multi("exact + close", graders)), make_sample("Paris"))
    assert result.reward == 0.0 and result.errors["invalid_variable_error"]
    assert result.scores == {"exact": 0.0, "close": 1.0}


# ---- malformed graders


@pytest.mark.parametrize(
    "spec,param,fragment",
    [
        ({"type": "regex", "name": "r"}, "grader.type", "Supported values are"),
        ({"name": "r"}, "grader.type", ""),
        (string_check("a", "b") | {"extra": 1}, "grader.extra", "Unknown parameter"),
        ({k: v for k, v in string_check("a", "b").items() if k != "reference"}, "grader.reference", "Missing"),
        (string_check("a", "b", "startswith"), "grader.operation", ""),
        (string_check("{{ output_text }}", "b"), "grader.input", "namespace"),
        (string_check("a", "{{ item.x | upper }}"), "grader.reference", "not a path"),
        (string_check("{{ item.x ", "b"), "grader.input", "closing"),
        (multi("a", {"a": multi("1")}), "grader.graders.a", "cannot contain another multi"),
        (multi("a", {"a": string_check("{{ x }}", "b")}), "grader.graders.a.input", "namespace"),
        ({"type": "python", "name": "p", "source": "def grade(sample):\n    return 1.0"}, "grader.source", "two"),
        ({"type": "python", "name": "p", "source": "def other(a, b): pass"}, "grader.source", "def grade"),
        ({"type": "python", "name": "p", "source": "def grade(a, b) return 1"}, "grader.source", "not valid Python"),
        (
            {
                "type": "score_model",
                "name": "s",
                "model": "m",
                "input": [{"role": "user", "content": "hi"}],
                "range": [1, 0],
            },
            "grader.range",
            "min < max",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "input": [{"role": "robot", "content": "x"}]},
            "grader.input[0].role",
            "",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "input": [{"role": "user", "content": [{"type": "x"}]}]},
            "grader.input[0].content[0].type",
            "Supported values are",
        ),
        (
            {"type": "score_model", "name": "s", "model": "m", "input": [{"role": "user", "content": "{{ a.b }}"}]},
            "grader.input[0].content",
            "namespace",
        ),
        (
            {
                "type": "label_model",
                "name": "l",
                "model": "m",
                "input": [{"role": "user", "content": "x"}],
                "labels": ["a", "b"],
                "passing_labels": ["c"],
            },
            "grader.passing_labels",
            "subset",
        ),
    ],
)
def test_a_malformed_grader_is_a_400_naming_its_field(spec, param, fragment):
    bad(spec, param, fragment)


def test_a_grader_that_is_not_an_object_is_a_400():
    bad("string_check", "grader")


# ---- model graders through a ModelCaller


class Model:
    """A ModelCaller that answers `reply` and records what it was asked."""

    def __init__(self, reply=None, error=None):
        self.reply, self.error, self.calls = reply, error, []

    async def __call__(self, model, messages, response_format, sampling):
        self.calls.append((model, messages, response_format, sampling))
        if self.error:
            raise self.error
        return self.reply, {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


SCORE = {
    "type": "score_model",
    "name": "judge",
    "model": "judge-model",
    "input": [
        {"role": "system", "content": "Score the answer."},
        {"role": "user", "content": [{"type": "input_text", "text": "{{ sample.output_text }} vs {{ item.answer }}"}]},
    ],
    "range": [0, 10],
    "sampling_params": {"temperature": 0, "max_completions_tokens": 50},
    "pass_threshold": 5,
}
LABEL = {
    "type": "label_model",
    "name": "labeler",
    "model": "judge-model",
    "input": [{"role": "user", "content": "Is {{ sample.output_text }} right?"}],
    "labels": ["right", "wrong"],
    "passing_labels": ["right"],
}


@pytest.mark.parametrize("answered,reward", [(7.5, 7.5), (42, 10.0), (-3, 0.0)])
def test_score_model_clips_its_score_to_the_range(answered, reward):
    model = Model(json.dumps({"steps": [], "result": answered}))
    result = run(parse_grader(SCORE), make_sample("Paris"), models=model)
    assert result.reward == reward and result.passed is (reward >= 5)
    ((name, messages, response_format, sampling),) = model.calls
    assert name == "judge-model" and sampling == {"temperature": 0, "max_completion_tokens": 50}
    assert messages[1] == {"role": "user", "content": [{"type": "text", "text": "Paris vs Paris"}]}
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["required"] == ["steps", "result"]
    metadata = result.metadata()
    assert metadata["token_usage"] == 25 and metadata["sampled_model_name"] == "judge-model"
    usage = result.run_response()["model_grader_token_usage_per_model"]["judge-model"]
    assert usage == {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25, "cached_tokens": 0}


@pytest.mark.parametrize(
    "model,flag",
    [
        (Model("not json"), "model_grader_parse_error"),
        (Model('{"steps": [], "result": "high"}'), "model_grader_parse_error"),
        (Model(error=ModelRefusal("no")), "model_grader_refusal_error"),
        (Model(error=OpenFTError(404, "The model `judge-model` does not exist")), "model_grader_server_error"),
    ],
)
def test_a_model_graders_failures_are_flags_with_grade_0(model, flag):
    result = run(parse_grader(SCORE), make_sample("Paris"), models=model)
    assert result.reward == 0.0 and result.errors[flag] and result.passed is False
    if flag == "model_grader_server_error":
        assert "does not exist" in result.errors["model_grader_server_error_details"]


def test_label_model_passes_on_a_passing_label():
    for label, passed in (("right", True), ("wrong", False)):
        model = Model(json.dumps({"steps": [{"description": "d", "conclusion": "c"}], "result": label}))
        result = run(parse_grader(LABEL), make_sample("Paris"), models=model)
        assert (result.label, result.passed, result.reward) == (label, passed, float(passed))
        assert model.calls[0][2]["json_schema"]["schema"]["properties"]["result"]["enum"] == ["right", "wrong"]
    result = run(parse_grader(LABEL), make_sample("Paris"), models=Model('{"steps": [], "result": "maybe"}'))
    assert result.errors["model_grader_parse_error"] and result.label is None


def test_multi_sums_the_token_usage_of_its_model_graders():
    spec = multi("judge / 10 + labeler", {"judge": SCORE, "labeler": LABEL})
    model = Model(json.dumps({"steps": [], "result": 8}))
    result = run(parse_grader(spec), make_sample("Paris"), models=model)
    assert result.errors["model_grader_parse_error"]  # 8 is not a label
    model.reply = None
    replies = iter([json.dumps({"steps": [], "result": 8}), json.dumps({"steps": [], "result": "right"})])

    async def answer(model, messages, response_format, sampling):
        result = json.dumps({"steps": [], "result": "right"}) if "enum" in str(response_format) else next(replies)
        return result, {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}

    result = run(parse_grader(spec), make_sample("Paris"), models=answer)
    assert result.reward == pytest.approx(1.8) and result.metadata()["token_usage"] == 50
    assert result.token_usage_per_model["judge-model"]["prompt_tokens"] == 40


# ---- the Python grader's sandbox


def python(source, limits=SHORT):
    return parse_grader({"type": "python", "name": "p", "source": source}, limits=limits)


def test_a_python_grader_grades_in_one_warm_process():
    grader = python(
        "import numpy as np\ncalls = 0\n"
        "def grade(sample, item):\n"
        "    global calls\n    calls += 1\n"
        "    return float(np.float64(len(sample['output_text']))) + item['n'] + calls / 100\n"
    )
    try:
        rewards = [run(grader, make_sample("abc"), {"n": n}).reward for n in range(3)]
    finally:
        grader.close()
    assert rewards == [3.01, 4.02, 5.03]  # the module's state lives on: one process for the three


@pytest.mark.parametrize(
    "body,details",
    [
        ("raise ValueError('bad answer')", "ValueError: bad answer"),
        ("return 'high'", "not a float"),
        ("return True", "not a float"),
        ("return float('inf')", "not a finite float"),
        ("return 10 ** 400", "not a finite float"),
        ("import os\n    os._exit(3)", "died"),
    ],
)
def test_a_python_graders_failures_are_runtime_errors_with_grade_0(body, details):
    grader = python(f"def grade(sample, item):\n    {body}\n")
    try:
        result = run(grader, make_sample("x"))
    finally:
        grader.close()
    assert result.reward == 0.0 and result.errors["python_grader_runtime_error"] and result.passed is False
    assert details in result.errors["python_grader_runtime_error_details"]


@pytest.fixture
def secret(tmp_path):
    """A world-readable file, as a data directory's files are: only the sandbox hides it."""
    path = tmp_path / "openft.db"
    path.write_text("other organizations' data")
    os.chmod(path, 0o644)
    for folder in (tmp_path, *tmp_path.parents):
        folder.chmod(folder.stat().st_mode | 0o005)
    return path


ESCAPES = {
    "read the store": ("return float(len(open(item['path']).read()))", "FileNotFoundError"),
    "see the host's folders": ("import os\n    return float(len(set(os.listdir('/')) - set(item['root'])))", ""),
    "open a socket": (
        "import socket\n    socket.create_connection(('127.0.0.1', item['port']), timeout=1)\n    return 1.0",
        "OSError",
    ),
    "fork bomb": ("import os\n    while True:\n        os.fork()", "BlockingIOError"),
    "allocate 10 GB": ("x = bytearray(10 * 2**30)\n    return 1.0", "MemoryError"),
    "loop forever": ("while True:\n        pass", "did not return within 2 seconds"),
    "import the server": ("import openft\n    return 1.0", "No module named 'openft'"),
    "import torch": ("import torch\n    return 1.0", "No module named 'torch'"),
}


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_a_python_grader_cannot_escape_its_sandbox(escape, secret):
    body, details = ESCAPES[escape]
    listener = socket.create_server(("127.0.0.1", 0))
    grader = python(f"def grade(sample, item):\n    {body}\n")
    try:
        root = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "dev", "proc", "tmp", "packages", "root"]
        item = {"path": str(secret), "port": listener.getsockname()[1], "root": root}
        result = run(grader, make_sample("x"), item)
        after = run(python("def grade(sample, item):\n    return 0.5\n"), make_sample("x"))
    finally:
        grader.close()
        listener.close()
    assert result.reward == 0.0, result.errors
    if details:
        assert (
            result.errors["python_grader_runtime_error"]
            and details in result.errors["python_grader_runtime_error_details"]
        )
    assert after.reward == 0.5  # and the host goes on grading


def test_a_host_without_the_sandbox_is_a_server_error_not_an_unsandboxed_run(monkeypatch):
    monkeypatch.setattr("openft.graders.sandbox.shutil.which", lambda name: None)
    grader = python("def grade(sample, item):\n    return 1.0\n")
    result = run(grader, make_sample("x"))
    assert result.reward == 0.0 and result.errors["python_grader_server_error"]
    assert result.errors["python_grader_server_error_type"] == "sandbox_unavailable"
    assert "unshare" in result.errors["python_grader_server_error_details"]


def test_a_python_grader_works_again_after_a_timeout():
    grader = python("import time\ndef grade(sample, item):\n    time.sleep(item['sleep'])\n    return 1.0\n")
    try:
        first = run(grader, make_sample("x"), {"sleep": 60})
        second = run(grader, make_sample("x"), {"sleep": 0})
    finally:
        grader.close()
    assert first.errors["python_grader_runtime_error"] and second.reward == 1.0
    assert math.isclose(first.execution_time, 2, abs_tol=1.5)
