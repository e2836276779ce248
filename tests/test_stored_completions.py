"""Stored chat completions through the official client, in process, with a scripted engine (the
real model and a real upstream are in test_gateway.py): store on and off, metadata and its
limits, filters and paging, update and delete, another organization's as absent, retention that
deletes, streamed replies stored whole, and the queue drained on shutdown. Nothing is lost: a
record the database refuses costs only itself, a read never waits on traffic that came after
it, and a server killed under traffic loses no completion whose reply a client received."""

import logging
import multiprocessing
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletion, ChatCompletionDeleted, ChatCompletionStoreMessage
from sqlalchemy import func, select

from openft.inference.engine import Chunk
from openft.models.store import register_base
from openft.server.app import create_app
from openft.services.keys import KeyService
from openft.services.stored_completions import Record
from openft.settings import BUNDLED_MODEL, Settings
from openft.store.db import Database
from openft.store.tables import StoredCompletionRow
from tests.helpers import free_port


class EchoEngine:
    """Answers "You said: <the last message>", in two chunks."""

    def context_length(self, model):
        return 8192

    def count_prompt_tokens(self, model, prompt):
        return 5

    def generate(self, model, prompt, params):
        yield Chunk("You said: ", None, 5, 3)
        yield Chunk(prompt.messages[-1]["content"], "stop", 5, 6)


class Server:
    def __init__(self, root, **overrides):
        self.settings = Settings(data_dir=root, **overrides)
        self.db = Database(self.settings)
        register_base(self.db, BUNDLED_MODEL)  # a name only: no weights
        self.keys = KeyService(self.settings, self.db)
        self.app = create_app(self.settings, run_worker=False)
        self.app.state.chat.engine = EchoEngine()
        self.http = TestClient(self.app)

    def client(self, key: str = "sk-test") -> openai.OpenAI:
        return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=self.http, max_retries=0)

    def rows(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(StoredCompletionRow))


def ask(client: openai.OpenAI, text: str, **options) -> ChatCompletion:
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **options)


@pytest.fixture
def server(tmp_path) -> Server:
    return Server(tmp_path / "data")


def test_only_completions_asked_to_be_stored_are_listed_with_request_and_metadata(server):
    client = server.client()
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    stored = ask(client, "hello", store=True, metadata={"app": "demo"}, temperature=0.5, tools=[weather], seed=7)
    ask(client, "not kept")
    ask(client, "not kept either", store=False)

    page = client.chat.completions.list()
    assert [c.id for c in page.data] == [stored.id] and page.has_more is False
    [listed] = page.data
    assert isinstance(listed, ChatCompletion)
    assert listed.choices[0].message.content == "You said: hello" and listed.choices[0].finish_reason == "stop"
    assert listed.model == "gpt-4o-mini" and listed.usage.total_tokens == stored.usage.total_tokens
    extra = listed.model_extra
    assert listed.metadata == {"app": "demo"} and extra["status"] == "completed"
    assert (extra["temperature"], extra["seed"], extra["tools"]) == (0.5, 7, [weather])

    retrieved = client.chat.completions.retrieve(stored.id)
    assert retrieved.choices[0].message.content == "You said: hello" and retrieved.created == stored.created
    messages = client.chat.completions.messages.list(stored.id)
    assert [(type(m), m.id, m.role, m.content) for m in messages.data] == [
        (ChatCompletionStoreMessage, f"{stored.id}-0", "user", "hello")
    ]


