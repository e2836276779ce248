"""Page shells. Every page is public: it holds no data until its script has the API key."""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _page(request: Request, template: str, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {"page": template.removesuffix(".html"), **context})


@router.get("/")
def jobs(request: Request):
    return _page(request, "jobs.html")


@router.get("/files")
def files(request: Request):
    return _page(request, "files.html")


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str):
    return _page(request, "job.html", job_id=job_id)


@router.get("/playground")
def playground(request: Request):
    return _page(request, "playground.html")


@router.get("/evals")
def evals(request: Request):
    return _page(request, "evals.html")


@router.get("/evals/{eval_id}")
def eval_report(request: Request, eval_id: str):
    return _page(request, "eval.html", eval_id=eval_id)


@router.get("/evals/{eval_id}/runs/{run_id}")
def eval_run(request: Request, eval_id: str, run_id: str):
    """A run of the Evals API: its `report_url`."""
    return _page(request, "eval_run.html", eval_id=eval_id, run_id=run_id)


@router.get("/logs")
def logs(request: Request):
    return _page(request, "logs.html")


@router.get("/login")
def login(request: Request):
    return _page(request, "login.html")


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
