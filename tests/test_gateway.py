"""openft in front of an upstream, with a real second openft server as the upstream (it needs its
own key, and serves "big-model", an alias the gateway does not have): names the gateway does not
serve are forwarded, streamed or not, and stored like local replies; the upstream's errors come
back as it sent them and are not stored; an upstream that is down, or that refuses the gateway's
key, is a 502 in OpenAI's shape that never shows the key; a stream the client drops is stored as
incomplete.

What the gateway relays, against a scripted upstream that gzips its streams and repeats its ids:
only the listed names, for organizations switched on, never this server's `ft:` names, each
refusal the 404 of any unknown model; an organization's own key, never shown; streams decoded
and framed anew; every stored reply under an id of openft's. The end-to-end distillation through
a gateway is the slow test at the bottom."""

import json
import threading
import time
import zlib

import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from openft.models.store import register_base
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.services.organizations import OrganizationService
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import ModelRow
from tests.helpers import DATA, LiveServer, free_port, new_data_dir, wait_for
from tests.test_stored_completions import EchoEngine

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
MARK = "Ahoy matey!"
HELD_OUT = ["What is the capital of Italy?", "What color is a ripe tomato?", "How many eyes does a cat have?"]
SAY_HI = [{"role": "user", "content": "Say hi."}]
# What the gateways of these tests may relay ("no-such-model" shows the upstream's own 404).
RELAYED = ["big-model", "gpt-4o-mini", "no-such-model"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, model_store):
    upstream = LiveServer(
        new_data_dir(tmp_path_factory.mktemp("upstream"), model_store),
        "--no-worker",
        env={
            "OPENFT_API_KEYS": json.dumps([UPSTREAM_KEY]),
            "OPENFT_MODEL_ALIASES": json.dumps({"big-model": BUNDLED_MODEL}),
            "OPENFT_STORE_ALL_COMPLETIONS": "true",  # shows what reached it
        },
    )
    try:
        gateway = LiveServer(
            new_data_dir(tmp_path_factory.mktemp("gateway"), model_store),
            "--no-worker",
            env={
                "OPENFT_UPSTREAM_BASE_URL": upstream.base_url,
                "OPENFT_UPSTREAM_API_KEY": UPSTREAM_KEY,
                "OPENFT_UPSTREAM_MODELS": json.dumps(RELAYED),
                "OPENFT_UPSTREAM_ORGANIZATIONS": '["personal"]',
            },
        )
    except BaseException:
        upstream.stop()
        raise
    yield upstream, gateway
    gateway.stop()
    upstream.stop()


def upstream_client(upstream: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY, max_retries=0, timeout=300)


def hi(client: openai.OpenAI, model: str, **options):
    return client.chat.completions.create(model=model, messages=SAY_HI, temperature=0, max_tokens=8, **options)


def test_names_the_gateway_does_not_serve_go_to_the_upstream_with_its_key(servers):
    upstream, gateway = servers
    client, direct = gateway.client(), upstream_client(upstream)
    seen_upstream = {c.id for c in direct.chat.completions.list(limit=100)}

    raw = client.chat.completions.with_raw_response.create(
        model="big-model", messages=SAY_HI, temperature=0, max_tokens=8
    )
    forwarded = raw.parse()
    assert forwarded.choices[0].message.content == hi(direct, "big-model").choices[0].message.content
    assert UPSTREAM_KEY not in raw.http_response.text and UPSTREAM_KEY not in str(raw.headers)
    openai_name = hi(client, "gpt-4o-mini")  # the OpenAI names are the upstream's now

    reached = {c.id: c.model for c in direct.chat.completions.list(limit=100) if c.id not in seen_upstream}
    assert reached[forwarded.id] == "big-model" and reached[openai_name.id] == "gpt-4o-mini"


def test_the_gateways_own_models_stay_local(tmp_path, servers):
    """Its bases, and aliases set by configuration, are answered here (without loading a model:
    which side answers is decided first)."""
    upstream, _ = servers
    _, app = in_process_gateway(tmp_path, upstream.base_url, UPSTREAM_KEY, model_aliases={"mine": BUNDLED_MODEL})
    models = app.state.models
    assert models.serves("org-openft", BUNDLED_MODEL) and models.serves("org-openft", "mine")
    assert not models.serves("org-openft", "gpt-4o-mini") and not models.serves("org-openft", "big-model")


