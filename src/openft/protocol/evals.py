"""Eval wire types: `POST /v1/openft/evals` and the reports it stores. openft's own resource
(OpenAI's Evals API is a different thing), so it lives under /v1/openft/ and its `object` is
"openft.eval"."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SHOTS = 32


class EvalCreateParams(BaseModel):
    """Body of POST /v1/openft/evals."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """The fine-tuned model (`ft:…`, or one of its checkpoints) to evaluate."""
    file: str
    """Id of the uploaded held-out file: chat JSONL whose last message is the reference answer."""
    training_file: str | None = None
    """Id of the file for the system message and few-shot examples; default: the job's training file."""
    shots: int = Field(default=3, ge=0, le=MAX_SHOTS)
    """Training examples shown to the base model in the few-shot arm."""
    max_tokens: int = Field(default=128, ge=1, le=4096)
    """The most tokens each answer may have (every arm, every example)."""


class ArmMetrics(BaseModel):
    exact_match: float
    """Share of answers equal to the reference (surrounding whitespace ignored)."""
    similarity: float
    """Mean rapidfuzz `fuzz.ratio` / 100 against the reference; 1.0 is identical."""
    json_valid: float | None
    """Share of answers that are a JSON object or array; null unless every reference is one."""
    preferred_rate: float | None = None
    """DPO held-out files: share of answers more similar to the preferred output than to the
    non-preferred one; null for a supervised file."""
    schema_valid: float | None = None
    """Share of answers valid against `json_schema`; null unless every reference is JSON."""
    mean_output_tokens: float
    mean_prompt_tokens: float
    mean_latency_seconds: float
    """Per request, on this server, from its call to its reply, with the arm's requests batched."""
    cost_per_1k_requests_usd: float
    """At OpenAI's price for the priced model (base or fine-tuned), with these token means."""
    local_seconds_per_1k_requests: float


class Sample(BaseModel):
    line: int
    """Line of the held-out file."""
    output: str
    exact_match: bool
    similarity: float


class EvalArm(BaseModel):
    name: Literal["base_zero_shot", "base_few_shot", "fine_tuned", "fine_tuned_no_system", "fine_tuned_constrained"]
    title: str
    run_id: str | None = None
    """The arm's run of the report's eval (`api_eval_id`) in the Evals API: its output items are
    the arm's graded replies. Null in reports made before arms were runs."""
    model: str
    system_message: bool
    shots: int
    metrics: ArmMetrics
    samples: list[Sample]


class Price(BaseModel):
    input: float
    output: float


class Prices(BaseModel):
    model: str
    """The OpenAI model family whose prices the costs use."""
    reference: bool
    """True when the evaluated model is not an OpenAI one and `model` is only a reference."""
    usd_per_1m_tokens_base: Price
    usd_per_1m_tokens_fine_tuned: Price


class Reference(BaseModel):
    line: int
    prompt: list[dict]
    """The held-out prompt as the fine-tuned arm sent it."""
    reference: str


class Eval(BaseModel):
    id: str
    """"eval-…"."""
    object: Literal["openft.eval"] = "openft.eval"
    created_at: int
    model: str
    api_eval_id: str | None = None
    """The Evals API eval ("eval_…") whose runs are the arms."""
    base_model: str
    """The model the fine-tune was trained from, as its job named it: the base arms use it."""
    file: str
    training_file: str
    shots: int
    max_tokens: int
    system_message: str | None
    """The training file's system message (held-out examples with their own use theirs)."""
    json_task: bool
    """Every reference is a JSON object or array, so `json_valid` and `schema_valid` are scored."""
    json_schema: dict | None = None
    """A JSON task's schema, inferred from the training replies and the references: what
    `schema_valid` checks and the `fine_tuned_constrained` arm is held to."""
    examples: list[Reference]
    arms: list[EvalArm]
    ranking: list[str]
    """Arm names, best first: by exact match, then similarity, then JSON validity."""
    prices: Prices
