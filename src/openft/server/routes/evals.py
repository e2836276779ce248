from fastapi import APIRouter, Query

from openft.protocol.common import ListPage, page
from openft.protocol.evals import Eval, EvalCreateParams
from openft.server.deps import Caller, Evals
from openft.services.evals import eval_object

router = APIRouter(prefix="/v1/openft/evals", tags=["openft"])


# Runs every held-out example through four arms before it answers: minutes for a large file.
@router.post("")
async def create(caller: Caller, evals: Evals, body: EvalCreateParams) -> Eval:
    return eval_object(await evals.create(caller.organization_id, body))


@router.get("")
def list_evals(
    caller: Caller, evals: Evals, limit: int = Query(20, ge=1, le=100), after: str | None = None
) -> ListPage[Eval]:
    rows, has_more = evals.list(caller.organization_id, limit, after)
    return page([eval_object(row) for row in rows], has_more)


@router.get("/{eval_id}")
def retrieve(caller: Caller, evals: Evals, eval_id: str) -> Eval:
    return eval_object(evals.get(caller.organization_id, eval_id))