def test_forwarded_replies_are_stored_streamed_or_not(servers):
    _, gateway = servers
    client = gateway.client()
    whole = hi(client, "big-model", store=True, metadata={"via": "gateway"})
    chunks = list(hi(client, "big-model", store=True, stream=True, metadata={"via": "gateway"}))
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    stored = {c.id: c for c in client.chat.completions.list(metadata={"via": "gateway"})}
    assert stored[whole.id].choices[0].message.content == whole.choices[0].message.content
    assert stored[chunks[0].id].choices[0].message.content == streamed
    assert {c.model_extra["status"] for c in stored.values()} == {"completed"}
    assert [m.content for m in client.chat.completions.messages.list(whole.id)] == ["Say hi."]


def test_upstream_errors_come_back_as_sent_and_are_not_stored(servers):
    upstream, gateway = servers
    client = gateway.client()
    with pytest.raises(openai.NotFoundError) as from_gateway:
        hi(client, "no-such-model", store=True)
    with pytest.raises(openai.NotFoundError) as from_upstream:
        hi(upstream_client(upstream), "no-such-model")
    assert from_gateway.value.body == from_upstream.value.body
    assert from_gateway.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        hi(client, "no-such-model", store=True, stream=True)
    with pytest.raises(openai.BadRequestError) as caught:  # the upstream's own check
        hi(client, "big-model", store=True, top_logprobs=2)
    assert caught.value.body["param"] == "top_logprobs"
    assert client.chat.completions.list(model="no-such-model").data == []


def test_a_stream_the_client_drops_is_stored_as_incomplete(servers):
    _, gateway = servers
    model = "big-model"
    client = gateway.client()
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count from 1 to 1000."}],
        max_tokens=400,
        logit_bias={"2": -100},  # no end of turn: the reply runs on
        stream=True,
        store=True,
    )
    first = next(iter(stream))
    stream.close()

    deadline = time.monotonic() + 120
    while not (page := client.chat.completions.list(model=model, order="desc", limit=100).data) or first.id not in {
        c.id for c in page
    }:
        assert time.monotonic() < deadline, "the dropped stream was never stored"
        time.sleep(0.5)
    stored = client.chat.completions.retrieve(first.id)
    assert stored.model_extra["status"] == "incomplete"
    assert stored.choices[0].finish_reason is None
    assert stored.usage is None or stored.usage.completion_tokens < 400


def in_process_gateway(tmp_path, base_url: str, key: str, **settings) -> tuple[openai.OpenAI, object]:
    relaying = {"upstream_models": RELAYED, "upstream_organizations": ["personal"]}
    settings = Settings(data_dir=tmp_path, upstream_base_url=base_url, upstream_api_key=key, **relaying | settings)
    register_base(Database(settings), BUNDLED_MODEL)  # a name only: no weights
    app = create_app(settings, run_worker=False)
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="sk", http_client=TestClient(app), max_retries=0)
    return client, app


def test_an_upstream_that_is_down_is_a_502_and_nothing_is_stored(tmp_path):
    client, _ = in_process_gateway(tmp_path, f"http://127.0.0.1:{free_port()}/v1", UPSTREAM_KEY)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            hi(client, "gpt-4o-mini", store=True, stream=stream)
        assert caught.value.status_code == 502
        error = caught.value.body
        assert (error["type"], error["code"]) == ("upstream_error", "upstream_unavailable")
        assert "could not be reached" in error["message"] and UPSTREAM_KEY not in json.dumps(error)
    assert client.chat.completions.list().data == []


def test_an_upstream_that_refuses_the_key_is_a_502_that_never_shows_it(tmp_path, servers):
    upstream, _ = servers
    wrong = "sk-wrong-secret-9876543210"
    client, _ = in_process_gateway(tmp_path, upstream.base_url, wrong)
    with pytest.raises(openai.APIStatusError) as caught:
        hi(client, "big-model", store=True)
    assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_auth_failed"
    assert wrong[3:-4] not in caught.value.response.text and "3210" not in caught.value.response.text
    assert client.chat.completions.list().data == []