def test_metadata_filters_model_filter_order_and_paging(server):
    client = server.client()
    ids = [ask(client, f"q{n}", store=True, metadata={"topic": "ab"[n % 2], "n": str(n)}).id for n in range(7)]

    topic_a = client.chat.completions.list(metadata={"topic": "a"}, limit=2)
    assert len(topic_a.data) == 2 and topic_a.has_more
    assert [c.id for c in topic_a] == ids[0::2]  # the client follows `after` through every page
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "b", "n": "3"})] == [ids[3]]
    assert [c.id for c in client.chat.completions.list(order="desc", limit=3).data] == ids[::-1][:3]
    assert [c.id for c in client.chat.completions.list(after=ids[4])] == ids[5:]
    assert client.chat.completions.list(model="gpt-3.5-turbo").data == []
    assert len(list(client.chat.completions.list(model="gpt-4o-mini"))) == 7


def test_messages_are_paged(server):
    client = server.client()
    history = [{"role": "system", "content": "Be brief."}]
    for n in range(4):
        history += [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]
    history.append({"role": "user", "content": [{"type": "text", "text": "last"}]})
    stored = client.chat.completions.create(model="gpt-4o-mini", messages=history, store=True)

    first = client.chat.completions.messages.list(stored.id, limit=4)
    assert [m.id for m in first.data] == [f"{stored.id}-{n}" for n in range(4)] and first.has_more
    every = list(client.chat.completions.messages.list(stored.id, limit=4))
    assert [m.role for m in every] == [m["role"] for m in history]
    assert every[-1].content == "last" and every[-1].content_parts[0].text == "last"
    newest = client.chat.completions.messages.list(stored.id, order="desc", limit=1).data
    assert newest[0].id == f"{stored.id}-9"


