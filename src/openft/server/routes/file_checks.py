from fastapi import APIRouter

from openft.server.deps import Caller, FileChecks

router = APIRouter(prefix="/v1/openft/files", tags=["openft"])


# Not async: tokenizing a large file takes seconds; FastAPI runs this in a thread.
@router.get("/{file_id}/check")
def check(caller: Caller, checks: FileChecks, file_id: str, model: str | None = None) -> dict:
    """The `openft data check --json` report for an uploaded file (`model`: the base to check for)."""
    return checks.check(caller.organization_id, file_id, model)
