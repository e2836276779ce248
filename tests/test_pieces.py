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
    texts = [
        s.text for sequences in _render_texts(tokenizer, [chat_example(rng) for _ in range(600)]) for s in sequences
    ]
    texts += ["", "<|im_end|>", "<|im_start|><|im_end|>\n\n", " lead and trail \n<|im_end|>  "]
    encoder = PieceEncoder.for_tokenizer(tokenizer)
    first, again = encoder.encode(texts), encoder.encode(texts)  # the second from the cache
    assert [e.ids for e in first] == [e.ids for e in again] == whole(tokenizer, texts)
    assert [e.offsets() for e in first] == [
        [tuple(o) for o in e.offsets] for e in tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False)
    ]


def test_a_text_cut_is_tokenized_as_its_parts_one_after_another(tokenizer):
    texts = ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\nHello there", "ab cd ef"]
    cuts = [[len(texts[0]) - len("\nHello there"), len(texts[0]) - len(" there")], [2, 5]]
    parts = [[texts[0][: cuts[0][0]], "\nHello", " there"], ["ab", " cd", " ef"]]
    for encoder in (PieceEncoder.for_tokenizer(tokenizer), PieceEncoder(tokenizer, None)):
        encoded = encoder.encode(texts, cuts)
        assert [e.ids for e in encoded] == [sum(whole(tokenizer, p), []) for p in parts]
        starts = [start for start, _ in encoded[1].offsets()]
        assert {0, 2, 5} <= set(starts) and all(start < 8 for start in starts)  # a token begins at each cut


def test_a_token_that_strips_whitespace_is_tokenized_whole_text(tokenizer):
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken("<sep>", rstrip=True, special=True)])
    texts = ["a<sep>   b<|im_end|>\n", "<sep>\n\nc"]
    assert [e.ids for e in PieceEncoder.for_tokenizer(tokenizer).encode(texts)] == whole(tokenizer, texts)
    cut_anyway = PieceEncoder(tokenizer, ["<sep>", "<|im_end|>"])  # what ignoring the flag would give
    assert [e.ids for e in cut_anyway.encode(texts)] != whole(tokenizer, texts)
