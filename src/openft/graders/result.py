"""What grading one sample gives: a reward, OpenAI's run metadata (every error flag), and
pass/fail for evals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# OpenAI's `RunGraderResponse.metadata.errors`, every key always present (SPEC, SDK
# `MetadataErrors`). `python_grader_server_error_details`, `invalid_variable_error_details` and
# `other_error_details` are openft's: why the sandbox could not start, which variable was
# missing, what else went wrong (a formula dividing by zero), which OpenAI's shape has no
# field for.
ERROR_FLAGS = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
)
ERROR_DETAILS = (
    "python_grader_server_error_type",
    "python_grader_server_error_details",
    "python_grader_runtime_error_details",
    "model_grader_server_error_details",
    "invalid_variable_error_details",
    "other_error_details",
)


def no_errors() -> dict[str, Any]:
    return {**dict.fromkeys(ERROR_FLAGS, False), **dict.fromkeys(ERROR_DETAILS)}


@dataclass
class GradeResult:
    """One grader's verdict on one sample.

    `reward` is the grade (0 whenever an error flag is set). `passed` is the eval's pass/fail:
    label_model passes when its label is in `passing_labels`; a grader with a `pass_threshold`
    passes when `reward >= pass_threshold`; string_check with no threshold passes when it
    matched (reward 1). It is None where the grader has no pass rule (python, score_model,
    text_similarity, multi without `pass_threshold`), and False whenever an error flag is set.
    """

    reward: float
    name: str
    type: str
    errors: dict[str, Any] = field(default_factory=no_errors)
    execution_time: float = 0.0
    passed: bool | None = None
    label: str | None = None
    """label_model: the label the model chose (None if it gave none)."""
    scores: dict[str, Any] = field(default_factory=dict)
    """multi: each sub-grader's reward, by its key in `graders`."""
    sub_results: dict[str, GradeResult] = field(default_factory=dict)
    """multi: each sub-grader's whole result, by its key."""
    token_usage_per_model: dict[str, dict[str, int]] = field(default_factory=dict)
    """Model graders (a multi's included): prompt/completion/total/cached tokens by model."""
    sampled_model_name: str | None = None
    model_sample: dict[str, Any] | None = None
    """Model graders: what the grader model was asked and answered
    (`{"input": messages, "output": text, "usage": {...}, "model": name}`), for an eval's
    output item."""

    @property
    def errored(self) -> bool:
        return any(self.errors[flag] for flag in ERROR_FLAGS)

    def metadata(self) -> dict[str, Any]:
        """OpenAI's `RunGraderResponse.metadata`. `token_usage` is the total of the grader's
        model calls (the SDK types it an integer), None for graders that call no model."""
        totals = [usage["total_tokens"] for usage in self.token_usage_per_model.values()]
        return {
            "name": self.name,
            "type": self.type,
            "errors": dict(self.errors),
            "execution_time": self.execution_time,
            "scores": dict(self.scores),
            "token_usage": sum(totals) if totals else None,
            "sampled_model_name": self.sampled_model_name,
        }

    def run_response(self) -> dict[str, Any]:
        """The body of `POST /v1/fine_tuning/alpha/graders/run`."""
        return {
            "reward": self.reward,
            "metadata": self.metadata(),
            "sub_rewards": dict(self.scores),
            "model_grader_token_usage_per_model": {
                model: dict(usage) for model, usage in self.token_usage_per_model.items()
            },
        }
