"""The eval runner: runs of the Evals API as background work in the server that serves the models.

It claims a queued run (runner/eval_runs.py: under a lease, like a job), then works on all its
rows at once, up to CONCURRENT_ROWS in flight: each row's prompt (its `input_messages` template
rendered with the row) goes to the chat service, where the batched engine decodes the rows in
flight together, and the reply is graded by every criterion (`openft.graders`; model graders ask
the chat service too). Each graded row is written as an output item at once, so a run whose
server stops (it gives the run back to the queue) or dies (its lease runs out) goes on, in the
next runner to claim it, from the rows not graded yet. A run canceled or deleted meanwhile is
seen at the next renew, every HEARTBEAT_SECONDS, and its rows in flight are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import select

from openft import ids
from openft.errors import OpenFTError
from openft.eval.runs import item_status, output_sample, summarize
from openft.graders import grade, make_sample
from openft.graders.templates import MissingVariable, Path
from openft.graders.templates import parse as parse_template
from openft.runner import eval_runs
from openft.services.chat import ChatService
from openft.services.evals_api import chat_request, graded_items, grader_of, sampling_of
from openft.services.graders import GraderService
from openft.settings import Settings
from openft.store.db import Database
from openft.store.tables import EvalOutputItemRow, EvalRunRow, EvalSpecRow

log = logging.getLogger("openft.evals")

HEARTBEAT_SECONDS = 2.0
# Rows in flight: more than the engine's batch (16 rows), so that a row that finishes is replaced
# by one already waiting and the batch stays full.
CONCURRENT_ROWS = 32
# A criterion with no pass rule of its own (python or score_model without `pass_threshold`)
# passes at half of OpenAI's default [0, 1] range: openft's reading, as OpenAI documents none.
DEFAULT_PASS_SCORE = 0.5


class RunLost(Exception):
    """The run is no longer this runner's: canceled, deleted or taken over."""