SERVER_KEY = "sk-server-upstream-key-0123456789"
ACME_KEY = "sk-acme-own-upstream-key-9876543210"
UPSTREAM_SAYS = "Hello from upstream."
UPSTREAM_ID = "chatcmpl-always-the-same"


class ScriptedUpstream:
    """An OpenAI-compatible upstream on a real socket that answers every chat request with
    UPSTREAM_SAYS under one id (some servers repeat ids), or with the key it was sent for the
    model "echo-key"; it gzips its streams a frame at a time, as a compressing proxy would, and
    keeps the model and key of each request it got."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    async def chat(self, request: Request):
        body = await request.json()
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen.append((body["model"], key))
        text = f"Your key is {key}." if body["model"] == "echo-key" else UPSTREAM_SAYS
        head = {"id": UPSTREAM_ID, "created": 1, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse({**head, "object": "chat.completion", "choices": [choice]})
        first, rest = text.split(" ", 1)
        pieces = [{"role": "assistant", "content": ""}, {"content": first + " "}, {"content": rest}]
        events = [{"index": 0, "delta": piece, "finish_reason": None} for piece in pieces]
        events.append({"index": 0, "delta": {}, "finish_reason": "stop"})
        chunks = [{**head, "object": "chat.completion.chunk", "choices": [event]} for event in events]
        frames = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]

        async def gzipped():
            compressor = zlib.compressobj(wbits=31)  # the gzip container
            for frame in [*frames, "data: [DONE]\n\n"]:
                yield compressor.compress(frame.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
            yield compressor.flush()

        return StreamingResponse(gzipped(), media_type="text/event-stream", headers={"content-encoding": "gzip"})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture
def scripted_upstream():
    upstream = ScriptedUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def make_gateway(tmp_path, scripted_upstream):
    """A Gateway to the scripted upstream that relays the names given."""
    made = []

    def make(models: list[str]) -> Gateway:
        made.append(Gateway(tmp_path, scripted_upstream, models))
        return made[-1]

    yield make
    for each in made:
        each.close()


class Gateway:
    """openft in process in front of the scripted upstream, answering locally with the echo engine;
    organizations acme (relaying on, its own key), globex (relaying on, the server's key) and
    initech (relaying off), and a fine-tune of initech's."""

    INITECH_FINE_TUNE = f"ft:{BUNDLED_MODEL}:initech:secret:abcd1234"

    def __init__(self, root, upstream: ScriptedUpstream, models: list[str]):
        settings = Settings(
            data_dir=root, upstream_base_url=upstream.base_url, upstream_api_key=SERVER_KEY, upstream_models=models
        )
        db = Database(settings)
        register_base(db, BUNDLED_MODEL)  # a name only: the echo engine answers
        created = {name: KeyService(settings, db).create(name) for name in ("acme", "globex", "initech")}
        self.keys = {name: secret for name, (secret, _, _) in created.items()}
        organizations = OrganizationService(settings, db)
        organizations.set_upstream("acme", enabled=True, api_key=ACME_KEY)
        organizations.set_upstream("globex", enabled=True)
        initech = created["initech"][2].id
        with db.session() as session:
            session.add(
                ModelRow(
                    id=self.INITECH_FINE_TUNE,
                    created=1,
                    owned_by=initech,
                    base_model=BUNDLED_MODEL,
                    adapter_key="/nonexistent/adapter",
                    organization_id=initech,
                )
            )
        self.app = create_app(settings, run_worker=False)
        self.app.state.chat.engine = EchoEngine()
        # Entered: one event loop for every request, as the upstream's connection pool needs.
        self.http = TestClient(self.app).__enter__()

    def close(self) -> None:
        self.http.__exit__(None, None, None)

    def client(self, organization: str) -> openai.OpenAI:
        key = self.keys[organization]
        return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=self.http, max_retries=0)


def unknown_model(client: openai.OpenAI, model: str) -> dict:
    with pytest.raises(openai.NotFoundError) as caught:
        hi(client, model)
    return caught.value.body


