from fastapi import APIRouter, Query, Request

from openft.protocol.common import ListPage, page
from openft.protocol.fine_tuning import (
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobCreateParams,
)
from openft.server.deps import Caller, Jobs
from openft.services.fine_tuning import checkpoint_object, event_object, job_object

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


@router.post("")
def create(caller: Caller, jobs: Jobs, body: JobCreateParams) -> FineTuningJob:
    return job_object(jobs.create(caller, body))


@router.get("")
def list_jobs(
    request: Request,
    caller: Caller,
    jobs: Jobs,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = None,
) -> ListPage[FineTuningJob]:
    """`metadata[key]=value` query parameters keep only jobs with that metadata."""
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    rows, has_more = jobs.list(caller.organization_id, limit, after, metadata)
    return page([job_object(row) for row in rows], has_more)


@router.get("/{job_id}")
def retrieve(caller: Caller, jobs: Jobs, job_id: str) -> FineTuningJob:
    return job_object(jobs.get(caller.organization_id, job_id))


@router.post("/{job_id}/cancel")
def cancel(caller: Caller, jobs: Jobs, job_id: str) -> FineTuningJob:
    return job_object(jobs.cancel(caller.organization_id, job_id))


@router.post("/{job_id}/pause")
def pause(caller: Caller, jobs: Jobs, job_id: str) -> FineTuningJob:
    return job_object(jobs.pause(caller.organization_id, job_id))


@router.post("/{job_id}/resume")
def resume(caller: Caller, jobs: Jobs, job_id: str) -> FineTuningJob:
    return job_object(jobs.resume(caller.organization_id, job_id))


@router.get("/{job_id}/events")
def events(
    caller: Caller,
    jobs: Jobs,
    job_id: str,
    limit: int = Query(20, ge=1, le=1000),
    after: str | None = None,
) -> ListPage[FineTuningJobEvent]:
    rows, has_more = jobs.events(caller.organization_id, job_id, limit, after)
    return page([event_object(row) for row in rows], has_more)


@router.get("/{job_id}/checkpoints")
def checkpoints(
    caller: Caller,
    jobs: Jobs,
    job_id: str,
    limit: int = Query(10, ge=1, le=100),
    after: str | None = None,
) -> ListPage[FineTuningJobCheckpoint]:
    rows, has_more = jobs.checkpoints(caller.organization_id, job_id, limit, after)
    return page([checkpoint_object(row) for row in rows], has_more)
