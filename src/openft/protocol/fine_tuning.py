"""Fine-tuning wire types, after openai-python's `types/fine_tuning/`."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
Auto = Literal["auto"]


class HyperparametersParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | float | None = None
    n_epochs: Auto | int | None = None
    # openft extensions
    qlora: Auto | bool | None = None  # QLoRA (true), never (false), or the memory plan's choice


class SupervisedParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: HyperparametersParam | None = None


class DpoHyperparametersParam(HyperparametersParam):
    beta: Auto | float | None = None


class DpoParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: DpoHyperparametersParam | None = None


class MethodParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo"]
    supervised: SupervisedParam | None = None
    dpo: DpoParam | None = None


class JobCreateParams(BaseModel):
    """Body of POST /v1/fine_tuning/jobs (`job_create_params.py`)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str
    hyperparameters: HyperparametersParam | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    method: MethodParam | None = None
    seed: int | None = Field(default=None, ge=0, le=2147483647)
    suffix: str | None = Field(default=None, max_length=64)
    validation_file: str | None = None

    @property
    def method_type(self) -> str:
        return self.method.type if self.method else "supervised"

    def requested_hyperparameters(self) -> dict[str, Any]:
        chosen = self.hyperparameters
        method = self.method
        if method and method.type == "supervised" and method.supervised and method.supervised.hyperparameters:
            chosen = method.supervised.hyperparameters
        if method and method.type == "dpo":
            chosen = method.dpo.hyperparameters if method.dpo else None
        return chosen.model_dump(exclude_none=True) if chosen else {}


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any] | None  # null on a DPO job, as OpenAI's: see `method`
    model: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    # openft extensions
    user_provided_suffix: str | None = None


class FineTuningJobEvent(BaseModel):
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    step_number: int
