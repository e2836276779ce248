"""Piece-by-piece tokenization (`openft.data.pieces`) gives the whole-text tokenizer's ids."""

import sys
from pathlib import Path

import pytest

from openft.data.labels import _render_texts
from openft.data.pieces import PieceEncoder
from openft.settings import BUNDLED_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from data_bench import chat_example  # noqa: E402  the benchmark's varied data


@pytest.fixture
def tokenizer(model_store):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_store / BUNDLED_MODEL)


def whole(tokenizer, texts):
    return [list(e.ids) for e in tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False)]


def test_pieces_equal_the_whole_text_on_varied_chats(tokenizer):
    import random

    rng = random.Random(3)
    texts, _ = _render_texts(tokenizer, [chat_example(rng) for _ in range(600)])
    texts += ["", "<|im_end|>", "<|im_start|><|im_end|>\n\n", " lead and trail \n<|im_end|>  "]
    encoder = PieceEncoder.for_tokenizer(tokenizer)
    first, again = encoder.encode(texts), encoder.encode(texts)  # the second from the cache
    assert [e.ids for e in first] == [e.ids for e in again] == whole(tokenizer, texts)
    assert [e.offsets() for e in first] == [
        [tuple(o) for o in e.offsets] for e in tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False)
    ]


def test_a_token_that_strips_whitespace_is_tokenized_whole_text(tokenizer):
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken("<sep>", rstrip=True, special=True)])
    texts = ["a<sep>   b<|im_end|>\n", "<sep>\n\nc"]
    assert [e.ids for e in PieceEncoder.for_tokenizer(tokenizer).encode(texts)] == whole(tokenizer, texts)
    cut_anyway = PieceEncoder(tokenizer, ["<sep>", "<|im_end|>"])  # what ignoring the flag would give
    assert [e.ids for e in cut_anyway.encode(texts)] != whole(tokenizer, texts)
