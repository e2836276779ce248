"""SQLAlchemy 2 tables. Routes never return these rows: services turn them into wire types (openft/protocol)."""

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from openft.protocol.exports import ExportStatus
from openft.protocol.fine_tuning import JobStatus


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class FileRow(Base):
    __tablename__ = "files"

    # `seq` orders lists stably: created_at has one-second resolution, like OpenAI's.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(String)
    bytes: Mapped[int] = mapped_column(BigInteger)  # int4 on PostgreSQL would stop at 2 GiB
    created_at: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String)
    purpose: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    status_details: Mapped[str | None] = mapped_column(Text, default=None)
    # Where the storage keeps it, for people: a path on the data dir's host, or a URL under
    # OPENFT_STORAGE_URL. Code reads the bytes by key (`services.files.file_key`), never by this.
    location: Mapped[str] = mapped_column(String)
    sha256: Mapped[str | None] = mapped_column(String, default=None)


class JobRow(Base):
    __tablename__ = "jobs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(Integer)
    # `model` is what the client asked for (it names the fine-tune); `base_model` what trains.
    model: Mapped[str] = mapped_column(String)
    base_model: Mapped[str] = mapped_column(String)
    # String, not the Literal's Enum: the column stays as the migrations made it.
    status: Mapped[JobStatus] = mapped_column(String, index=True)
    training_file: Mapped[str] = mapped_column(String)
    validation_file: Mapped[str | None] = mapped_column(String, default=None)
    suffix: Mapped[str | None] = mapped_column(String, default=None)
    seed: Mapped[int] = mapped_column(Integer)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # "supervised" or "dpo": what the training file holds and the trainer optimises
    method: Mapped[str] = mapped_column(String, default="supervised", server_default="supervised")
    result_files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Named at creation so the last checkpoint can carry the final name; shown once succeeded.
    planned_model_name: Mapped[str] = mapped_column(String)
    fine_tuned_model: Mapped[str | None] = mapped_column(String, default=None)
    finished_at: Mapped[int | None] = mapped_column(Integer, default=None)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    estimated_finish: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    # The queue: a worker owns a running job while its lease is fresh.
    lease_owner: Mapped[str | None] = mapped_column(String, default=None)
    lease_expires_at: Mapped[float | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # An `ft:` model's adapter (its key in the artifact storage) that the job goes on training.
    initial_adapter_key: Mapped[str | None] = mapped_column(String, default=None)
    # What its memory plan needs (trainer/plan.py), counted at creation: the training file's
    # examples (which give an "auto" batch size) and a bound on its longest example's tokens.
    n_examples: Mapped[int | None] = mapped_column(Integer, default=None)
    example_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    # The plan the worker that runs it carries out (`Plan.to_dict()`).
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class WorkerRow(Base):
    """A worker alive, or lately so: the device it trains on, as it advertises it (its memory
    capped by OPENFT_WORKER_MEMORY_GIB), and when it last said so. Jobs are planned against it."""

    __tablename__ = "workers"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "worker-…"
    host: Mapped[str] = mapped_column(String)
    device: Mapped[str] = mapped_column(String)  # "cpu" or "cuda"
    device_name: Mapped[str] = mapped_column(String)
    memory: Mapped[int] = mapped_column(BigInteger)  # bytes a job may use: RAM, or one GPU's memory
    dtype: Mapped[str] = mapped_column(String)  # the base's compute dtype there
    qlora: Mapped[bool] = mapped_column(Boolean)  # CUDA with bitsandbytes
    started_at: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[float] = mapped_column(index=True)


class EventRow(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String)
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


class ModelRow(Base):
    """A servable model: a base in the model store (`id == base_model`), an alias of one (another
    name for `base_model`, no adapter), or a LoRA adapter on one."""

    __tablename__ = "models"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)
    created: Mapped[int] = mapped_column(Integer)
    owned_by: Mapped[str] = mapped_column(String)
    base_model: Mapped[str] = mapped_column(String)
    # The adapter's key in the artifact storage (storage.py); the column keeps its first name.
    adapter_key: Mapped[str | None] = mapped_column("adapter_path", String, default=None)
    job_id: Mapped[str | None] = mapped_column(String, default=None)
    # The fine-tune's owner; None for base models, which every organization sees.
    organization_id: Mapped[str | None] = mapped_column(String, default=None, index=True)
    # A base's facts, checked when it was added (models/checks.py); null on aliases and fine-tunes.
    source: Mapped[str | None] = mapped_column(String, default=None)  # a folder, a .gguf file or a hub id
    architecture: Mapped[str | None] = mapped_column(String, default=None)  # "LlamaForCausalLM"
    parameters: Mapped[int | None] = mapped_column(BigInteger, default=None)
    context_length: Mapped[int | None] = mapped_column(Integer, default=None)
    dtype: Mapped[str | None] = mapped_column(String, default=None)  # of the stored weights
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)  # the folder on disk
    digest: Mapped[str | None] = mapped_column(String, default=None)  # sha256 of the weights
    trust_remote_code: Mapped[bool | None] = mapped_column(Boolean, default=None)


class OrganizationRow(Base):
    """An organization that API keys act for. The local one (no keys) needs no row: its id and
    name are `settings.organization_id` and `settings.organization`."""

    __tablename__ = "organizations"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "org-…"
    # The slug shown in `ft:<base>:<name>:<suffix>:<id>`.
    name: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[int] = mapped_column(Integer)
    # Whether its requests may be relayed to the upstream (`openft orgs upstream NAME --enable`).
    upstream_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Its own key for the upstream, used in place of OPENFT_UPSTREAM_API_KEY; never sent to a client.
    upstream_api_key: Mapped[str | None] = mapped_column(String, default=None)