def test_update_replaces_metadata_and_delete_removes(server):
    client = server.client()
    stored = ask(client, "hello", store=True, metadata={"a": "1"})

    updated = client.chat.completions.update(stored.id, metadata={"label": "good"})
    assert updated.metadata == {"label": "good"}
    assert client.chat.completions.retrieve(stored.id).metadata == {"label": "good"}
    assert client.chat.completions.list(metadata={"a": "1"}).data == []

    deleted = client.chat.completions.delete(stored.id)
    assert isinstance(deleted, ChatCompletionDeleted) and (deleted.id, deleted.deleted) == (stored.id, True)
    assert deleted.object == "chat.completion.deleted"
    for call in (
        lambda: client.chat.completions.retrieve(stored.id),
        lambda: client.chat.completions.delete(stored.id),
        lambda: client.chat.completions.messages.list(stored.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["message"] == f"Chat completion with id '{stored.id}' not found."
    assert server.rows() == 0


def test_metadata_beyond_openais_limits_is_400_and_nothing_is_stored(server):
    client = server.client()
    for metadata, where in (
        ({f"k{n}": "v" for n in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"k": "v" * 513}, "metadata"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, "hello", store=True, metadata=metadata)
        assert caught.value.body["param"].startswith(where)
    ok = ask(client, "hello", store=True, metadata={f"k{n}": "v" * 512 for n in range(16)})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.update(ok.id, metadata={f"k{n}": "v" for n in range(17)})
    assert server.rows() == 1


def test_another_organizations_completions_are_absent(server):
    a = server.client(server.keys.create("acme")[0])
    b = server.client(server.keys.create("globex")[0])
    mine = ask(a, "secret", store=True, metadata={"who": "a"})

    assert b.chat.completions.list().data == [] and b.chat.completions.list(metadata={"who": "a"}).data == []
    for call in (
        lambda: b.chat.completions.retrieve(mine.id),
        lambda: b.chat.completions.update(mine.id, metadata={"x": "y"}),
        lambda: b.chat.completions.delete(mine.id),
        lambda: b.chat.completions.messages.list(mine.id),
        lambda: b.chat.completions.list(after=mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert a.chat.completions.retrieve(mine.id).metadata == {"who": "a"}


def test_a_streamed_reply_is_stored_whole(server):
    client = server.client()
    chunks = list(ask(client, "streamed", store=True, stream=True, metadata={"s": "1"}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    stored = client.chat.completions.retrieve(chunks[0].id)
    assert stored.choices[0].message.content == text == "You said: streamed"
    assert stored.choices[0].finish_reason == "stop" and stored.model_extra["status"] == "completed"
    assert stored.metadata == {"s": "1"}


def test_expired_completions_are_gone_and_their_rows_deleted(server):
    client = server.client()
    old = ask(client, "old", store=True)
    client.chat.completions.retrieve(old.id)  # written
    stored = server.app.state.stored

    assert stored.expire(now=time.time() + 29 * 86400) == 0
    assert stored.expire(now=time.time() + 31 * 86400) == 1
    assert server.rows() == 0
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(old.id)


def test_a_completion_past_retention_is_never_shown_before_the_sweep(tmp_path):
    server = Server(tmp_path / "data", stored_completions_retention_days=1 / 86400)  # one second
    client = server.client()
    kept = ask(client, "brief", store=True)
    assert client.chat.completions.retrieve(kept.id)
    time.sleep(2.1)
    assert client.chat.completions.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(kept.id)


def test_store_all_completions_stores_unless_a_request_says_false(tmp_path):
    server = Server(tmp_path / "data", store_all_completions=True)
    client = server.client()
    kept = ask(client, "kept")
    ask(client, "private", store=False)
    assert [c.id for c in client.chat.completions.list()] == [kept.id]


def test_replies_queued_for_storing_are_written_before_shutdown_ends(tmp_path):
    """Storing happens after the reply, on the recorder's thread; here each write takes a second,
    so the replies come back before their rows exist, and the lifespan's exit must wait for them."""
    server = Server(tmp_path / "data")
    stored = server.app.state.stored
    write = stored.add

    def slow_write(records):
        time.sleep(1)
        write(records)

    stored.add = slow_write
    with TestClient(server.app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="sk", http_client=http, max_retries=0)
        for n in range(3):
            ask(client, f"q{n}", store=True)
        assert server.rows() < 3  # the replies did not wait for their writes
    assert server.rows() == 3


def test_the_store_filters_and_expires_on_both_backends(db_url, tmp_path):
    """The queries the routes make, on SQLite and PostgreSQL: metadata paths, text, time, order."""
    from openft.services.stored_completions import StoredCompletions

    settings = Settings(data_dir=tmp_path, db_url=db_url)
    stored = StoredCompletions(settings, Database(settings))
    now = int(time.time())

    def record(n: int, created_at: int) -> Record:
        response = {"id": f"chatcmpl-{n}", "choices": [{"message": {"content": f"Reply {n}"}}]}
        request = {"messages": [{"role": "user", "content": f"Ask {n}"}]}
        return Record(f"chatcmpl-{n}", "org-a", "m", {"k": str(n % 2)}, request, response, True, "local", created_at)

    stored.add([record(n, now - n) for n in range(4)] + [record(9, now - 40 * 86400)])
    rows, more = stored.list("org-a", metadata={"k": "1"}, order="desc")
    assert [r.id for r in rows] == ["chatcmpl-3", "chatcmpl-1"] and not more
    assert [r.id for r in stored.list("org-a", text="REPLY 2")[0]] == ["chatcmpl-2"]
    assert [r.id for r in stored.list("org-a", since=now - 1)[0]] == ["chatcmpl-0", "chatcmpl-1"]
    assert stored.list("org-b")[0] == [] and stored.count("org-a") == 4  # the 40-day-old one is not shown
    assert stored.expire() == 1 and stored.count("org-a") == 4


def record(completion_id: str, organization_id: str = "org-openft", text: str = "hi") -> Record:
    response = {"id": completion_id, "choices": [{"message": {"role": "assistant", "content": text}}]}
    request = {"messages": [{"role": "user", "content": text}]}
    return Record(completion_id, organization_id, "gpt-4o-mini", {}, request, response, True, "local", int(time.time()))


def test_a_record_the_database_refuses_costs_only_itself(server, caplog):
    """Ids are unique per organization: the same id in another organization is no clash, and a
    clash within one loses only the clashing record, which the log names."""
    stored = server.app.state.stored
    stored.add([record("chatcmpl-same")])
    with caplog.at_level(logging.ERROR, logger="openft.stored_completions"):
        stored.add(
            [record("chatcmpl-same", text="again"), record("chatcmpl-same", "org-other"), record("chatcmpl-new")]
        )
    assert server.rows() == 3
    assert [row.id for row in stored.list("org-other")[0]] == ["chatcmpl-same"]
    assert stored.get("org-openft", "chatcmpl-same").response["choices"][0]["message"]["content"] == "hi"
    [lost] = [r for r in caplog.records if "could not store" in r.getMessage()]
    assert "chatcmpl-same of organization org-openft" in lost.getMessage()


def test_a_read_waits_only_for_what_was_queued_before_it(server):
    """Every write takes 0.2 s and records keep coming for 6 s: a read must not wait for the
    queue to be empty (it would wait as long as the traffic lasts), only for what it may see."""
    stored = server.app.state.stored
    write = stored.add

    def slow_write(records):
        time.sleep(0.2)
        write(records)

    stored.add = slow_write
    recorder, stop, recorded = stored.recorder, threading.Event(), []

    def traffic():
        ends = time.monotonic() + 6
        while not stop.is_set() and time.monotonic() < ends:
            recorder.record(record(f"chatcmpl-t{len(recorded)}"))
            recorded.append(1)
            time.sleep(0.05)

    producer = threading.Thread(target=traffic)
    producer.start()
    try:
        time.sleep(0.5)
        before = len(recorded)
        started = time.monotonic()
        recorder.flush()
        waited = time.monotonic() - started
        assert waited < 3, f"the read waited {waited:.1f} s for later traffic"
        assert server.rows() >= before
    finally:
        stop.set()
        producer.join()
    recorder.close()


def serve_slow_store(data_dir: str, port: int) -> None:
    """A server whose database writes take a second each (a busy database): its replies run ahead
    of their rows, which are in the recorder's queue and journal only."""
    server = Server(Path(data_dir))
    stored = server.app.state.stored
    write = stored.add

    def slow_write(records):
        time.sleep(1)
        write(records)

    stored.add = slow_write
    uvicorn.run(server.app, host="127.0.0.1", port=port, log_level="warning")


def test_a_server_killed_under_traffic_loses_no_completion_it_answered(tmp_path):
    """kill -9 while stored replies stream and return; after a restart on the same data dir,
    every completion whose whole reply a client received is stored, as it was answered."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_slow_store, args=(str(tmp_path / "data"), port), daemon=True
    )
    process.start()
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline and process.is_alive(), "the server did not start"
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)

    answered: dict[str, str] = {}
    stop = threading.Event()

    def client_loop(worker: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="sk", max_retries=0, timeout=30)
        n = 0
        while not stop.is_set():
            text, n = f"w{worker}-{n}", n + 1
            try:
                if n % 2:
                    reply = ask(client, text, store=True)
                    answered[reply.id] = reply.choices[0].message.content
                else:
                    chunks = list(ask(client, text, store=True, stream=True))  # to the [DONE]
                    answered[chunks[0].id] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            except (openai.APIConnectionError, httpx.HTTPError):
                return

    clients = [threading.Thread(target=client_loop, args=(worker,)) for worker in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(2.5)
    process.kill()  # SIGKILL: no shutdown, no drain
    stop.set()
    for thread in clients:
        thread.join()
    process.join()
    assert len(answered) >= 20

    restarted = Server(tmp_path / "data")
    stored = {c.id: c.choices[0].message.content for c in restarted.client().chat.completions.list(limit=100)}
    missing = set(answered) - set(stored)
    assert not missing, f"{len(missing)} of {len(answered)} answered completions were lost"
    assert all(stored[completion_id] == text for completion_id, text in answered.items())
