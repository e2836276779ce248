"""GGUF export and the Modelfile's template, without a server: a model of each family (with its
published architecture features, tests/tiny_models.py's REAL_FAMILIES) written as
GGUF (llama.cpp's converter, export/convert.py) loads in llama.cpp itself, splits text into the
tokens transformers does, computes transformers' logits and answers as transformers does
greedily; quantized files keep llama.cpp's tensor types and are deterministic; and the Go
template's pieces render every chat as the Jinja template does. (The export of a trained
fine-tune through the API: tests/test_export.py; a real model: tests/test_real_model.py.)"""

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

from openft.export.gguf_file import write_gguf
from openft.export.modelfile import chat_parts, go_template, modelfile
from openft.export.spec import ExportError
from tests import llama_cpp
from tests.tiny_models import FAMILIES, REAL_FAMILIES

TEXT = "Ahoy matey! The 3 quick brown foxes jumped 12,345 times.\n<|im_start|>user\nHi there<|im_end|>"
CHAT = [{"role": "user", "content": "Where is the treasure?"}]


def export(source: Path, path: Path, quantization: str) -> Path:
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    write_gguf(model, source, path, quantization, "tiny", llama_cpp.converter())
    return path


@pytest.mark.parametrize("family", sorted(REAL_FAMILIES))
@torch.inference_mode()
def test_each_family_exported_as_gguf_computes_and_answers_in_llama_cpp_as_in_transformers(
    family, family_models, tmp_path
):
    source = family_models[family]
    path = export(source, tmp_path / "model.gguf", "f32")
    llm = llama_cpp.load(path, logits_all=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()

    ids = tokenizer(TEXT).input_ids
    assert llm.tokenize(TEXT.encode(), add_bos=True, special=True) == ids
    expected = model(torch.tensor([ids])).logits[0].numpy()
    # ggml's CPU GELU (Gemma's activation) reads a table of fp16 values: 1e-2 there.
    gelu = "gelu" in str(getattr(model.config, "hidden_activation", None) or model.config.hidden_act)
    np.testing.assert_allclose(llama_cpp.logits(llm, ids), expected, atol=1e-2 if gelu else 1e-3, rtol=0)

    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = prompt["input_ids"]
    generated = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0, len(prompt) :].tolist()
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops])
    answer = llama_cpp.greedy(llm, prompt, 8)
    assert answer == generated[: len(generated) - (generated[-1] in stops)]


def test_quantized_types_keep_norms_f32_and_embeddings_8_bit_deterministically(tiny_models, tmp_path):
    first = export(tiny_models["llama"], tmp_path / "a.gguf", "q4_0")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(first).tensors}
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == "Q4_0" and "output.weight" not in types  # tied
    assert gguf.GGUFReader(first).fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q4_0
    assert export(tiny_models["llama"], tmp_path / "b.gguf", "q4_0").read_bytes() == first.read_bytes()
    llama_cpp.load(first)  # llama.cpp reads the types it was given


def test_without_llama_cpps_converter_the_export_says_how_to_get_it(tiny_models, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["qwen2"])
    with pytest.raises(ExportError, match="make llama-cpp.*OPENFT_LLAMA_CPP_DIR"):
        write_gguf(model, tiny_models["qwen2"], tmp_path / "m.gguf", "f16", "m", tmp_path / "no-llama.cpp")
    assert not (tmp_path / "m.gguf").exists()


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
