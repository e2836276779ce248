"""`openft eval` and `POST /v1/openft/evals`: did fine-tuning help?

The held-out examples go through the arms of `openft.eval.arms` via the same `ChatService`
the chat API uses (temperature 0, so reruns agree), are scored by `openft.eval.metrics`, and the
report is stored (`EvalRow`) for `GET /v1/openft/evals` and the dashboard. On a JSON task the
fine-tune is also asked with its reply constrained to the task's inferred schema
(`openft.eval.json_schema`), and every arm's answers are checked against that schema. The fine-tune's job
names the base model for the base arms and, unless the caller gives one, the training file
that provides the system message and the few-shot examples.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from openft import ids
from openft.data.chat_format import content_text
from openft.data.pricing import REFERENCE_PRICE_MODEL, InferencePrice, inference_price
from openft.data.validate import validate_chat_jsonl
from openft.errors import OpenFTError, not_found
from openft.eval.arms import (
    ARMS,
    Arm,
    HeldOut,
    NoReference,
    arm_messages,
    as_chats,
    few_shot_turns,
    held_out_examples,
    training_system_message,
)
from openft.eval.json_schema import inferred_schema
from openft.eval.metrics import Answer, arm_metrics, exact_match, ranking, references_are_json, similarity
from openft.protocol.chat import ChatCompletionRequest
from openft.protocol.evals import Eval, EvalCreateParams
from openft.services.chat import ChatService
from openft.services.files import FileService, format_error_message
from openft.services.models import ModelService
from openft.store.db import Database
from openft.store.pages import fetch_page
from openft.store.tables import EvalRow, JobRow

# A fixed seed on top of temperature 0: equal scores tell equal answers, rerun after rerun.
SEED = 0


class EvalService:
    def __init__(self, db: Database, files: FileService, models: ModelService, chat: ChatService):
        self.db = db
        self.files = files
        self.models = models
        self.chat = chat

    async def create(self, organization_id: str, params: EvalCreateParams) -> EvalRow:
        # Reading and validating the files blocks: off the event loop, which serves other requests.
        job, held_out, training_file, training = await asyncio.to_thread(self._inputs, organization_id, params)
        system = training_system_message(training)
        n_shots = min(params.shots, len(training))
        shots = few_shot_turns(training, n_shots)
        prices = _prices(job.model)

        references = [example.reference for example in held_out]
        json_task = references_are_json(references)
        schema = inferred_schema([_last_reply(example) for example in training] + references) if json_task else None
        arms, prompts, warm = [], [], None
        for arm in ARMS:
            if arm.constrained and schema is None:
                continue
            model = params.model if arm.fine_tuned else job.model
            messages = [arm_messages(arm, example, system, shots) for example in held_out]
            if model != warm:
                # One untimed token first: loading the model or attaching the adapter is not latency.
                await self._ask(organization_id, arm, model, messages[0], 1)
                warm = model
            response_format = _response_format(schema) if arm.constrained else None
            answers = await self._run(organization_id, arm, model, messages, params.max_tokens, response_format)
            price = prices["fine_tuned" if arm.fine_tuned else "base"]
            arms.append(_arm_report(arm, model, n_shots if arm.few_shot else 0, held_out, answers, price, schema))
            if arm.name == "fine_tuned":
                prompts = messages
        report = {
            "base_model": job.model,
            "file": params.file,
            "training_file": training_file,
            "shots": n_shots,
            "max_tokens": params.max_tokens,
            "system_message": system,
            "json_task": json_task,
            "json_schema": schema,
            "examples": [
                {"line": example.line, "prompt": prompt, "reference": example.reference}
                for example, prompt in zip(held_out, prompts, strict=True)
            ],
            "arms": arms,
            "ranking": ranking({arm["name"]: arm["metrics"] for arm in arms}),
            "prices": {
                "model": prices["base"].model,
                "reference": prices["reference"],
                "usd_per_1m_tokens_base": _price(prices["base"]),
                "usd_per_1m_tokens_fine_tuned": _price(prices["fine_tuned"]),
            },
        }
        row = EvalRow(
            id=ids.eval_report_id(),
            organization_id=organization_id,
            created_at=int(time.time()),
            model=params.model,
            report=report,
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def get(self, organization_id: str, eval_id: str) -> EvalRow:
        with self.db.session() as session:
            row = session.scalar(
                select(EvalRow).where(EvalRow.id == eval_id, EvalRow.organization_id == organization_id)
            )
        if row is None:
            raise not_found("Eval", eval_id, param="eval_id")
        return row

    def list(self, organization_id: str, limit: int, after: str | None) -> tuple[list[EvalRow], bool]:
        query = select(EvalRow).where(EvalRow.organization_id == organization_id)
        if after:
            query = query.where(EvalRow.seq < self.get(organization_id, after).seq)
        return fetch_page(self.db, query.order_by(EvalRow.seq.desc()), limit)

    # -----------------------------------------------------------------------------------------
    # inputs

    def _inputs(self, organization_id: str, params: EvalCreateParams) -> tuple[JobRow, list[HeldOut], str, list[dict]]:
        """The fine-tune's job, the held-out examples, and the training file's id and examples."""
        job = self._job_of(organization_id, params.model)
        held_out = self._held_out(organization_id, params.file)
        training_file = params.training_file or job.training_file
        return job, held_out, training_file, self._examples(organization_id, training_file, "training_file", job)

    def _job_of(self, organization_id: str, model: str) -> JobRow:
        """The job that trained `model` (404 when the caller cannot see the model, 400 when it is
        not a fine-tune)."""
        row = self.models.get(organization_id, model)
        job = None
        if row.job_id:
            with self.db.session() as session:
                job = session.scalar(
                    select(JobRow).where(JobRow.id == row.job_id, JobRow.organization_id == organization_id)
                )
        if job is None:
            raise OpenFTError(
                400,
                f"The model `{model}` is not a fine-tuned model: an eval compares a fine-tune (ft:…) with the "
                "base model it was trained from.",
                param="model",
            )
        return job

    def _held_out(self, organization_id: str, file_id: str) -> list[HeldOut]:
        raw = self._content(organization_id, file_id, "file")
        report = validate_chat_jsonl(raw)
        if not report.ok:
            raise OpenFTError(400, format_error_message(report), param="file", code="invalid_file_format")
        try:
            return held_out_examples(*_chats_with_lines(report))
        except NoReference as error:
            raise OpenFTError(
                400, f"Invalid held-out file. {error}", param="file", code="invalid_file_format"
            ) from None

    def _examples(self, organization_id: str, file_id: str, param: str, job: JobRow) -> list[dict]:
        try:
            raw = self._content(organization_id, file_id, param)
        except OpenFTError:
            if file_id != job.training_file:
                raise
            raise OpenFTError(
                400,
                f"The training file {file_id} of job {job.id} is no longer stored; pass training_file (the "
                "file for the system message and few-shot examples).",
                param="training_file",
            ) from None
        report = validate_chat_jsonl(raw)
        if not report.ok:
            raise OpenFTError(400, format_error_message(report), param=param, code="invalid_file_format")
        return as_chats(report.examples, report.method)[0]  # a DPO file's pairs: their preferred chats

    def _content(self, organization_id: str, file_id: str, param: str) -> bytes:
        try:
            row = self.files.get(organization_id, file_id)
        except OpenFTError:
            raise not_found("File", file_id, param=param) from None
        return self.files.read(row)  # from the storage, wherever it is

    # -----------------------------------------------------------------------------------------
    # running

    async def _run(
        self,
        organization_id: str,
        arm: Arm,
        model: str,
        prompts: list[list[dict]],
        max_tokens: int,
        response_format: dict | None,
    ) -> list[Answer]:
        answers = []
        for messages in prompts:
            started = time.perf_counter()
            completion = await self._ask(organization_id, arm, model, messages, max_tokens, response_format)
            seconds = time.perf_counter() - started
            answers.append(
                Answer(
                    completion.choices[0].message.content or "",
                    completion.usage.prompt_tokens,
                    completion.usage.completion_tokens,
                    seconds,
                )
            )
        return answers

    async def _ask(
        self,
        organization_id: str,
        arm: Arm,
        model: str,
        messages: list[dict],
        max_tokens: int,
        response_format: dict | None = None,
    ):
        request = ChatCompletionRequest(
            model=model,
            messages=messages,
            temperature=0,
            max_tokens=max_tokens,
            seed=SEED,
            response_format=response_format,
        )
        try:
            return await self.chat.complete(organization_id, request)
        except OpenFTError as error:
            if error.code != "context_length_exceeded":
                raise
            hint = " Use fewer shots." if arm.few_shot else " Lower max_tokens or shorten the held-out prompts."
            raise OpenFTError(
                400,
                f"Arm {arm.name}: {error.message}{hint}",
                param="shots" if arm.few_shot else "max_tokens",
                code=error.code,
            ) from None


def _chats_with_lines(report) -> tuple[list[dict], list[int], list[str] | None]:
    chats, rejected = as_chats(report.examples, report.method)
    return chats, report.example_lines, rejected


def _prices(model: str) -> dict:
    """OpenAI's inference prices for the base and the fine-tuned arms of a job on `model`."""
    reference = inference_price(model, fine_tuned=False) is None
    priced = REFERENCE_PRICE_MODEL if reference else model
    return {
        "base": inference_price(priced, fine_tuned=False),
        "fine_tuned": inference_price(priced, fine_tuned=True),
        "reference": reference,
    }


