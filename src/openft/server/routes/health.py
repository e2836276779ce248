"""`GET /health`: the server answers, and how its inference engine is (the engine process, its
decode scheduler's restarts and last error's kind). For load balancers and operators: no key is
needed, and nothing of any organization's is shown."""

from fastapi import APIRouter

from openft.server.deps import Chat

router = APIRouter(tags=["health"])


# Not async: asking the engine process waits on its pipe (FastAPI runs this in a thread). Not in
# the OpenAPI schema, which describes the /v1 API clients program against.
@router.get("/health", include_in_schema=False)
def health(chat: Chat) -> dict:
    return {"status": "ok", "engine": chat.health()}
