"""The tokenizer openft trained with, as GGUF metadata (export/convert.py says why not the
converter's): the tokenizer transformers loads from the model's folder, never the published one
it may have come from, so llama.cpp splits text into the same tokens.

Two kinds, by `tokenizer.json`'s model:

- byte-level BPE (GPT-2's: SmolLM, Llama 3, Qwen): llama.cpp's `gpt2` model, the merges, and
  the pre-tokenizer's llama.cpp name, found from the loaded tokenizer's split regex in
  transformers' `GGUF_PRE_TOKENIZER_SPLITS` (the regex of the tokenizer loaded, not of the file:
  transformers 5 gives Qwen2's class its own);
- BPE over SentencePiece pieces with byte fallback (Gemma, Llama 2, Mistral v0.3, Phi-3 as
  `tokenizer.json`, which is how transformers rebuilds a GGUF's SentencePiece vocabulary):
  llama.cpp's `llama` (SentencePiece) model, whose merges are ordered by each piece's score.
  A piece's score is minus the rank of the first merge that makes it, so llama.cpp merges in
  the order BPE does.

Token types are the converter's: added special tokens CONTROL, other added tokens USER_DEFINED,
`<0xNN>` pieces BYTE, the unknown token UNKNOWN, ids the tokenizer lacks `[PAD<id>]` UNUSED.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from openft.data.chat_format import ChatTemplate


class VocabularyError(Exception):
    """A tokenizer of another kind: llama.cpp's converter writes it."""


def write_vocabulary(writer, folder: Path, vocab_size: int) -> None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, decoder = spec["model"], spec.get("decoder") or {}
    if model["type"] == "BPE" and not model.get("byte_fallback") and decoder.get("type") == "ByteLevel":
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(_pre_tokenizer(spec.get("pre_tokenizer")))
        tokens, types, scores = _vocabulary(tokenizer, vocab_size, None)
        merges = True
    elif model["type"] == "BPE" and model.get("byte_fallback"):
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        tokens, types, scores = _vocabulary(tokenizer, vocab_size, _piece_scores(model))
        writer.add_token_scores(scores)
        writer.add_add_space_prefix(_prepends_space(spec.get("normalizer")))
        merges = False
    else:
        raise VocabularyError(f"openft writes byte-level and byte-fallback BPE tokenizers, not {model['type']}.")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=merges, n_vocab=len(tokens))
    # Said outright, not left to llama.cpp's per-model default: does the tokenizer add BOS/EOS?
    probe = tokenizer("a").input_ids
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    special.add_special_token.setdefault("bos", bos is not None and probe[0] == bos)
    special.add_special_token.setdefault("eos", eos is not None and probe[-1] == eos)
    # The token a chat turn ends with, where it is not EOS (Gemma's <end_of_turn>): llama.cpp ends
    # a reply there as openft's engine does (`ChatTemplate.end_of_turn_id`).
    end_of_turn = ChatTemplate(tokenizer).end_of_turn_id
    if end_of_turn is not None and end_of_turn != eos:
        special.special_token_ids.setdefault("eot", end_of_turn)
    special.add_to_gguf(writer, quiet=True)


def _vocabulary(tokenizer, vocab_size: int, scores: dict[str, float] | None):
    import gguf

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types, token_scores = [], [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            token, kind = f"[PAD{index}]", gguf.TokenType.UNUSED
        elif index in added:
            kind = gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED
        elif scores is not None and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):
            kind = gguf.TokenType.BYTE
        elif index == tokenizer.unk_token_id:
            kind = gguf.TokenType.UNKNOWN
        else:
            kind = gguf.TokenType.NORMAL
        tokens.append(token)
        types.append(int(kind))
        token_scores.append(scores.get(token, 0.0) if scores is not None else 0.0)
    return tokens, types, token_scores


def _piece_scores(model: dict) -> dict[str, float]:
    scores: dict[str, float] = {}
    for rank, merge in enumerate(model["merges"]):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(left + right, -float(rank))
    return scores


def _prepends_space(normalizer: dict | None) -> bool:
    """Llama 2's and Mistral's tokenizers prefix the text with '▁'; Gemma's does not."""
    if not normalizer:
        return False
    steps = normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    return any(step.get("type") == "Prepend" for step in steps)


def _pre_tokenizer(pre: dict | None) -> str:
    """llama.cpp's name for how the text is split before BPE."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    if pre and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # byte-level BPE's own split, GPT-2's regex
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else []
    if len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel":
        regex = steps[0].get("pattern", {}).get("Regex")
        name = next((name for name, split in GGUF_PRE_TOKENIZER_SPLITS.items() if split == regex), None)
        if name is not None:
            return name
    raise VocabularyError(
        "llama.cpp has no name known to openft for this tokenizer's pre-tokenizer, and a wrong one would split "
        "text differently than in training."
    )
