"""The eval's pure parts: the messages each arm sends, the scores, the ranking, the price."""

import pytest

from openft.data.pricing import InferencePrice, inference_price
from openft.eval.arms import ARMS, NoReference, arm_messages, few_shot_turns, held_out_examples, training_system_message
from openft.eval.json_schema import inferred_schema, schema_valid
from openft.eval.metrics import Answer, arm_metrics, exact_match, ranking, references_are_json, similarity

SYSTEM = {"role": "system", "content": "You are a pirate."}
ARM = {arm.name: arm for arm in ARMS}


def chat(question: str, answer: str, system: dict | None = SYSTEM) -> dict:
    messages = [system] if system else []
    return {"messages": messages + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


TRAINING = [
    chat("Q1?", "Ahoy! A1."),
    {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "Q2?"},
            {"role": "assistant", "content": "Ahoy! A2.", "weight": 1},
        ]
    },
    chat("Q3?", "Ahoy! A3.", system={"role": "system", "content": "Rare."}),
]


def test_each_arm_sends_its_own_prompt():
    [example] = held_out_examples([chat("Held out?", "Ahoy! Yes.", system=None)], [7])
    assert (example.line, example.system, example.reference) == (7, None, "Ahoy! Yes.")
    system = training_system_message(TRAINING)
    shots = few_shot_turns(TRAINING, 2)
    user = {"role": "user", "content": "Held out?"}
    assert arm_messages(ARM["base_zero_shot"], example, system, shots) == [SYSTEM, user]
    assert arm_messages(ARM["base_few_shot"], example, system, shots) == [
        SYSTEM,
        {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "Ahoy! A1."},
        {"role": "user", "content": "Q2?"},
        {"role": "assistant", "content": "Ahoy! A2."},  # no `weight`
        user,
    ]
    assert arm_messages(ARM["fine_tuned"], example, system, shots) == [SYSTEM, user]
    assert arm_messages(ARM["fine_tuned_no_system"], example, system, shots) == [user]
    assert arm_messages(ARM["fine_tuned_constrained"], example, system, shots) == [SYSTEM, user]
    assert [(arm.fine_tuned, arm.system_message, arm.few_shot, arm.constrained) for arm in ARMS] == [
        (False, True, False, False),
        (False, True, True, False),
        (True, True, False, False),
        (True, False, False, False),
        (True, True, False, True),  # on JSON tasks only
    ]


def test_a_held_out_examples_own_system_message_wins_and_multi_turn_prompts_stay_whole():
    own = {"role": "system", "content": "Be brief."}
    example = {
        "messages": [
            own,
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Yo"},
            {"role": "user", "content": [{"type": "text", "text": "Again"}]},
            {"role": "assistant", "content": "Yo again"},
        ]
    }
    [held] = held_out_examples([example], [1])
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
        {"role": "user", "content": "Again"},
    ]
    assert arm_messages(ARM["fine_tuned"], held, "Training system.", []) == [own] + turns
    assert arm_messages(ARM["fine_tuned_no_system"], held, "Training system.", []) == turns
    assert held.reference == "Yo again"


def test_the_training_system_message_is_the_most_common_one():
    assert training_system_message(TRAINING) == "You are a pirate."
    assert training_system_message([chat("q", "a", system=None)]) is None
    assert few_shot_turns(TRAINING, 0) == []


def test_an_example_without_a_reference_is_named_by_line():
    no_answer = {"messages": [{"role": "user", "content": "Hi"}]}
    with pytest.raises(NoReference, match="Line 4: the last message must be the assistant's reference"):
        held_out_examples([chat("q", "a"), no_answer], [2, 4])


def test_scores():
    assert exact_match(" Ahoy! Rome.\n", "Ahoy! Rome.") and not exact_match("Ahoy! rome.", "Ahoy! Rome.")
    assert similarity("Ahoy! Rome.", "Ahoy! Rome.") == 1.0
    assert 0.9 < similarity("Ahoy! Rome", "Ahoy! Rome.") < 1.0
    assert similarity("The capital of Italy is Rome.", "Ahoy! Rome.") < 0.6
    assert similarity("", "Ahoy!") == 0.0
    assert references_are_json(['{"a": 1}', "[1, 2]"])
    assert not references_are_json(['{"a": 1}', "4"]) and not references_are_json([])


def test_arm_metrics_average_the_answers_and_price_them():
    price = InferencePrice("gpt-3.5-turbo", input=3.0, output=6.0)
    answers = [Answer('{"a": 1}', 100, 10, 0.5), Answer("not json", 300, 30, 1.5)]
    metrics = arm_metrics(answers, ['{"a": 1}', '{"a": 2}'], json_task=True, price=price)
    assert metrics["exact_match"] == 0.5 and metrics["json_valid"] == 0.5
    assert metrics["mean_prompt_tokens"] == 200 and metrics["mean_output_tokens"] == 20
    assert metrics["mean_latency_seconds"] == 1.0 and metrics["local_seconds_per_1k_requests"] == 1000
    # 1,000 requests x (200 tokens x $3 + 20 tokens x $6) per 1M tokens
    assert metrics["cost_per_1k_requests_usd"] == pytest.approx(0.72)
    assert arm_metrics(answers, ["x", "y"], json_task=False, price=price)["json_valid"] is None


def test_a_json_task_schema_is_inferred_closed_and_checked():
    schema = inferred_schema(['{"a": 1, "b": {"c": "x"}}', '{"a": 2.5, "b": {"c": "y"}, "d": null}', "prose"])
    assert schema["properties"]["a"] == {"type": "number"} and sorted(schema["required"]) == ["a", "b"]
    assert schema["additionalProperties"] is False and schema["properties"]["b"]["additionalProperties"] is False
    assert schema_valid('{"a": 3, "b": {"c": "z"}}', schema)
    assert not schema_valid('{"a": 3, "b": {"c": "z", "e": 1}}', schema) and not schema_valid("prose", schema)
    assert inferred_schema(["prose", "4"]) is None
    price = InferencePrice("gpt-3.5-turbo", input=3.0, output=6.0)
    answers = [Answer('{"a": 1, "b": {"c": "x"}}', 1, 1, 0.1), Answer('{"a": 1}', 1, 1, 0.1)]
    assert arm_metrics(answers, ["{}", "{}"], json_task=True, price=price, schema=schema)["schema_valid"] == 0.5
    assert arm_metrics(answers, ["{}", "{}"], json_task=True, price=price)["schema_valid"] is None


def test_fine_tunes_cost_more_per_token_at_openai():
    base, tuned = inference_price("gpt-3.5-turbo-0125", False), inference_price("ft:gpt-3.5-turbo:org::x", True)
    assert base.model == tuned.model == "gpt-3.5-turbo"
    assert tuned.input > base.input and tuned.output > base.output
    assert inference_price("gpt-4o-mini-2024-07-18", True).model == "gpt-4o-mini"
    assert inference_price("SmolLM2-135M-Instruct", False) is None


def test_ranking_is_best_first_and_a_tie_does_not_promote_the_fine_tune():
    def m(exact, sim):
        return {"exact_match": exact, "similarity": sim, "json_valid": None}

    assert ranking({"base_zero_shot": m(0, 0.2), "fine_tuned": m(0.5, 0.9), "base_few_shot": m(0, 0.4)}) == [
        "fine_tuned",
        "base_few_shot",
        "base_zero_shot",
    ]
    assert ranking({"base_zero_shot": m(1, 1), "fine_tuned": m(1, 1)}) == ["base_zero_shot", "fine_tuned"]
