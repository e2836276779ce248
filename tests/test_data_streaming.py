"""Streaming: `iter_chat_jsonl` reports exactly what `validate_chat_jsonl` does, reads lazily,
and `openft data check`'s streamed statistics equal those of one `render_example` per example."""

import io
import itertools
import json
import random

import pytest

from openft.data.check import check_file
from openft.data.labels import IGNORE_INDEX, render_stream
from openft.data.stats import distribution
from openft.data.validate import ValidationReport, iter_chat_jsonl, validate_chat_jsonl
from openft.settings import BUNDLED_MODEL
from openft.trainer.spec import MAX_LENGTH
from tests.reference_labels import reference_render_example, varied_examples


def chat(i: int, system: str | None = "Be brief.") -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"A{i}."}]}


# Lines that exercise every path of the validator: good, duplicate, blank, broken, not JSONL.
PIECES = [
    *(json.dumps(chat(i)) for i in range(4)),
    json.dumps(chat(9, system=None)),
    json.dumps(chat(0)) + "\r",
    "",
    "   ",
    "\r",
    "{oops",
    '{"a": 1} x',
    '{"a": -',
    '{"a": "abc',
    'def"}',
    "[1, 2]",
    "[",
    "a,b,c",
    "x\ty",
    '"text"',
    "42",
    "{",
    '{"messages": [',
    "]}",
    "}",
    json.dumps([chat(1)]),
    json.dumps(chat(2), indent=2),
    json.dumps({"prompt": "p", "completion": "c"}),
    json.dumps({"messages": [{"role": "user", "content": "x"}]}),
]


def crafted_files(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        raw = "\n".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8))).encode()
        raw += rng.choice([b"", b"\n"])
        if rng.random() < 0.1:
            raw = b"\xef\xbb\xbf" + raw  # BOM
        if rng.random() < 0.1:
            raw = raw.replace(b"Q1", b"Q\xff1")  # not UTF-8
        if rng.random() < 0.02:
            raw = b"\xff\xfe" + raw  # UTF-16
        yield raw


def streamed(lines) -> ValidationReport:
    report = ValidationReport()
    for line, example in iter_chat_jsonl(lines, report):
        report.examples.append(example)
        report.example_lines.append(line)
    return report


def test_streaming_reports_equal_the_bytes_api(tmp_path):
    path = tmp_path / "train.jsonl"
    for raw in itertools.chain(crafted_files(400), [b"", b"\n", json.dumps([chat(1), chat(2)], indent=2).encode()]):
        expected = validate_chat_jsonl(raw)
        path.write_bytes(raw)
        with open(path, "rb") as handle:
            assert streamed(handle) == expected, raw
        assert streamed(line.removesuffix(b"\n") for line in io.BytesIO(raw)) == expected, raw


def test_a_big_pretty_printed_object_is_not_jsonl():
    raw = json.dumps({"messages": [chat(i)["messages"][1] for i in range(3000)]}, indent=2).encode()
    report = streamed(io.BytesIO(raw))
    assert [(issue.line, issue.code) for issue in report.errors] == [(1, "not_jsonl")]


@pytest.fixture(scope="module")
def tokenizer(model_store):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)


def test_streaming_reads_only_as_far_as_it_yields(tokenizer):
    read = []

    def endless():
        for i in itertools.count():
            read.append(i)
            yield json.dumps(chat(i)).encode()

    report = ValidationReport()
    first = list(itertools.islice(iter_chat_jsonl(endless(), report), 3))
    assert [line for line, _ in first] == [1, 2, 3] and len(read) == 3
    read.clear()
    examples = (example for _, example in iter_chat_jsonl(endless(), ValidationReport()))
    rendered = list(itertools.islice(render_stream(tokenizer, examples, 64, batch_size=4), 5))
    assert len(rendered) == 5 and len(read) <= 3 * 4  # a batch or two ahead, never the whole stream


def test_check_file_statistics_equal_one_render_example_per_example(tokenizer, tmp_path):
    sample = varied_examples(n=300, seed=2)
    sample += [{"messages": [{"role": "user", "content": "hello " * 2500}, {"role": "assistant", "content": "hi"}]}]
    lines = [json.dumps(example, ensure_ascii=False) for example in sample]
    lines[10:10] = ["", "{broken", json.dumps({"messages": [{"role": "assistant", "content": "opens"}]})]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")

    checked = check_file(tokenizer, path, MAX_LENGTH, keep=3)

    report = validate_chat_jsonl(path.read_bytes())
    expected, expected_lines, failed = [], [], []
    for example, line in zip(report.examples, report.example_lines):
        try:
            expected.append((reference_render_example(tokenizer, example, MAX_LENGTH), len(example["messages"])))
            expected_lines.append(line)
        except ValueError:
            failed.append(line)
    stats = checked.stats
    assert stats.examples == len(expected) == len(sample)
    assert stats.tokens == sum(len(ids) for (ids, _, _), _ in expected)
    assert stats.trained_tokens == sum(sum(label != IGNORE_INDEX for label in labels) for (_, labels, _), _ in expected)
    assert stats.tokens_per_example == distribution([len(ids) for (ids, _, _), _ in expected])
    assert stats.messages_per_example == distribution([messages for _, messages in expected])
    assert (
        stats.truncated_lines
        == [line for ((_, _, truncated), _), line in zip(expected, expected_lines) if truncated]
        != []
    )
    assert (
        [(e.line, e.code) for e in checked.errors]
        == [(12, "invalid_json"), (13, "template_error")]
        == [(e.line, e.code) for e in report.errors] + [(line, "template_error") for line in failed]
    )
    assert checked.warnings[: len(report.warnings)] == report.warnings
    assert [w.code for w in checked.warnings[len(report.warnings) :]] == ["example_too_long"] * len(
        stats.truncated_lines
    )
    assert [(r.input_ids, r.labels, r.truncated) for r in checked.rendered] == [ids for ids, _ in expected[:3]]
    assert checked.lines == expected_lines[:3]