class EvalRunner:
    def __init__(self, settings: Settings, db: Database, chat: ChatService, graders: GraderService):
        self.settings = settings
        self.db = db
        self.chat = chat
        self.graders = graders  # its sandbox limits, and its model caller for model graders
        self.owner = "evalrunner-" + ids.random_token(12)

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ran = await self.run_once(stop)
            except Exception:
                log.exception("eval runner loop error")
                ran = False
            if not ran:
                try:
                    await asyncio.wait_for(stop.wait(), self.settings.worker_poll_seconds)
                except TimeoutError:
                    pass

    async def run_once(self, stop: asyncio.Event, only: str | None = None) -> bool:
        """Claims and runs one run (the run `only`, if given); False when none was claimable."""
        settings = self.settings
        run = await asyncio.to_thread(
            eval_runs.claim, self.db, self.owner, settings.lease_seconds, settings.max_attempts, only
        )
        if run is None:
            return False
        try:
            await self._run(run, stop)
        except Exception as error:
            log.exception("eval run %s failed", run.id)
            await asyncio.to_thread(
                eval_runs.fail, self.db, run.id, self.owner, "run_failed", f"{type(error).__name__}: {error}"
            )
        return True

    async def _run(self, run: EvalRunRow, stop: asyncio.Event) -> None:
        spec = await asyncio.to_thread(self._spec, run.eval_id)
        if spec is None:  # deleted with its eval since the claim
            return
        criteria = spec.testing_criteria
        graders = [
            grader_of(criterion, f"testing_criteria[{n}]", self.graders.limits) for n, criterion in enumerate(criteria)
        ]
        try:
            await self._grade_rows(run, criteria, graders, stop)
        finally:
            for grader in graders:
                grader.close()  # a Python grader's warm process

    async def _grade_rows(self, run: EvalRunRow, criteria: list[dict], graders: list, stop: asyncio.Event) -> None:
        done = await asyncio.to_thread(self._done_rows, run.id)
        slots = asyncio.Semaphore(CONCURRENT_ROWS)

        async def one(index: int) -> None:
            async with slots:
                item = await self._grade_row(run, index, criteria, graders)
                if not await asyncio.to_thread(eval_runs.record, self.db, item, self.owner):
                    raise RunLost()

        tasks = [asyncio.create_task(one(index)) for index in range(len(run.items)) if index not in done]
        rows = asyncio.gather(*tasks)
        lost, stopping = asyncio.create_task(self._renew_until_lost(run.id)), asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({rows, lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ours = not lost.done()  # not canceled, deleted or taken over meanwhile
            for task in (lost, stopping, *tasks):
                task.cancel()  # a no-op on the rows graded
            await asyncio.gather(lost, stopping, *tasks, return_exceptions=True)
        failed = rows.exception() if rows.done() and not rows.cancelled() else asyncio.CancelledError()
        if isinstance(failed, RunLost):
            return
        if isinstance(failed, asyncio.CancelledError):
            if ours:  # the server stops: the next runner goes on from the rows graded
                await asyncio.to_thread(eval_runs.release, self.db, run.id, self.owner)
            return
        if failed is not None:
            raise failed
        graded = await asyncio.to_thread(graded_items, self.db, run.id)
        results = summarize(graded, [criterion["id"] for criterion in criteria])
        await asyncio.to_thread(eval_runs.complete, self.db, run.id, self.owner, results)

    async def _renew_until_lost(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            renewed = await asyncio.to_thread(eval_runs.renew, self.db, run_id, self.owner, self.settings.lease_seconds)
            if not renewed:
                return

    # -----------------------------------------------------------------------------------------
    # one row

    async def _grade_row(self, run: EvalRunRow, index: int, criteria: list[dict], graders: list) -> EvalOutputItemRow:
        row = run.items[index]
        item = row["item"]
        if run.model is None:
            given = row.get("sample") or {}
            sample, shown, error = given, _given_sample(given), None
        else:
            sample, shown, error = await self._sample(run, item)
        results = []
        for criterion, grader in zip(criteria, graders, strict=True):
            if error is not None:
                results.append(_result(criterion, 0.0, False, None))
                continue
            grade_result = await grade(grader, sample, item, self.graders.model_caller(run.organization_id))
            results.append(_graded(criterion, grade_result))
        return EvalOutputItemRow(
            id=ids.output_item_id(),
            run_id=run.id,
            eval_id=run.eval_id,
            organization_id=run.organization_id,
            created_at=int(time.time()),
            datasource_item_id=index,
            datasource_item=item,
            status=item_status(error, results),
            results=results,
            sample=shown,
        )

    async def _sample(self, run: EvalRunRow, item: dict) -> tuple[dict, dict, dict | None]:
        """The model's reply to the row: the grader's `sample`, the output item's, and the error
        that kept the row from being answered (a template variable the row lacks, a prompt
        longer than the context…), if any."""
        sampling = sampling_of(run)
        messages: list[dict] = []
        try:
            messages = _messages(run.data_source["input_messages"], item)
            request = chat_request(run.model, messages, sampling)
            started = time.perf_counter()
            completion = (await self.chat.complete(run.organization_id, request)).model_dump()
            latency = time.perf_counter() - started
        except MissingVariable as missing:
            error = {"code": "invalid_variable_error", "message": str(missing)}
            return {}, output_sample(messages, None, sampling, error), error
        except OpenFTError as failed:
            error = {"code": failed.code or "sampling_error", "message": failed.message}
            return {}, output_sample(messages, None, sampling, error), error
        json_reply = (sampling.get("response_format") or {}).get("type") in ("json_schema", "json_object")
        choice = completion["choices"][0]
        sample = make_sample(
            choice["message"]["content"] or "",
            tool_calls=choice["message"].get("tool_calls"),
            parse_json=json_reply,
            finish_reason=choice["finish_reason"],
        )
        shown = output_sample(messages, completion, sampling, None)
        shown["latency_seconds"] = round(latency, 4)  # openft's: from the call to the reply, batched
        return sample, shown, None

    # -----------------------------------------------------------------------------------------
    # the store

    def _spec(self, eval_id: str) -> EvalSpecRow | None:
        with self.db.session() as session:
            return session.scalar(select(EvalSpecRow).where(EvalSpecRow.id == eval_id))

    def _done_rows(self, run_id: str) -> set[int]:
        with self.db.session() as session:
            query = select(EvalOutputItemRow.datasource_item_id).where(EvalOutputItemRow.run_id == run_id)
            return set(session.scalars(query))


def _messages(input_messages: dict, item: dict) -> list[dict]:
    """The row's prompt: the template's messages with the row's values put in, or the messages
    the row holds at `item_reference`."""
    if input_messages["type"] == "item_reference":
        reference = input_messages["item_reference"]
        steps = tuple(reference.split(".")[1:])
        value = Path("item", steps, reference).resolve({"item": item})
        if not isinstance(value, list):
            raise MissingVariable(f"`{reference}` is not a list of messages.")
        return value
    return [
        {"role": message["role"], "content": _rendered(message.get("content"), item)}
        for message in input_messages["template"]
    ]


def _rendered(content: Any, item: dict) -> str:
    """A template message's content as text, its `{{ item.… }}` variables filled (its parts,
    `input_text` or `output_text`, joined)."""
    if isinstance(content, str):
        return parse_template(content).render(item, {})
    if isinstance(content, dict):
        return _rendered(content.get("text", ""), item)
    return "".join(_rendered(part, item) for part in content)


def _given_sample(sample: dict) -> dict:
    """A jsonl row's own sample, shown as an output item's (no model was called)."""
    shown = output_sample([], None, {}, None)
    text = sample.get("output_text")
    shown["output"] = [{"role": "assistant", "content": text}] if text is not None else []
    return shown


def _graded(criterion: dict, result) -> dict:
    passed = result.passed
    if passed is None:
        threshold = criterion.get("pass_threshold")
        passed = result.reward >= (DEFAULT_PASS_SCORE if threshold is None else threshold)
    error = next((flag for flag, value in result.errors.items() if value is True), None)
    graded = _result(criterion, result.reward, bool(passed) and error is None, error)
    graded["metadata"] = result.metadata()
    graded["sample"] = result.model_sample
    graded["token_usage_per_model"] = result.token_usage_per_model
    if result.label is not None:
        graded["label"] = result.label
    return graded


def _result(criterion: dict, score: float, passed: bool, error: str | None) -> dict:
    return {
        "id": criterion["id"],
        "name": criterion.get("name", criterion["type"]),
        "type": criterion["type"],
        "score": score,
        "passed": passed,
        "error": error,
    }