def _price(price: InferencePrice) -> dict:
    return {"input": price.input, "output": price.output}


def _last_reply(example: dict) -> str:
    """A training example's last assistant reply (its answer), as text."""
    replies = [m.get("content") for m in example["messages"] if m["role"] == "assistant"]
    return content_text(replies[-1]) if replies else ""


def _response_format(schema: dict) -> dict:
    """The constrained arm's: the task's schema, held to as far as the grammar engine supports it
    (not strict: an inferred schema need not be in OpenAI's strict subset)."""
    return {"type": "json_schema", "json_schema": {"name": "eval_task", "schema": schema, "strict": False}}


def _arm_report(
    arm: Arm,
    model: str,
    shots: int,
    held_out: list[HeldOut],
    answers: list[Answer],
    price: InferencePrice,
    schema: dict | None,
) -> dict:
    references = [example.reference for example in held_out]
    rejected = [example.rejected for example in held_out] if held_out and held_out[0].rejected is not None else None
    return {
        "name": arm.name,
        "title": arm.title,
        "model": model,
        "system_message": arm.system_message,
        "shots": shots,
        "metrics": arm_metrics(answers, references, references_are_json(references), price, schema, rejected),
        "samples": [
            {
                "line": example.line,
                "output": answer.output,
                "exact_match": exact_match(answer.output, example.reference),
                "similarity": round(similarity(answer.output, example.reference), 4),
            }
            for example, answer in zip(held_out, answers, strict=True)
        ],
    }


def eval_object(row: EvalRow) -> Eval:
    return Eval(id=row.id, created_at=row.created_at, model=row.model, **row.report)