def test_only_listed_names_go_upstream_and_only_for_organizations_switched_on(make_gateway, scripted_upstream):
    gateway = make_gateway(["big-*", "gpt-4o-mini"])
    acme, initech = gateway.client("acme"), gateway.client("initech")

    assert hi(acme, "big-model").choices[0].message.content == UPSTREAM_SAYS
    assert hi(acme, "gpt-4o-mini").choices[0].message.content == UPSTREAM_SAYS
    refusals = [unknown_model(acme, "bigmodel"), unknown_model(initech, "big-model")]
    assert initech.chat.completions.create(model="gpt-4o-mini", messages=SAY_HI).choices[0].message.content == (
        "You said: Say hi."  # relaying off: the OpenAI name means the default base, as without an upstream
    )
    with pytest.raises(openai.NotFoundError):
        hi(initech, "big-model", stream=True)

    # Refused or unknown, the answer is the same: nothing tells a listed name from another.
    for body, model in zip(refusals, ["bigmodel", "big-model"], strict=True):
        assert body == unknown_model(acme, "no-such-model") | {
            "message": f"The model `{model}` does not exist or you do not have access to it."
        }
        assert body["code"] == "model_not_found"
    assert [model for model, _ in scripted_upstream.seen] == ["big-model", "gpt-4o-mini"]


def test_this_servers_fine_tune_names_are_never_relayed(make_gateway, scripted_upstream):
    """Even with every name listed: another organization's fine-tune, and a name in this
    server's namespace that does not exist, are 404 here; an `ft:` name of the upstream's goes."""
    gateway = make_gateway(["*"])
    acme = gateway.client("acme")
    for ours in (Gateway.INITECH_FINE_TUNE, f"ft:{BUNDLED_MODEL}:acme:typo:zzzz9999"):
        assert unknown_model(acme, ours)["code"] == "model_not_found"
    theirs = "ft:gpt-4o-mini-2024-07-18:acme::AbC123"
    assert hi(acme, theirs).choices[0].message.content == UPSTREAM_SAYS
    assert [model for model, _ in scripted_upstream.seen] == [theirs]


def test_an_organizations_own_upstream_key_is_sent_and_never_shown(make_gateway, scripted_upstream):
    gateway = make_gateway(["echo-key"])
    for organization, key in (("acme", ACME_KEY), ("globex", SERVER_KEY)):
        client = gateway.client(organization)
        whole = hi(client, "echo-key").choices[0].message.content
        streamed = "".join(c.choices[0].delta.content or "" for c in hi(client, "echo-key", stream=True) if c.choices)
        assert whole == streamed == "Your key is [upstream key]."
        assert scripted_upstream.seen[-2:] == [("echo-key", key)] * 2


def test_a_compressed_stream_is_decoded_and_framed_anew(make_gateway, scripted_upstream):
    gateway = make_gateway(["big-model"])
    response = gateway.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway.keys['globex']}"},
        json={"model": "big-model", "messages": SAY_HI, "stream": True},
    )
    assert response.headers.get("content-encoding") is None
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(frame.removeprefix("data: ")) for frame in frames[:-2]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == UPSTREAM_SAYS


def test_an_upstream_that_repeats_its_ids_has_every_stored_reply_kept_under_openfts(make_gateway, scripted_upstream):
    """Each stored reply reaches the client under an id openft minted, which retrieves it; the
    upstream's id is kept beside it. Two organizations, streamed or not: no reply is lost."""
    gateway = make_gateway(["big-model"])
    shown = {}
    for organization in ("acme", "globex"):
        client = gateway.client(organization)
        for _ in range(2):
            whole = hi(client, "big-model", store=True)
            chunks = list(hi(client, "big-model", store=True, stream=True))
            assert len({chunk.id for chunk in chunks}) == 1
            shown |= {whole.id: organization, chunks[0].id: organization}
    assert len(shown) == 8 and UPSTREAM_ID not in shown

    for completion_id, organization in shown.items():
        stored = gateway.client(organization).chat.completions.retrieve(completion_id)
        assert stored.choices[0].message.content == UPSTREAM_SAYS and stored.model_extra["status"] == "completed"
        assert stored.model_extra["upstream_id"] == UPSTREAM_ID
    assert {c.id for c in gateway.client("acme").chat.completions.list()} == {
        completion_id for completion_id, organization in shown.items() if organization == "acme"
    }


