"""OpenAI's grader endpoints (`client.fine_tuning.alpha.graders.validate` / `.run`)."""

from fastapi import APIRouter

from openft.protocol.graders import GraderRunParams, GraderRunResponse, GraderValidateParams, GraderValidateResponse
from openft.server.deps import Caller, Graders

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["fine-tuning"])


@router.post("/validate")
def validate(caller: Caller, graders: Graders, body: GraderValidateParams) -> GraderValidateResponse:
    return GraderValidateResponse(**graders.validate(caller.organization_id, body))


# Grades one sample: a model grader waits for its model's reply, a Python grader for its sandbox.
@router.post("/run")
async def run(caller: Caller, graders: Graders, body: GraderRunParams) -> GraderRunResponse:
    return GraderRunResponse(**(await graders.run(caller.organization_id, body)).run_response())
