from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from openft.protocol.chat import ChatCompletion, ChatCompletionRequest
from openft.server.deps import Caller, Chat

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=None)
async def create(caller: Caller, chat: Chat, body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
    if body.stream:
        frames = await chat.prepare_stream(caller.organization_id, body)
        return StreamingResponse(frames, media_type="text/event-stream")
    return await chat.complete(caller.organization_id, body)
