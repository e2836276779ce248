"""OpenAI's Evals API: `/v1/evals`, its runs and their output items (services/evals_api.py)."""

from typing import Literal

from fastapi import APIRouter, Query, Request

from openft.protocol.common import ListPage, page
from openft.protocol.evals_api import (
    Eval,
    EvalCreateParams,
    EvalDeleted,
    EvalRun,
    EvalRunDeleted,
    EvalUpdateParams,
    OutputItem,
    OutputItemStatus,
    RunCreateParams,
    RunStatus,
)
from openft.server.deps import Caller, EvalsApi
from openft.services.evals_api import EvalsAPI, eval_object, item_object, run_object
from openft.store.tables import EvalRunRow

router = APIRouter(prefix="/v1/evals", tags=["evals"])
Limit = Query(20, ge=1, le=100)
Order = Literal["asc", "desc"]


def _run(evals: EvalsAPI, request: Request, caller, row: EvalRunRow) -> EvalRun:
    criteria = evals.get_eval(caller.organization_id, row.eval_id).testing_criteria
    return run_object(row, evals.results(row, criteria), str(request.base_url))


@router.post("")
def create(caller: Caller, evals: EvalsApi, body: EvalCreateParams) -> Eval:
    return eval_object(evals.create_eval(caller.organization_id, body))


@router.get("")
def list_evals(
    caller: Caller,
    evals: EvalsApi,
    limit: int = Limit,
    after: str | None = None,
    order: Order = "asc",
    order_by: Literal["created_at", "updated_at"] = "created_at",
) -> ListPage[Eval]:
    rows, has_more = evals.list_evals(caller.organization_id, limit, after, order, order_by)
    return page([eval_object(row) for row in rows], has_more)


@router.get("/{eval_id}")
def retrieve(caller: Caller, evals: EvalsApi, eval_id: str) -> Eval:
    return eval_object(evals.get_eval(caller.organization_id, eval_id))


@router.post("/{eval_id}")
def update(caller: Caller, evals: EvalsApi, eval_id: str, body: EvalUpdateParams) -> Eval:
    return eval_object(evals.update_eval(caller.organization_id, eval_id, body))


@router.delete("/{eval_id}")
def delete(caller: Caller, evals: EvalsApi, eval_id: str) -> EvalDeleted:
    evals.delete_eval(caller.organization_id, eval_id)
    return EvalDeleted(deleted=True, eval_id=eval_id)


# Answers at once with the queued run; the server's eval runner grades it (services/eval_runner.py).
@router.post("/{eval_id}/runs")
async def create_run(caller: Caller, evals: EvalsApi, request: Request, eval_id: str, body: RunCreateParams) -> EvalRun:
    row = await evals.create_run(caller.organization_id, eval_id, body)
    return _run(evals, request, caller, row)


@router.get("/{eval_id}/runs")
def list_runs(
    caller: Caller,
    evals: EvalsApi,
    request: Request,
    eval_id: str,
    limit: int = Limit,
    after: str | None = None,
    order: Order = "asc",
    status: RunStatus | None = None,
) -> ListPage[EvalRun]:
    rows, has_more = evals.list_runs(caller.organization_id, eval_id, limit, after, order, status)
    return page([_run(evals, request, caller, row) for row in rows], has_more)


@router.get("/{eval_id}/runs/{run_id}")
def retrieve_run(caller: Caller, evals: EvalsApi, request: Request, eval_id: str, run_id: str) -> EvalRun:
    return _run(evals, request, caller, evals.get_run(caller.organization_id, eval_id, run_id))


@router.post("/{eval_id}/runs/{run_id}/cancel")
def cancel_run(caller: Caller, evals: EvalsApi, request: Request, eval_id: str, run_id: str) -> EvalRun:
    return _run(evals, request, caller, evals.cancel_run(caller.organization_id, eval_id, run_id))


@router.delete("/{eval_id}/runs/{run_id}")
def delete_run(caller: Caller, evals: EvalsApi, eval_id: str, run_id: str) -> EvalRunDeleted:
    evals.delete_run(caller.organization_id, eval_id, run_id)
    return EvalRunDeleted(deleted=True, run_id=run_id)


@router.get("/{eval_id}/runs/{run_id}/output_items")
def list_output_items(
    caller: Caller,
    evals: EvalsApi,
    eval_id: str,
    run_id: str,
    limit: int = Limit,
    after: str | None = None,
    order: Order = "asc",
    status: OutputItemStatus | None = None,
) -> ListPage[OutputItem]:
    rows, has_more = evals.list_items(caller.organization_id, eval_id, run_id, limit, after, order, status)
    return page([item_object(row) for row in rows], has_more)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}")
def retrieve_output_item(caller: Caller, evals: EvalsApi, eval_id: str, run_id: str, output_item_id: str) -> OutputItem:
    return item_object(evals.get_item(caller.organization_id, eval_id, run_id, output_item_id))
