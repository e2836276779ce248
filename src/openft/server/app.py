"""The FastAPI application. Neither importing this module nor creating the app imports torch:
the inference engine (`inference.make_engine`) starts on the first chat request (but with
`memory://` storage, where it runs in this process)."""

import asyncio
import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openft.errors import OpenFTError, file_too_large
from openft.inference import make_engine
from openft.runner.exporter import Exporter
from openft.runner.worker import Worker
from openft.server import dashboard
from openft.server.routes import (
    chat,
    distill,
    evals,
    evals_api,
    export,
    file_checks,
    files,
    fine_tuning,
    graders,
    health,
    models,
)
from openft.services.chat import ChatService
from openft.services.completions import Completions
from openft.services.distill import DistillService
from openft.services.eval_runner import EvalRunner
from openft.services.evals import EvalService
from openft.services.evals_api import EvalsAPI
from openft.services.exports import ExportService
from openft.services.file_checks import FileCheckService
from openft.services.files import FileService
from openft.services.fine_tuning import FineTuningService
from openft.services.graders import GraderService
from openft.services.keys import KeyService
from openft.services.models import ModelService
from openft.services.organizations import OrganizationService
from openft.services.relay import RelayPolicy
from openft.services.stored_completions import StoredCompletions
from openft.services.upstream import Upstream
from openft.settings import Settings
from openft.store.db import Database

log = logging.getLogger("openft.server")
# Room for the multipart envelope around an upload of exactly `max_upload_bytes`.
MULTIPART_OVERHEAD_BYTES = 2**20


def create_app(settings: Settings, run_worker: bool = True) -> FastAPI:
    db = Database(settings)
    model_service = ModelService(settings, db)
    file_service = FileService(settings, db)
    stored = StoredCompletions(settings, db)
    stored.recover()
    upstream = Upstream(settings.upstream_base_url) if settings.upstream_base_url else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        threads = []
        if run_worker:  # the job worker, and the exporter beside it (runner/exporter.py)
            for name, loop in (("openft-worker", Worker(settings, db)), ("openft-exporter", Exporter(settings, db))):
                threads.append(threading.Thread(target=loop.run_forever, args=(stop,), name=name, daemon=True))
                threads[-1].start()
        # Eval runs sample through this server's engine, so their runner lives here (an asyncio task).
        stop_runs = asyncio.Event()
        runs = asyncio.create_task(eval_runner.run_forever(stop_runs)) if run_worker else None
        stored.recorder.start_sweeping()
        yield
        stop_runs.set()
        if runs:
            await runs  # the run in progress goes back to the queue
        stop.set()
        # Replies already sent may still be queued for storing: written before the process ends.
        stored.recorder.close()
        if upstream:
            await upstream.close()
        for thread in threads:
            thread.join(timeout=30)

    app = FastAPI(title="openft", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.keys = KeyService(settings, db)
    app.state.files = file_service
    app.state.models = model_service
    app.state.fine_tuning = FineTuningService(settings, db, file_service, model_service)
    app.state.chat = ChatService(model_service, make_engine(settings), settings.default_max_tokens)
    app.state.stored = stored
    relay = RelayPolicy(settings, model_service, OrganizationService(settings, db))
    app.state.completions = Completions(settings, app.state.chat, relay, stored.recorder, upstream)
    app.state.graders = GraderService(settings, app.state.completions, model_service)
    app.state.evals_api = EvalsAPI(db, file_service, model_service, stored, app.state.graders)
    eval_runner = EvalRunner(settings, db, app.state.chat, app.state.graders)
    app.state.evals = EvalService(db, file_service, model_service, app.state.chat, app.state.evals_api, eval_runner)
    app.state.file_checks = FileCheckService(settings, file_service, model_service)
    app.state.distill = DistillService(stored, file_service, app.state.file_checks, app.state.fine_tuning)
    app.state.exports = ExportService(settings, db, model_service, file_service)
    for module in (files, file_checks, fine_tuning, graders, export, models, chat, distill, evals, evals_api, health):
        app.include_router(module.router)
    dashboard.mount(app)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    return app


class BodyLimit:
    """Answers 413 before reading a body whose Content-Length is over the upload limit, so an
    oversized upload (authenticated or not) is never spooled to disk. Bodies sent without a
    length are caught by FileService as they stream."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit + MULTIPART_OVERHEAD_BYTES:
                error = file_too_large(self.limit)
                await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenFTError)
    async def openft_error(_: Request, error: OpenFTError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
        param = ".".join(location) or None
        message = f"{first.get('msg', 'Invalid request')}" + (f": '{param}'" if param else "")
        return JSONResponse(OpenFTError(400, message, param=param).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        body = OpenFTError(error.status_code, str(error.detail)).body()
        return JSONResponse(body, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        body = OpenFTError(500, "The server had an error processing your request.", type="server_error").body()
        return JSONResponse(body, status_code=500)
