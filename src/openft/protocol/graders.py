"""Grader wire types, field for field after openai-python's `openai.types.graders` (the `*Param`
TypedDicts a client sends) and `openai.types.fine_tuning.alpha` (the two grader endpoints).

`pass_threshold` is the evals variant's field (`eval_create_params.TestingCriterion*`); it is
accepted on every grader with a score, so one shape serves evals, RFT and the endpoints.
`MultiGrader.graders` is a named map of graders, as OpenAI's guides and its maintainers say
(the SDK's single-grader type is a known spec bug, openai/openai-openapi#580); the single
grader that SDK ≤ 3.57 sends is turned into a map of one before these models see it."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class OutputText(_Strict):
    type: Literal["output_text"]
    text: str


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str
    detail: str | None = None


class InputAudioData(_Strict):
    data: str
    format: Literal["mp3", "wav"]


class InputAudio(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudioData


ContentPart = Annotated[InputText | OutputText | InputImage | InputAudio, Field(discriminator="type")]


class InputMessage(_Strict):
    """One message of a model grader's prompt (`EvalItem`); its text may hold templates."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | ContentPart | list[str | ContentPart]
    type: Literal["message"] | None = None


class SamplingParams(_Strict):
    """`score_model.sampling_params`. OpenAI spells the token limit `max_completions_tokens`;
    `max_completion_tokens`, the chat API's spelling, is taken too."""

    max_completions_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: str | None = None
    seed: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)


class StringCheckGrader(_Strict):
    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]
    pass_threshold: float | None = None


class TextSimilarityGrader(_Strict):
    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Literal[
        "cosine",
        "fuzzy_match",
        "bleu",
        "gleu",
        "meteor",
        "rouge_1",
        "rouge_2",
        "rouge_3",
        "rouge_4",
        "rouge_5",
        "rouge_l",
    ]
    pass_threshold: float | None = None


class PythonGrader(_Strict):
    type: Literal["python"]
    name: str
    source: str = Field(max_length=256 * 1024)  # OpenAI's limit: code under 256 kB
    image_tag: str | None = None
    pass_threshold: float | None = None


class ScoreModelGrader(_Strict):
    type: Literal["score_model"]
    name: str
    model: str
    input: list[InputMessage] = Field(min_length=1)
    range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    sampling_params: SamplingParams | None = None
    pass_threshold: float | None = None


class LabelModelGrader(_Strict):
    type: Literal["label_model"]
    name: str
    model: str
    input: list[InputMessage] = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)


SubGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Strict):
    type: Literal["multi"]
    name: str
    graders: dict[str, SubGrader] = Field(min_length=1)
    calculate_output: str
    pass_threshold: float | None = None


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader | MultiGrader,
    Field(discriminator="type"),
]


class GraderValidateParams(BaseModel):
    """Body of POST /v1/fine_tuning/alpha/graders/validate; the grader is checked by
    `openft.graders.parse_grader`, which names the faulty field."""

    grader: dict[str, Any]


class GraderValidateResponse(BaseModel):
    grader: dict[str, Any]


class GraderRunParams(BaseModel):
    """Body of POST /v1/fine_tuning/alpha/graders/run."""

    grader: dict[str, Any]
    model_sample: str
    """Fills `sample.output_text`, and `sample.output_json` when it is valid JSON."""
    item: Any = Field(default_factory=dict)
    """The `item` namespace: the dataset row (an empty one when not given)."""


class GraderRunResponse(BaseModel):
    reward: float
    metadata: dict[str, Any]
    """name, type, errors (every flag), execution_time, scores, token_usage, sampled_model_name."""
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]
