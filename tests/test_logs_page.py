"""The dashboard's Logs page in a real browser (headless chromium, Playwright), against the app
under uvicorn in this process with a scripted engine (nothing to load, so it is quick): stored
completions are listed, filtered by text and metadata, one conversation opens, and Distill turns
the selected ones into a checked file, a held-out file and a job, then lands on the job's page.

OPENFT_SKIP_BROWSER=1 skips it on a machine without chromium, as test_dashboard_browser.py."""

import os
import socket
import threading
import time
from pathlib import Path

import openai
import pytest
import uvicorn

from openft.models.store import register_base
from openft.server.app import create_app
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_stored_completions import EchoEngine

pytestmark = pytest.mark.skipif(os.environ.get("OPENFT_SKIP_BROWSER") == "1", reason="OPENFT_SKIP_BROWSER=1")


@pytest.fixture
def origin(data_dir):
    settings = Settings(data_dir=data_dir)
    register_base(Database(settings), BUNDLED_MODEL)
    app = create_app(settings, run_worker=False)
    app.state.chat.engine = EchoEngine()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_the_logs_page_lists_filters_shows_and_distills(origin):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium`, or set OPENFT_SKIP_BROWSER=1")
    from playwright.sync_api import expect, sync_playwright

    client = openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-local", max_retries=0)
    for n in range(12):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"question {n}"}],
            store=True,
            metadata={"app": "shop" if n < 11 else "other"},
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        failures = []
        page.on("pageerror", lambda error: failures.append(str(error)))
        page.goto(f"{origin}/logs")
        expect(page.locator("#logs tbody tr")).to_have_count(12)

        page.fill("#filter-text", "QUESTION 1")
        page.click("#log-filters button")
        expect(page.locator("#logs tbody tr")).to_have_count(3)  # 1, 10, 11
        page.fill("#filter-text", "")
        page.fill("#filter-metadata", "app=shop")
        page.click("#log-filters button")
        expect(page.locator("#logs tbody tr")).to_have_count(11)

        page.locator("#logs tbody tr a").first.click()
        expect(page.locator("#conversation-messages")).to_contain_text("user: question 10")
        expect(page.locator("#conversation-messages")).to_contain_text("You said: question 10")

        page.check("#select-all")
        page.fill("#distill-held-out", "1")
        page.click("#distill")
        page.wait_for_url("**/jobs/ftjob-*", timeout=120_000)
        job_id = page.url.rsplit("/", 1)[1]
        browser.close()

    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.metadata["held_out_file"] and job.model == BUNDLED_MODEL
    lines = client.files.content(job.training_file).read().decode().splitlines()
    assert len(lines) == 10
    assert failures == [], failures
