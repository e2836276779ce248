"""`openft eval` and `POST /v1/openft/evals`: did fine-tuning help?

One evaluation system: the comparison is an eval of the Evals API (`services/evals_api.py`)
whose runs are the arms of `openft.eval.arms`. Each arm's held-out prompts are one
`completions` run (temperature 0, so reruns agree), sampled by the eval runner through the same
`ChatService` the chat API uses, batched in the engine, and graded by the eval's criteria (exact
match, fuzzy similarity); the report's metrics (`openft.eval.metrics`) come from the runs' output
items, and the report is stored (`EvalRow`) for `GET /v1/openft/evals` and the dashboard, which
link each arm to its run. On a JSON task the
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
from openft.protocol.evals_api import EvalCreateParams as EvalsApiCreateParams
from openft.protocol.evals_api import RunCreateParams
from openft.services.chat import ChatService
from openft.services.eval_runner import EvalRunner
from openft.services.evals_api import EvalsAPI
from openft.services.files import FileService, format_error_message
from openft.services.models import ModelService
from openft.store.db import Database
from openft.store.pages import fetch_page
from openft.store.tables import EvalRow, EvalRunRow, JobRow

# A fixed seed on top of temperature 0: equal scores tell equal answers, rerun after rerun.
SEED = 0
# The similarity criterion's pass mark (rapidfuzz WRatio / 100): a near copy of the reference.
SIMILAR = 0.9
RUN_POLL_SECONDS = 0.1


class EvalService:
    def __init__(
        self,
        db: Database,
        files: FileService,
        models: ModelService,
        chat: ChatService,
        evals_api: EvalsAPI,
        runner: EvalRunner,
    ):
        self.db = db
        self.files = files
        self.models = models
        self.chat = chat
        self.evals_api = evals_api
        self.runner = runner

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
        evaluation = self.evals_api.create_eval(organization_id, _arms_eval(params.model))
        arms, prompts, warm = [], [], set()
        for arm in ARMS:
            if arm.constrained and schema is None:
                continue
            model = params.model if arm.fine_tuned else job.model
            messages = [arm_messages(arm, example, system, shots) for example in held_out]
            if model not in warm:
                # One untimed token first: loading the model or attaching the adapter is not latency.
                await self._warm_up(organization_id, model, messages[0])
                warm.add(model)
            response_format = _response_format(schema) if arm.constrained else None
            run, answers, pace = await self._run(
                organization_id, evaluation.id, arm, model, messages, held_out, params, response_format
            )
            price = prices["fine_tuned" if arm.fine_tuned else "base"]
            shown = n_shots if arm.few_shot else 0
            arms.append(_arm_report(arm, model, shown, held_out, answers, price, schema, run, pace))
            if arm.name == "fine_tuned":
                prompts = messages
        report = {
            "api_eval_id": evaluation.id,
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
        eval_id: str,
        arm: Arm,
        model: str,
        prompts: list[list[dict]],
        held_out: list[HeldOut],
        params: EvalCreateParams,
        response_format: dict | None,
    ) -> tuple[EvalRunRow, list[Answer], float]:
        """The arm as a run of the eval: every prompt at once through the eval runner (batched in
        the engine), graded; its replies as the report's answers, and the run's seconds per row."""
        sampling = {"temperature": 0, "seed": SEED, "max_completion_tokens": params.max_tokens}
        if response_format is not None:
            sampling["response_format"] = response_format
        rows = [
            {"item": {"messages": messages, "reference": example.reference}}
            for messages, example in zip(prompts, held_out, strict=True)
        ]
        source = {
            "type": "completions",
            "model": model,
            "source": {"type": "file_content", "content": rows},
            "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
            "sampling_params": sampling,
        }
        run = await self.evals_api.create_run(
            organization_id, eval_id, RunCreateParams(data_source=source, name=arm.name, metadata={"arm": arm.name})
        )
        started = time.perf_counter()
        run = await self._finished(organization_id, eval_id, run.id)
        seconds_per_request = (time.perf_counter() - started) / len(rows)
        if run.status != "completed":
            raise OpenFTError(500, f"Arm {arm.name}: its run {run.id} {run.status}: {run.error}", type="server_error")
        items, _ = self.evals_api.list_items(organization_id, eval_id, run.id, len(rows), None, "asc", None)
        failed = next((item.sample["error"] for item in items if item.sample["error"]), None)
        if failed is not None:
            hint = " Use fewer shots." if arm.few_shot else " Lower max_tokens or shorten the held-out prompts."
            code = failed["code"]
            param = ("shots" if arm.few_shot else "max_tokens") if code == "context_length_exceeded" else None
            raise OpenFTError(400, f"Arm {arm.name}: {failed['message']}{hint}", param=param, code=code)
        answers = [
            Answer(
                item.sample["output"][0]["content"] or "",
                item.sample["usage"]["prompt_tokens"],
                item.sample["usage"]["completion_tokens"],
                item.sample["latency_seconds"],
            )
            for item in items
        ]
        return run, answers, seconds_per_request

    async def _finished(self, organization_id: str, eval_id: str, run_id: str) -> EvalRunRow:
        """The run once it ended. This service runs it itself unless a runner of the server took
        it first (`openft eval` in its own process has no other)."""
        stop = asyncio.Event()
        while (run := self.evals_api.get_run(organization_id, eval_id, run_id)).status in ("queued", "in_progress"):
            if not await self.runner.run_once(stop, only=run_id):
                await asyncio.sleep(RUN_POLL_SECONDS)
        return run

    async def _warm_up(self, organization_id: str, model: str, messages: list[dict]) -> None:
        request = ChatCompletionRequest(model=model, messages=messages, temperature=0, max_tokens=1, seed=SEED)
        try:
            await self.chat.complete(organization_id, request)
        except OpenFTError as error:
            if error.code != "context_length_exceeded":
                raise
            # The arm's run reports it, with its hint.


def _arms_eval(model: str) -> EvalsApiCreateParams:
    """The Evals API eval whose runs are the arms: each row the prompt an arm sends and the
    reference; graded by exact match and by fuzzy similarity (the report's own metrics are
    `openft.eval.metrics`', from the same replies)."""
    return EvalsApiCreateParams(
        name=f"openft eval of {model}",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"messages": {"type": "array"}, "reference": {"type": "string"}},
                "required": ["messages", "reference"],
            },
        },
        testing_criteria=[
            {
                "type": "string_check",
                "name": "exact_match",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.reference }}",
                "operation": "eq",
            },
            {
                "type": "text_similarity",
                "name": "similarity",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.reference }}",
                "evaluation_metric": "fuzzy_match",
                "pass_threshold": SIMILAR,
            },
        ],
        metadata={"openft_eval_model": model[:512]},
    )


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
    run: EvalRunRow,
    seconds_per_request: float,
) -> dict:
    references = [example.reference for example in held_out]
    rejected = [example.rejected for example in held_out] if held_out and held_out[0].rejected is not None else None
    return {
        "name": arm.name,
        "title": arm.title,
        "run_id": run.id,
        "model": model,
        "system_message": arm.system_message,
        "shots": shots,
        "metrics": arm_metrics(
            answers, references, references_are_json(references), price, schema, rejected, seconds_per_request
        ),
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
