"""Request dependencies: the caller's organization (from the API key) and the services."""

from typing import Annotated

from fastapi import Depends, Request

from openft.errors import OpenFTError, invalid_api_key
from openft.services.chat import ChatService
from openft.services.files import FileService
from openft.services.fine_tuning import FineTuningService
from openft.services.models import ModelService


def organization(request: Request) -> str:
    """The organization the caller acts for. With no keys configured every caller is the one
    local organization; with keys, the bearer key must be one of them."""
    settings = request.app.state.settings
    if settings.api_keys:
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip()
        if not key:
            raise OpenFTError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type="invalid_request_error",
            )
        if key not in settings.api_keys:
            raise invalid_api_key(key)
    return settings.organization_id


def _service(name: str):
    def from_app_state(request: Request):
        return getattr(request.app.state, name)

    return from_app_state


Organization = Annotated[str, Depends(organization)]
Files = Annotated[FileService, Depends(_service("files"))]
Jobs = Annotated[FineTuningService, Depends(_service("fine_tuning"))]
Models = Annotated[ModelService, Depends(_service("models"))]
Chat = Annotated[ChatService, Depends(_service("chat"))]
