"""Request dependencies: the caller (from the API key) and the services."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from openft.services import keys
from openft.services.chat import ChatService
from openft.services.completions import Completions as CompletionService
from openft.services.distill import DistillService
from openft.services.evals import EvalService
from openft.services.evals_api import EvalsAPI
from openft.services.exports import ExportService
from openft.services.file_checks import FileCheckService
from openft.services.files import FileService
from openft.services.fine_tuning import FineTuningService
from openft.services.graders import GraderService
from openft.services.models import ModelService
from openft.services.stored_completions import StoredCompletions

# Parses `Authorization: Bearer …` and declares the scheme in /openapi.json; KeyService decides.
bearer = HTTPBearer(auto_error=False)


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> keys.Caller:
    """The caller, and the organization it acts for. With no keys every caller is the one local
    organization; once a key exists, the bearer key must be a live one (else 401)."""
    return request.app.state.keys.authenticate(credentials.credentials if credentials else None)


def _service(name: str):
    def from_app_state(request: Request):
        return getattr(request.app.state, name)

    return from_app_state


Caller = Annotated[keys.Caller, Depends(authenticate)]
Files = Annotated[FileService, Depends(_service("files"))]
Jobs = Annotated[FineTuningService, Depends(_service("fine_tuning"))]
Models = Annotated[ModelService, Depends(_service("models"))]
Chat = Annotated[ChatService, Depends(_service("chat"))]
Evals = Annotated[EvalService, Depends(_service("evals"))]
EvalsApi = Annotated[EvalsAPI, Depends(_service("evals_api"))]
FileChecks = Annotated[FileCheckService, Depends(_service("file_checks"))]
Completions = Annotated[CompletionService, Depends(_service("completions"))]
Stored = Annotated[StoredCompletions, Depends(_service("stored"))]
Distill = Annotated[DistillService, Depends(_service("distill"))]
Exports = Annotated[ExportService, Depends(_service("exports"))]
Graders = Annotated[GraderService, Depends(_service("graders"))]
