"""`POST /v1/fine_tuning/alpha/graders/validate` and `/run` through the official client on the
session's live server: each grader kind validated and run (score_model and label_model on the
bundled model, greedy, their JSON constrained so it always parses), OpenAI's response shape
with every error flag, and bad graders answered 400 with the faulty field as `param`."""

import json

import openai
import pytest

from openft.graders import ERROR_FLAGS
from openft.settings import BUNDLED_MODEL

ITEM = {"answer": "Paris", "reference": "Paris is the capital of France."}
EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}
SIMILAR = {
    "type": "text_similarity",
    "name": "similar",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference }}",
    "evaluation_metric": "rouge_1",
}
PYTHON = {
    "type": "python",
    "name": "length",
    "source": "def grade(sample, item):\n    return min(len(sample['output_text']) / 10, 1.0)\n",
}
SCORE = {
    "type": "score_model",
    "name": "judge",
    "model": BUNDLED_MODEL,
    "input": [
        {"role": "system", "content": "You grade answers from 0 to 1."},
        {
            "role": "user",
            "content": "Capital of France? Answer: {{ sample.output_text }}. Reference: {{ item.answer }}.",
        },
    ],
    "range": [0, 1],
    "sampling_params": {"temperature": 0, "max_completions_tokens": 120},
}
LABEL = {
    "type": "label_model",
    "name": "labeler",
    "model": BUNDLED_MODEL,
    "input": [
        {"role": "user", "content": "Is '{{ sample.output_text }}' the capital of France? correct or incorrect?"}
    ],
    "labels": ["correct", "incorrect"],
    "passing_labels": ["correct"],
}
MULTI = {
    "type": "multi",
    "name": "blend",
    "graders": {"exact": EXACT, "similar": SIMILAR, "length": PYTHON},
    "calculate_output": "0.5 * exact + 0.25 * similar + 0.25 * length",
}


def errors_set(response) -> dict:
    errors = response.metadata.errors.model_dump(by_alias=True)
    assert {flag for flag in ERROR_FLAGS} <= set(errors)
    return {key: value for key, value in errors.items() if value}


@pytest.mark.parametrize("grader", [EXACT, SIMILAR, PYTHON, SCORE, LABEL, MULTI], ids=lambda g: g["type"])
def test_validate_echoes_each_kind_of_grader(live_server, grader):
    response = live_server.client().fine_tuning.alpha.graders.with_raw_response.validate(grader=grader)
    echoed = json.loads(response.text)["grader"]
    assert echoed["type"] == grader["type"] and echoed["name"] == grader["name"]
    if grader is MULTI:
        assert set(echoed["graders"]) == {"exact", "similar", "length"}  # the named map, not one grader


def test_run_grades_a_sample_with_the_local_graders(live_server):
    graders = live_server.client().fine_tuning.alpha.graders
    exact = graders.run(grader=EXACT, model_sample="Paris", item=ITEM)
    assert exact.reward == 1.0 and errors_set(exact) == {} and exact.metadata.type == "string_check"
    assert exact.metadata.token_usage is None and exact.api_model_grader_token_usage_per_model == {}
    similar = graders.run(grader=SIMILAR, model_sample="Paris", item=ITEM)
    assert similar.reward == pytest.approx(2 * (1 / 1) * (1 / 6) / (1 + 1 / 6))  # rouge-1 F1: 1 of 1, 1 of 6
    blend = graders.run(grader=MULTI, model_sample="Paris", item=ITEM)
    assert blend.sub_rewards == {"exact": 1.0, "similar": similar.reward, "length": 0.5}
    assert blend.reward == pytest.approx(0.5 + 0.25 * similar.reward + 0.25 * 0.5)
    json_path = {**EXACT, "input": "{{ sample.output_json.city }}"}
    assert graders.run(grader=json_path, model_sample='{"city": "Paris"}', item=ITEM).reward == 1.0


def test_run_reports_a_python_graders_failure_and_a_missing_variable(live_server):
    graders = live_server.client().fine_tuning.alpha.graders
    failing = {**PYTHON, "source": "def grade(sample, item):\n    return item['nope']\n"}
    response = graders.run(grader=failing, model_sample="Paris", item=ITEM)
    assert response.reward == 0.0 and response.metadata.errors.python_grader_runtime_error
    assert "KeyError: 'nope'" in response.metadata.errors.python_grader_runtime_error_details
    missing = graders.run(grader={**EXACT, "reference": "{{ item.city }}"}, model_sample="Paris", item=ITEM)
    assert missing.reward == 0.0 and set(errors_set(missing)) == {
        "invalid_variable_error",
        "invalid_variable_error_details",
    }


def test_model_graders_run_on_the_bundled_model(live_server):
    graders = live_server.client().fine_tuning.alpha.graders
    score = graders.run(grader=SCORE, model_sample="Paris", item=ITEM)
    assert errors_set(score) == {}, "the constrained JSON always parses"
    assert 0.0 <= score.reward <= 1.0 and score.metadata.sampled_model_name == BUNDLED_MODEL
    usage = score.api_model_grader_token_usage_per_model[BUNDLED_MODEL]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 120
    assert score.metadata.token_usage == usage["total_tokens"]
    label = graders.run(grader=LABEL, model_sample="Paris", item=ITEM)
    assert errors_set(label) == {} and label.reward in (0.0, 1.0)


def test_a_model_grader_is_checked_against_the_models_the_organization_has(live_server):
    graders = live_server.client().fine_tuning.alpha.graders
    unknown = {**MULTI, "graders": {"judge": {**SCORE, "model": "ft:gpt-4o-mini:someone-else:x:AbCd1234"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        graders.run(grader={**unknown, "calculate_output": "judge"}, model_sample="Paris", item=ITEM)
    assert (caught.value.param, caught.value.code) == ("grader.graders.judge.model", "model_not_found")
    assert graders.validate(grader={**SCORE, "model": "gpt-4o-mini"}).grader.model == "gpt-4o-mini"  # an alias


@pytest.mark.parametrize(
    "grader,param",
    [
        ({"type": "regex", "name": "r"}, "grader.type"),
        ({**EXACT, "operation": "startswith"}, "grader.operation"),
        ({**EXACT, "input": "{{ output_text }}"}, "grader.input"),
        ({**SIMILAR, "evaluation_metric": "cosine"}, "grader.evaluation_metric"),
        ({**PYTHON, "source": "def grade(sample):\n    return 1.0"}, "grader.source"),
        ({**MULTI, "calculate_output": "exact + missing"}, "grader.calculate_output"),
        ({**MULTI, "graders": {"inner": MULTI}}, "grader.graders.inner"),
        ({**LABEL, "passing_labels": ["maybe"]}, "grader.passing_labels"),
    ],
)
def test_a_bad_grader_is_a_400_naming_its_field(live_server, grader, param):
    graders = live_server.client().fine_tuning.alpha.graders
    for call in (lambda: graders.validate(grader=grader), lambda: graders.run(grader=grader, model_sample="x")):
        with pytest.raises(openai.BadRequestError) as raised:
            call()
        assert raised.value.param == param, raised.value.body