class ApiKeyRow(Base):
    """An API key, stored as the sha256 of the secret; the secret itself is shown once."""

    __tablename__ = "api_keys"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "key_…"
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String, unique=True, index=True)
    # "sk-openft-…abcd": enough to tell keys apart in `openft keys list`.
    redacted: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[int | None] = mapped_column(Integer, default=None)


class EvalRow(Base):
    """A stored `openft eval` report: held-out examples through four arms, side by side."""

    __tablename__ = "evals"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "eval-…"
    organization_id: Mapped[str] = mapped_column(String, index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String)  # the fine-tune evaluated
    # The whole report (protocol/evals.py's `Eval` less id, created_at and model).
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class StoredCompletionRow(Base):
    """A chat completion created with `store: true` (or under OPENFT_STORE_ALL_COMPLETIONS): what
    was asked and what was answered, for the stored-completions API and for distilling."""

    __tablename__ = "stored_completions"
    # Unique per organization only: one organization's row can never clash with another's.
    __table_args__ = (Index("ix_stored_completions_organization_id_id", "organization_id", "id", unique=True),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The "chatcmpl-…" the client was answered with, which openft minted (services/completions.py).
    id: Mapped[str] = mapped_column(String)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(Integer, index=True)
    model: Mapped[str] = mapped_column(String)  # the name the client asked for
    completion_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # The request's messages, tools and parameters, as the client sent them (less store/metadata).
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The `chat.completion` answered: for a stream, assembled from its chunks.
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    # "completed", or "incomplete" for a stream the client dropped: never exported as an answer.
    status: Mapped[str] = mapped_column(String)
    # Lower-cased message and reply text, for the dashboard's text filter.
    search_text: Mapped[str] = mapped_column(Text)
    # Where it was answered: "local" or "upstream".
    served_by: Mapped[str] = mapped_column(String)
    # The id the upstream gave its reply, which the client never saw; null for local replies.
    upstream_id: Mapped[str | None] = mapped_column(String, default=None)


class ExportRow(Base):
    """A model export (`POST /v1/openft/exports`): queued, run by an exporter of some host
    (runner/exporter.py) under a lease like a job's, its tar published to the artifact storage."""

    __tablename__ = "exports"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "export-…"
    organization_id: Mapped[str] = mapped_column(String, index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String)  # the name the client asked for
    format: Mapped[str] = mapped_column(String)
    quantization: Mapped[str | None] = mapped_column(String, default=None)
    # "queued", "running", "succeeded" or "failed"
    status: Mapped[ExportStatus] = mapped_column(String, index=True)
    # What the export process needs, on whichever host runs it (`export.spec.ExportDetails`).
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    lease_owner: Mapped[str | None] = mapped_column(String, default=None)
    lease_expires_at: Mapped[float | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The tar, once published: its name and size (its key: runner/exporter.result_key).
    filename: Mapped[str | None] = mapped_column(String, default=None)
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)


class EvalSpecRow(Base):
    """An eval of the Evals API (`/v1/evals`): what its rows look like and how they are graded.
    (`EvalRow` is an `openft eval` report.)"""

    __tablename__ = "eval_specs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "eval_…"
    organization_id: Mapped[str] = mapped_column(String, index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String)
    spec_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    # As the eval object shows them: the config with its full `schema`, and the criteria with ids.
    data_source_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    testing_criteria: Mapped[list[Any]] = mapped_column(JSON)


class EvalRunRow(Base):
    """A run of an eval: queued, then graded row by row by the server's eval runner
    (services/eval_runner.py) under a lease, like a job; its output items are written as it goes."""

    __tablename__ = "eval_runs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "evalrun_…"
    eval_id: Mapped[str] = mapped_column(String, index=True)
    organization_id: Mapped[str] = mapped_column(String, index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String)
    model: Mapped[str | None] = mapped_column(String, default=None)
    run_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    data_source: Mapped[dict[str, Any]] = mapped_column(JSON)  # as the client sent it
    # The rows, read once at creation (inline, a file, or stored completions) and checked against
    # the eval's schema: a file deleted or a completion stored later does not change the run.
    items: Mapped[list[Any]] = mapped_column(JSON)
    # "queued", "in_progress", "completed", "failed" or "canceled"
    status: Mapped[str] = mapped_column(String, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String, default=None)
    lease_expires_at: Mapped[float | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Counted from the output items when the run ends.
    result_counts: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    per_testing_criteria_results: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    per_model_usage: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class EvalOutputItemRow(Base):
    """One row of a run, sampled (for a completions source) and graded by every criterion."""

    __tablename__ = "eval_output_items"
    # One item per row and run: a run resumed after a restart never grades a row twice.
    __table_args__ = (Index("ix_eval_output_items_run_id_row", "run_id", "datasource_item_id", unique=True),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)  # "outputitem_…"
    run_id: Mapped[str] = mapped_column(String)
    eval_id: Mapped[str] = mapped_column(String)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(Integer)
    datasource_item_id: Mapped[int] = mapped_column(Integer)
    datasource_item: Mapped[dict[str, Any]] = mapped_column(JSON)
    # "pass" (every criterion passed), "fail", or "error" (sampling or a grader failed)
    status: Mapped[str] = mapped_column(String)
    results: Mapped[list[Any]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any]] = mapped_column(JSON)
