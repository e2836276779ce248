"""Evals API wire types (`/v1/evals`), after openai-python's `types/eval_*.py` and
`types/evals/`. (`protocol/evals.py` is openft's own `openft eval` report.)

Request bodies keep `data_source_config`, `testing_criteria` and `data_source` as JSON: the
service checks them part by part, so that an error names its exact `param`
(`data_source.source.content[3].item`), and the graders module parses each criterion."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openft.protocol.common import Metadata

RunStatus = Literal["queued", "in_progress", "completed", "failed", "canceled"]
# "error": the row could not be sampled, or a criterion could not grade it (openft's reading of
# OpenAI's undocumented third status).
OutputItemStatus = Literal["pass", "fail", "error"]


class EvalCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_source_config: dict[str, Any]
    """`custom` (`item_schema`, `include_sample_schema`), `logs` or `stored_completions` (`metadata`)."""
    testing_criteria: list[dict[str, Any]] = Field(min_length=1)
    """Graders: label_model, string_check, text_similarity, python, score_model."""
    name: str | None = None
    metadata: Metadata | None = None


class EvalUpdateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    metadata: Metadata | None = None


class Eval(BaseModel):
    object: Literal["eval"] = "eval"
    id: str
    """"eval_…"."""
    data_source_config: dict[str, Any]
    """The config with the `schema` of the rows' namespaces (`item`, and `sample` where given)."""
    testing_criteria: list[dict[str, Any]]
    """As created, each with an `id` ("<name>-<uuid>") that run results name."""
    name: str
    created_at: int
    metadata: Metadata | None


class EvalDeleted(BaseModel):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool
    eval_id: str


class RunCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_source: dict[str, Any]
    """`jsonl` (rows with their samples) or `completions` (rows a model answers)."""
    name: str | None = None
    metadata: Metadata | None = None


class ResultCounts(BaseModel):
    total: int
    """Rows graded so far."""
    errored: int
    failed: int
    passed: int


class PerModelUsage(BaseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


class PerTestingCriteriaResult(BaseModel):
    testing_criteria: str
    """The criterion's id."""
    passed: int
    failed: int


class EvalAPIError(BaseModel):
    code: str
    message: str


class EvalRun(BaseModel):
    object: Literal["eval.run"] = "eval.run"
    id: str
    """"evalrun_…"."""
    eval_id: str
    status: RunStatus
    model: str | None
    """The model a `completions` source samples; null for `jsonl`."""
    name: str
    created_at: int
    report_url: str
    """The run's page on the dashboard."""
    result_counts: ResultCounts
    per_model_usage: list[PerModelUsage]
    per_testing_criteria_results: list[PerTestingCriteriaResult]
    data_source: dict[str, Any]
    metadata: Metadata | None
    error: EvalAPIError | None


class EvalRunDeleted(BaseModel):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool
    run_id: str


class OutputItem(BaseModel):
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    id: str
    """"outputitem_…"."""
    run_id: str
    eval_id: str
    created_at: int
    status: OutputItemStatus
    datasource_item_id: int
    """The row's index in the run's data source."""
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    """One per criterion: `name`, `type`, `score`, `passed`; openft adds `id` (the criterion's),
    `error` (the error flag set, if any) and `metadata` (the grader's, every error flag)."""
    sample: dict[str, Any]
    """What was graded: `input`, `output`, `finish_reason`, `model`, `usage`, `error`, the sampling parameters."""
