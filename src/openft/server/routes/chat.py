from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from openft.server.deps import Chat, Organization
from openft.server.protocol.chat import ChatCompletion, ChatCompletionRequest

router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=None)
async def create(_: Organization, chat: Chat, body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
    if body.stream:
        return StreamingResponse(await chat.prepare_stream(body), media_type="text/event-stream")
    return await chat.complete(body)

