"""The pure parts of an Evals API run (`services/evals_api.py`, `services/eval_runner.py`): an
output item's sample and status, and a run's counts."""

from collections import Counter
from typing import Any

USAGE_COUNTS = ("invocation_count", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")


def output_sample(
    messages: list[dict[str, Any]], completion: dict[str, Any] | None, sampling: dict[str, Any], error: dict | None
) -> dict[str, Any]:
    """An output item's `sample`, as OpenAI shows it: the prompt, the reply, its usage and the
    sampling parameters (or the error that kept the row from being answered)."""
    usage = (completion or {}).get("usage") or {}
    choice = (completion or {}).get("choices", [{}])[0]
    reply = choice.get("message")
    return {
        "input": [{"role": m["role"], "content": m.get("content")} for m in messages],
        "output": [{"role": "assistant", "content": reply.get("content"), "tool_calls": reply.get("tool_calls")}]
        if reply
        else [],
        "finish_reason": choice.get("finish_reason"),
        "model": (completion or {}).get("model"),
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "cached_tokens": 0,
        },
        "error": error,
        **sampling,
    }


def item_status(sample_error: dict | None, results: list[dict[str, Any]]) -> str:
    """ "error" when the row was not answered or a criterion could not grade it, else "pass" when
    every criterion passed, else "fail"."""
    if sample_error or any(result.get("error") for result in results):
        return "error"
    return "pass" if all(result["passed"] for result in results) else "fail"


def summarize(items: list[tuple[str, list[dict], dict]], criteria_ids: list[str]) -> dict[str, Any]:
    """A run's `result_counts`, `per_testing_criteria_results` and `per_model_usage`, from its
    output items as (status, results, sample). A model grader's tokens count under its model."""
    statuses = Counter(status for status, _, _ in items)
    passed, failed = Counter(), Counter()
    usage: dict[str, Counter] = {}

    def count_usage(model: str | None, tokens: dict | None) -> None:
        if not model or not tokens:
            return
        totals = usage.setdefault(model, Counter())
        totals["invocation_count"] += 1
        for name in USAGE_COUNTS[1:]:
            totals[name] += tokens.get(name) or 0

    for _, results, sample in items:
        for result in results:
            (passed if result["passed"] else failed)[result["id"]] += 1
            for model, tokens in (result.get("token_usage_per_model") or {}).items():
                count_usage(model, tokens)
        count_usage(sample.get("model"), sample.get("usage") if sample.get("model") else None)
    return {
        "result_counts": {
            "total": len(items),
            "errored": statuses["error"],
            "failed": statuses["fail"],
            "passed": statuses["pass"],
        },
        "per_testing_criteria_results": [
            {"testing_criteria": criterion, "passed": passed[criterion], "failed": failed[criterion]}
            for criterion in criteria_ids
        ],
        "per_model_usage": [
            {"model_name": model, **{name: totals[name] for name in USAGE_COUNTS}} for model, totals in usage.items()
        ],
    }
