"""Every way the server reports an error has OpenAI's shape: `{"error": {"message", "type",
"param", "code"}}` with the right status, from each error handler; and a stream that fails after
its headers went out ends with an error frame, then `data: [DONE]` (what the SDK hides)."""

import json

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from openai.types.shared import ErrorObject

from openft.server.app import create_app
from openft.settings import Settings

ERROR_KEYS = {"message", "type", "param", "code"}


def assert_error(response: httpx.Response, status: int, type: str = "invalid_request_error") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    error = ErrorObject.model_validate(body["error"])
    assert error.message and error.type == type
    return body["error"]


@pytest.fixture
def app(tmp_path):
    return create_app(Settings(data_dir=tmp_path / "data", max_upload_bytes=2**20), run_worker=False)


@pytest.fixture
def http(app):
    with TestClient(app, base_url="http://testserver/v1", raise_server_exceptions=False) as client:
        yield client


def test_an_openft_error_has_its_status_param_and_code(http):
    error = assert_error(http.get("/fine_tuning/jobs/ftjob-nope"), 404)
    assert (error["param"], error["code"]) == ("fine_tune_id", "fine_tune_not_found")


def test_a_request_that_fails_validation_is_400_naming_the_parameter(http):
    error = assert_error(http.post("/fine_tuning/jobs", json={"model": "gpt-3.5-turbo"}), 400)
    assert error["param"] == "training_file"


def test_unknown_routes_and_methods_are_http_errors_in_the_same_shape(http):
    assert_error(http.get("/no-such-resource"), 404)
    assert_error(http.put("/files"), 405)


def test_an_unexpected_error_is_a_500_server_error_without_details(app, http):
    def broken(*args):
        raise RuntimeError("secret internals")

    app.state.files.list = broken
    error = assert_error(http.get("/files"), 500, type="server_error")
    assert "secret" not in error["message"]


def test_an_oversized_body_is_413_before_it_is_read(http):
    headers = {"Content-Length": str(3 * 2**20), "Content-Type": "multipart/form-data; boundary=x"}
    error = assert_error(http.post("/files", content=b"", headers=headers), 413)
    assert (error["param"], error["code"]) == ("file", "file_too_large")


def test_a_wrong_key_is_401_once_keys_exist(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data", api_keys=["sk-right"]), run_worker=False)
    with TestClient(app, base_url="http://testserver/v1") as http:
        assert_error(http.get("/models"), 401)
        error = assert_error(http.get("/models", headers={"Authorization": "Bearer sk-wrong"}), 401)
        assert error["code"] == "invalid_api_key"


def test_a_stream_that_fails_midway_ends_with_an_error_frame_then_done(live_server):
    """The engine process killed while a reply streams: the status line is long gone, so the
    error is a frame of its own, and the stream still ends as every stream does."""
    body = {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "Count from one to a thousand."}],
        "max_tokens": 1000,
        "logit_bias": {"2": -100},  # <|im_end|> banned: the reply cannot end before the kill
        "stream": True,
    }
    frames = []
    with httpx.stream("POST", f"{live_server.base_url}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            frames.append(line.removeprefix("data: "))
            if len(frames) == 5:
                server = psutil.Process(live_server.process.pid)
                [engine] = [p for p in server.children() if "openft.inference.process" in p.cmdline()]
                engine.kill()
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "server_error"
    assert all("error" not in json.loads(frame) for frame in frames[:-2])