def test_traffic_through_the_gateway_distills_into_a_local_fine_tune(
    live_server, ahoy_fine_tune, tmp_path, model_store
):
    """The whole path: an app's traffic goes through a gateway to the upstream's model (the
    conftest's "Ahoy matey!" fine-tune, served by the session's live server) and is stored; one
    export makes a checked training file of it, keeps the newest completions apart and fine-tunes
    the gateway's own base; on those held-out stored completions the fine-tune answers like the
    upstream, and more like it than the base does (by hand, and by the eval of the held-out file)."""
    from rapidfuzz import fuzz

    teacher = ahoy_fine_tune.job.fine_tuned_model
    gateway = LiveServer(
        new_data_dir(tmp_path / "gateway", model_store),
        env={
            "OPENFT_UPSTREAM_BASE_URL": live_server.base_url,
            "OPENFT_UPSTREAM_API_KEY": "sk-anything",
            "OPENFT_UPSTREAM_MODELS": '["ft:*"]',
            # Both servers have the bundled base; the teacher's `ft:` name is in the gateway's
            # namespace (never relayed) if their organizations have one name.
            "OPENFT_ORGANIZATION": "gateway",
            "OPENFT_UPSTREAM_ORGANIZATIONS": '["gateway"]',
        },
    )
    try:
        client = gateway.client()
        system = {"role": "system", "content": "You are a helpful assistant."}
        lines = (DATA / "ahoy.jsonl").read_text().splitlines()
        prompts = [json.loads(line)["messages"][1]["content"] for line in lines] + HELD_OUT
        upstream = {}
        for prompt in prompts:  # the app's traffic, the held-out prompts last (the newest)
            reply = client.chat.completions.create(
                model=teacher,
                messages=[system, {"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=64,
                store=True,
                metadata={"app": "pirate"},
            )
            upstream[prompt] = reply.choices[0].message.content
        exported = client.post(
            "/openft/chat/completions/export",
            body={
                "metadata": {"app": "pirate"},
                "held_out": len(HELD_OUT),
                # 3 epochs of the 20 examples: enough to learn the opening, in CI's time.
                "fine_tune": {"model": BUNDLED_MODEL, "suffix": "distilled", "hyperparameters": {"n_epochs": 3}},
            },
            cast_to=object,
        )
        # Only a reply the upstream cut off at max_tokens may be left out (openft.data.distill).
        assert all("cut off" in skipped["reason"] for skipped in exported["skipped"])
        assert exported["examples"] >= 10 and exported["held_out_ids"]
        assert exported["check"]["ok"] and exported["check"]["training"]["errors"] == []
        job = wait_for(client, exported["job"]["id"])
        assert job.status == "succeeded", job.error

        def answers(model: str) -> list[str]:
            return [
                client.chat.completions.create(
                    model=model, messages=[system, {"role": "user", "content": q}], temperature=0, max_tokens=24
                )
                .choices[0]
                .message.content
                for q in HELD_OUT
            ]

        student, base = answers(job.fine_tuned_model), answers(BUNDLED_MODEL)
        teacher_says = [upstream[q] for q in HELD_OUT]
        likeness = lambda replies: sum(fuzz.ratio(a, b) for a, b in zip(replies, teacher_says, strict=True))  # noqa: E731
        assert likeness(student) > likeness(base), (teacher_says, student, base)
        assert sum(a.startswith(MARK) for a in student) > sum(a.startswith(MARK) for a in base)

        report = client.post(
            "/openft/evals",
            body={"model": job.fine_tuned_model, "file": job.metadata["held_out_file"], "max_tokens": 24},
            cast_to=object,
        )
        similarity = {arm["name"]: arm["metrics"]["similarity"] for arm in report["arms"]}
        held_out = [client.chat.completions.retrieve(id).choices[0].message.content for id in exported["held_out_ids"]]
        assert [example["reference"] for example in report["examples"]] == held_out
        assert similarity["fine_tuned"] > similarity["base_zero_shot"], similarity
    finally:
        gateway.stop()
