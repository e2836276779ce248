"""Tokenizing rendered chats one piece at a time, each distinct piece once.

A fast tokenizer first cuts its input at the special tokens it knows (`<|im_start|>`,
`<|im_end|>`, …) and tokenizes the text between them on its own. A rendered chat file repeats
most of that text: the role header with "\\n" between turns, the system prompt, the tools block.
Measured on `bench/data_bench.py`'s data, the distinct pieces hold 40% fewer tokens than the
file, and tokenizing is most of what `openft data check` costs. So texts are cut at the special
tokens here, each distinct piece is tokenized once (a bounded cache), and the token ids are
joined back.

This is exact only when the tokenizer's own cut is: every special token matched as written, with
no stripping of the whitespace around it (`lstrip`, `rstrip`, `single_word` off, `normalized`
off). `PieceEncoder.for_tokenizer` checks those flags and, as a second guard, that both ways give
the same ids and offsets on a probe text; a tokenizer that fails either is used whole-text.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate, chain
from operator import le

CACHE_PIECES = 100_000  # ~1 KB each at most (a tools block): bounded, and enough for a file's repeats
_PROBE_TEXT = "<|im_start|>system\n  Hi <|im_end|>\n<|im_start|>user\ncafé 東京 🙂\n\n<|im_end|>\n"


@dataclass(frozen=True)
class _Piece:
    ids: tuple[int, ...]
    starts: tuple[int, ...]  # each token's first character, counted from the piece's start
    ends: tuple[int, ...]
    ascending: bool  # starts and ends both ascending: what the bisections need


@dataclass
class Encoding:
    """One text's token ids, with its tokens' character offsets kept per piece."""

    ids: list[int]
    piece_chars: list[int]  # where each piece starts in the text
    piece_tokens: list[int]  # the index of each piece's first token
    pieces: list[_Piece]

    @property
    def ascending(self) -> bool:
        return all(piece.ascending for piece in self.pieces)

    def first_ending_after(self, char: int) -> int:
        """The first token whose characters end after `char` (`bisect_right` over token ends)."""
        p = max(bisect_right(self.piece_chars, char) - 1, 0)
        return self.piece_tokens[p] + bisect_right(self.pieces[p].ends, char - self.piece_chars[p])

    def first_starting_at(self, char: int) -> int:
        """The first token that starts at or after `char` (`bisect_left` over token starts)."""
        p = max(bisect_right(self.piece_chars, char) - 1, 0)
        return self.piece_tokens[p] + bisect_left(self.pieces[p].starts, char - self.piece_chars[p])

    def offsets(self) -> list[tuple[int, int]]:
        """Every token's (start, end) in the text: for the walk when the bisections cannot run."""
        return [
            (at + start, at + end)
            for at, piece in zip(self.piece_chars, self.pieces)
            for start, end in zip(piece.starts, piece.ends)
        ]


class PieceEncoder:
    def __init__(self, tokenizer, special_tokens: list[str] | None):
        self._backend = tokenizer._tokenizer  # the Rust tokenizer: `encode_batch` without the wrapper's copies
        self._split = re.compile("(" + "|".join(map(re.escape, special_tokens)) + ")").split if special_tokens else None
        self._special_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in special_tokens or ()}
        self._cache: dict[str, _Piece] = {}
        self._specials = {token: _piece([id_], [(0, len(token))]) for token, id_ in self._special_ids.items()}
        self._cache.update(self._specials)

    @classmethod
    def for_tokenizer(cls, tokenizer) -> PieceEncoder:
        added = list(tokenizer.added_tokens_decoder.values())
        exact = all(not (t.lstrip or t.rstrip or t.single_word or t.normalized) for t in added)
        tokens = sorted((t.content for t in added), key=len, reverse=True)  # longest first, as the regex must try
        encoder = cls(tokenizer, tokens if exact and tokens else None)
        if encoder._split and not encoder._agrees_on(_PROBE_TEXT):
            encoder = cls(tokenizer, None)
        return encoder

    def encode(self, texts: list[str], cuts: list[list[int]] | None = None) -> list[Encoding]:
        """Each text's token ids and offsets. `cuts` (per text, ascending character positions) are
        where a text is tokenized in separate parts, as if those parts came one after another: no
        token spans a cut (the label path cuts where a prompt ends and its reply begins)."""
        segmented = [_cut(text, at) for text, at in zip(texts, cuts or [()] * len(texts))]
        if self._split is None:
            flat = [segment for segments in segmented for segment in segments]
            pieces = iter(
                [_piece(e.ids, e.offsets) for e in self._backend.encode_batch(flat, add_special_tokens=False)]
            )
            return [self._join(segments, list(itertools.islice(pieces, len(segments)))) for segments in segmented]
        split = [[part for segment in segments for part in self._split(segment) if part] for segments in segmented]
        cache = self._cache  # this call's, whichever another thread (the server's) starts afresh
        if len(cache) > CACHE_PIECES:
            cache = self._cache = dict(self._specials)
        new = list({part for parts in split for part in parts if part not in cache})
        for part, encoding in zip(new, self._backend.encode_batch(new, add_special_tokens=False)):
            cache[part] = _piece(encoding.ids, encoding.offsets)
        return [self._join(parts, [cache[part] for part in parts]) for parts in split]

    @staticmethod
    def _join(parts: list[str], pieces: list[_Piece]) -> Encoding:
        piece_chars = list(accumulate(map(len, parts), initial=0))
        piece_tokens = list(accumulate((len(piece.ids) for piece in pieces), initial=0))
        ids = list(chain.from_iterable(piece.ids for piece in pieces))
        return Encoding(ids, piece_chars[:-1], piece_tokens[:-1], pieces)

    def _agrees_on(self, text: str) -> bool:
        whole = self._backend.encode(text, add_special_tokens=False)
        pieces = self.encode([text])[0]
        self._cache = dict(self._specials)
        return pieces.ids == whole.ids and pieces.offsets() == [tuple(o) for o in whole.offsets]


def _cut(text: str, at) -> list[str]:
    """`text` in parts at the positions `at` (empty parts left out; a text with none is one part)."""
    bounds = [0, *(n for n in at if 0 < n < len(text)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [text]


def _piece(ids, offsets) -> _Piece:
    starts, ends = zip(*offsets) if offsets else ((), ())
    return _Piece(tuple(ids), starts, ends, _ascending(starts) and _ascending(ends))


def _ascending(values) -> bool:
    return all(map(le, values, values[1:]))
