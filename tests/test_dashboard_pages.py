"""The dashboard's pages without a browser: public shells (the data comes from the API, with the
caller's key), served with their scripts, outside the OpenAPI description, nothing from a CDN."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import openft.server.dashboard as dashboard
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.settings import Settings
from openft.store.db import Database

PAGES = [
    "/",
    "/files",
    "/jobs/ftjob-abc",
    "/playground",
    "/evals",
    "/evals/eval-abc",
    "/evals/eval_abc/runs/evalrun_abc",
    "/logs",
    "/login",
]
ASSETS = Path(dashboard.__file__).parent


@pytest.fixture
def http(tmp_path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data")
    KeyService(settings, Database(settings)).create("acme")  # keys exist: the API needs one, pages do not
    return TestClient(create_app(settings, run_worker=False))


def test_pages_are_public_shells_whose_scripts_are_served(http):
    for path in PAGES:
        page = http.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
            assert http.get(asset).status_code == 200, (path, asset)
    assert 'data-job-id="ftjob-abc"' in http.get("/jobs/ftjob-abc").text
    assert http.get("/v1/files").status_code == 401


def test_ids_in_urls_are_escaped(http):
    page = http.get('/jobs/"><img src=x onerror=alert(1)>')
    assert page.status_code == 200
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text


def test_pages_are_not_api_operations(http):
    paths = http.get("/openapi.json").json()["paths"]
    assert all(path.startswith("/v1/") for path in paths)


def test_nothing_is_loaded_from_another_origin():
    for asset in [*ASSETS.glob("templates/*.html"), *ASSETS.glob("static/*")]:
        assert not re.search(
            r"(?:src|href)=\"(?:https?:)?//|import\s.*https?://|url\(['\"]?https?:", asset.read_text()
        ), asset
