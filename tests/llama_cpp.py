"""llama.cpp itself (llama-cpp-python, built and installed by `make llama-cpp`) for the tests
that load an exported GGUF. Missing, those tests skip, except where it must be there: in CI
(`CI`) or when `OPENFT_TEST_LLAMA_CPP` is set (.ci/run sets it), where they fail. The same
holds for the real model of tests/test_real_model.py."""

import os
from pathlib import Path

import numpy as np
import pytest

from openft.settings import LLAMA_CPP_DIR

REQUIRED = bool(os.environ.get("CI") or os.environ.get("OPENFT_TEST_LLAMA_CPP"))


def missing(what: str, fix: str = "make llama-cpp"):
    message = f"{what} is not installed: run `{fix}`"
    if REQUIRED:
        pytest.fail(message + " (CI and OPENFT_TEST_LLAMA_CPP need it)")
    pytest.skip(message)


def converter() -> Path:
    """llama.cpp's source tree, whose converter GGUF export runs."""
    if not (LLAMA_CPP_DIR / "convert_hf_to_gguf.py").exists():
        missing("llama.cpp's converter")
    return LLAMA_CPP_DIR


def load(path: Path, **options):
    """The GGUF at `path` in llama.cpp, on one thread (as the tests' torch runs), with room for
    Mistral Small 3.2's long default system prompt."""
    try:
        from llama_cpp import Llama
    except ImportError:
        missing("llama-cpp-python")
    return Llama(model_path=str(path), n_ctx=2048, n_threads=1, seed=0, verbose=False, **options)


def logits(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of `ids` (a model loaded with logits_all=True)."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def greedy(llm, ids: list[int], max_tokens: int) -> list[int]:
    """llama.cpp's own greedy decode after `ids`: max_tokens tokens, or fewer when it stops at
    an end-of-generation token (not kept)."""
    import llama_cpp

    llm.reset()
    out = []
    for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) == max_tokens:
            break
        out.append(token)
    return out
