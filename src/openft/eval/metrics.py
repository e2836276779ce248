"""Scores for one arm's answers against the references, and the ranking of the arms.

- `exact_match`: the share of answers equal to the reference, surrounding whitespace ignored.
- `similarity`: the mean of rapidfuzz's normalized Indel similarity (`fuzz.ratio` / 100; 1.0 is
  identical text), which gives partial credit where exact match gives none: "Ahoy matey! Rome"
  against "Ahoy matey! Rome." scores 0.97, a different answer in a different style near 0.2.
- `preferred_rate`: for a DPO held-out file (the reference is its preferred output), the share of
  answers more similar to the preferred output than to the non-preferred one (ties count for
  neither), otherwise None: did the fine-tune move towards what the pairs prefer?
- `json_valid`: the share of answers that parse as JSON, only when every reference is a JSON
  object or array (otherwise None: a plain-text task has no JSON to get right).
- `schema_valid`: the share of answers that are valid against the task's schema (json_schema.py,
  inferred from its JSON replies), on JSON tasks only.
- token means come from the server's usage counts, i.e. the local model's tokenizer, which is
  also what the projected OpenAI cost multiplies; OpenAI's tokenizer counts differently, so the
  cost is an estimate of scale, not a quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from rapidfuzz import fuzz

from openft.data.pricing import InferencePrice
from openft.eval.json_schema import json_document, schema_valid


@dataclass(frozen=True)
class Answer:
    """One request of an arm: what came back, and what it cost."""

    output: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def exact_match(output: str, reference: str) -> bool:
    return output.strip() == reference.strip()


def similarity(output: str, reference: str) -> float:
    return fuzz.ratio(output.strip(), reference.strip()) / 100


def is_json_document(text: str) -> bool:
    return json_document(text) is not None


def references_are_json(references: list[str]) -> bool:
    return bool(references) and all(is_json_document(reference) for reference in references)


def prefers(output: str, preferred: str, rejected: str) -> bool:
    return similarity(output, preferred) > similarity(output, rejected)


def arm_metrics(
    answers: list[Answer],
    references: list[str],
    json_task: bool,
    price: InferencePrice,
    schema: dict | None = None,
    rejected: list[str] | None = None,
    seconds_per_request: float | None = None,
) -> dict:
    """The arm's row of the report (`schema`: the JSON task's, for `schema_valid`; `rejected`: a
    DPO file's non-preferred outputs, for `preferred_rate`; `seconds_per_request`: the arm's
    time over its requests, when they ran together, else each one's latency)."""
    prompt_tokens = fmean(a.prompt_tokens for a in answers)
    completion_tokens = fmean(a.completion_tokens for a in answers)
    latency = fmean(a.seconds for a in answers)
    pairs = list(zip(answers, references, strict=True))
    return {
        "exact_match": fmean(exact_match(a.output, r) for a, r in pairs),
        "similarity": round(fmean(similarity(a.output, r) for a, r in pairs), 4),
        "json_valid": fmean(is_json_document(a.output) for a in answers) if json_task else None,
        "preferred_rate": (
            fmean(prefers(a.output, r, other) for (a, r), other in zip(pairs, rejected, strict=True))
            if rejected is not None
            else None
        ),
        "schema_valid": fmean(schema_valid(a.output, schema) for a in answers) if schema is not None else None,
        "mean_output_tokens": round(completion_tokens, 2),
        "mean_prompt_tokens": round(prompt_tokens, 2),
        "mean_latency_seconds": round(latency, 4),
        "cost_per_1k_requests_usd": price.per_1k_requests_usd(prompt_tokens, completion_tokens),
        # On this machine, as the eval ran them (an eval run: batched).
        "local_seconds_per_1k_requests": round(
            (latency if seconds_per_request is None else seconds_per_request) * 1000, 1
        ),
    }


def ranking(metrics: dict[str, dict]) -> list[str]:
    """Arm names, best first: by exact match, then similarity, then JSON validity where it
    applies. Ties keep the arms' order (base arms first), so a fine-tune must beat, not equal."""

    def key(name: str) -> tuple:
        m = metrics[name]
        return (m["exact_match"], m["similarity"], m["json_valid"] or 0.0)

    return sorted(metrics, key=key, reverse=True)
