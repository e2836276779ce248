"""A transformers causal LM → one GGUF file (llama.cpp, Ollama), with the `gguf` package's writer.

Nothing about llama.cpp's layout is written down here that a library already knows; each fact
comes from the code that reads GGUF files back into transformers, so what this module writes is,
by construction, what that reader undoes:

- tensor names: transformers' `get_gguf_hf_weights_map` (GGUF name → HF name, built on the gguf
  package's `TensorNameMap`), inverted;
- tensor layouts: transformers' `TENSOR_PROCESSORS` undo llama.cpp's reorderings when reading
  (for Llama, the q/k rows permuted for llama.cpp's rotary layout). The processor is run on row
  indices to learn which permutation it applies, and the inverse is applied here. Architectures
  whose processor changes values, not only row order (Gemma's norms), are refused;
- config keys: transformers' `GGUF_CONFIG_MAPPING` (GGUF key → config attribute), inverted;
- the tokenizer: `gguf.SpecialVocab` (merges, special token ids, the chat template), the token
  list and types as llama.cpp's converter writes them (added special tokens are CONTROL), and the
  pre-tokenizer's llama.cpp name: `gpt-2` for byte-level BPE's own split, else the name that
  transformers' `GGUF_PRE_TOKENIZER_SPLITS` gives the tokenizer's split regex.

Quantization (`gguf.quants`): 1-D tensors (norms, biases) stay F32, as llama.cpp keeps them; at 4
and 5 bits the embedding and output matrices are Q8_0 (the bundled SmolLM2 GGUF's own recipe:
llama.cpp's `llama-quantize` keeps them at 6 bits or more too); a matrix whose rows do not split
into whole blocks falls back to F16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from openft.export.spec import ExportError

# llama.cpp's file type (general.file_type) and the tensor type of each quantization.
_TYPES = {
    "f32": ("ALL_F32", "F32"),
    "f16": ("MOSTLY_F16", "F16"),
    "bf16": ("MOSTLY_BF16", "BF16"),
    "q8_0": ("MOSTLY_Q8_0", "Q8_0"),
    "q5_1": ("MOSTLY_Q5_1", "Q5_1"),
    "q5_0": ("MOSTLY_Q5_0", "Q5_0"),
    "q4_1": ("MOSTLY_Q4_1", "Q4_1"),
    "q4_0": ("MOSTLY_Q4_0", "Q4_0"),
}
_LOW_BIT = ("q5_1", "q5_0", "q4_1", "q4_0")
_EMBEDDINGS = ("token_embd.weight", "output.weight")


def write_gguf(model, tokenizer_dir: Path, path: Path, quantization: str, name: str) -> None:
    """Write `model` (a transformers causal LM, any float dtype) to `path` as one GGUF file with
    the tokenizer and chat template of `tokenizer_dir` in its metadata."""
    import gguf

    config = model.config
    arch = _architecture(config)
    file_type = getattr(gguf.LlamaFileType, _TYPES[quantization][0])
    tensor_type = getattr(gguf.GGMLQuantizationType, _TYPES[quantization][1])

    writer = gguf.GGUFWriter(path, arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(file_type)
    if quantization not in ("f32", "f16", "bf16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_config(writer, config)
    _add_tokenizer(writer, tokenizer_dir, config.vocab_size)
    for gguf_name, tensor in _tensors(model, arch):
        data, raw_type = _encode(gguf_name, tensor, quantization, tensor_type)
        writer.add_tensor(gguf_name, data, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _check_shape(path, config)


# The attributes that fix a model's shape: a reader that rebuilds others would load garbage.
_SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
_SHAPE += ("head_dim", "vocab_size", "tie_word_embeddings")


# ---------------------------------------------------------------------------------------------
# architecture and config


def _architecture(config) -> str:
    """The GGUF architecture: the config's model type where both the gguf package and
    transformers' GGUF reader know it, with a reader whose tensor processing is a reordering."""
    import gguf
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, LlamaTensorProcessor, TensorProcessor

    arch = config.model_type
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)
    if (
        arch not in gguf.MODEL_ARCH_NAMES.values()
        or arch not in GGUF_CONFIG_MAPPING
        or processor not in (TensorProcessor, LlamaTensorProcessor)
    ):
        supported = sorted(
            a
            for a in GGUF_CONFIG_MAPPING
            if a in gguf.MODEL_ARCH_NAMES.values()
            and TENSOR_PROCESSORS.get(a, TensorProcessor) in (TensorProcessor, LlamaTensorProcessor)
        )
        raise ExportError(
            f"GGUF export does not support the {arch!r} architecture; it writes {', '.join(supported)}. "
            "Export --format merged and convert it with llama.cpp's convert_hf_to_gguf.py instead."
        )
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ExportError(
            f"GGUF export does not write rope scaling ({rope['rope_type']!r}). Export --format merged and "
            "convert it with llama.cpp's convert_hf_to_gguf.py instead."
        )
    return arch


def _check_shape(path: Path, config) -> None:
    """The file's metadata must rebuild this model's shape through transformers' GGUF reader
    (Qwen3's reader, for one, assumes a head size of 128); else the file is not kept."""
    from transformers import AutoConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    read = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    rebuilt = AutoConfig.for_model(**read)
    wrong = [a for a in _SHAPE if getattr(rebuilt, a, None) != getattr(config, a, None)]
    if wrong:
        path.unlink()
        raise ExportError(
            f"GGUF export of this {config.model_type} model would not read back with the same shape "
            f"({', '.join(wrong)} differ). Export --format merged and convert it with llama.cpp's "
            "convert_hf_to_gguf.py."
        )


def _config_value(config, attribute: str):
    value = getattr(config, attribute, None)
    if value is None and attribute == "rope_theta":  # transformers 5 keeps it in rope_parameters
        value = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    return value


def _add_config(writer, config) -> None:
    """Every key transformers' reader maps to a config attribute, from that attribute."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    for key, attribute in GGUF_CONFIG_MAPPING[config.model_type].items():
        value = _config_value(config, attribute) if attribute else None
        if value is None:
            continue
        if isinstance(value, bool):
            writer.add_bool(f"{writer.arch}.{key}", value)
        elif isinstance(value, int):
            writer.add_uint32(f"{writer.arch}.{key}", value)
        elif isinstance(value, float):
            writer.add_float32(f"{writer.arch}.{key}", value)
        else:
            raise ExportError(f"GGUF export cannot write the config value {attribute}={value!r}.")
    head_dim = getattr(config, "head_dim", None)
    written = GGUF_CONFIG_MAPPING[config.model_type]
    if (
        head_dim
        and head_dim != config.hidden_size // config.num_attention_heads
        and "attention.key_length" not in written
    ):
        writer.add_key_length(head_dim)  # llama.cpp assumes hidden / heads unless told
        writer.add_value_length(head_dim)


# ---------------------------------------------------------------------------------------------
# tensors


def _tensors(model, arch: str):
    """(GGUF name, fp32 numpy array in llama.cpp's layout) for every weight the file holds."""
    import torch
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map

    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=model.config.to_dict())
    to_gguf = {hf: gguf_name for gguf_name, hf in get_gguf_hf_weights_map(model, processor).items()}
    tied = model.config.tie_word_embeddings
    state = model.state_dict()
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads a missing output.weight as tied to the embedding
        if hf_name not in to_gguf:
            raise ExportError(f"GGUF export has no GGUF name for the weight {hf_name!r} of this {arch} model.")
        gguf_name = to_gguf[hf_name]
        data = tensor.detach().to(torch.float32).cpu().numpy()
        yield gguf_name, _to_gguf_layout(processor, gguf_name, data)


def _to_gguf_layout(processor, gguf_name: str, data: np.ndarray) -> np.ndarray:
    """Undo what the reader's processor does to this tensor. It may only reorder rows: run on
    row indices, it tells which order; the inverse order is the file's."""
    rows = np.arange(data.shape[0]).reshape(data.shape[0], *([1] * (data.ndim - 1)))
    order = processor.process(weights=rows, name=gguf_name).weights.reshape(-1)
    if order.shape[0] != data.shape[0] or not np.array_equal(np.sort(order), np.arange(data.shape[0])):
        raise ExportError(f"GGUF export cannot invert the reader's processing of {gguf_name!r}.")
    if np.array_equal(order, np.arange(data.shape[0])):
        return data
    stored = np.empty_like(data)
    stored[order] = data  # the reader's row i is the file's row order[i]
    return stored


def _encode(gguf_name: str, data: np.ndarray, quantization: str, tensor_type):
    """The tensor as stored: (array, raw type for the writer, or None for plain float arrays)."""
    import gguf
    from gguf.quants import QuantError, quantize

    if data.ndim == 1 or quantization == "f32":
        return data.astype(np.float32), None
    if quantization == "f16":
        return data.astype(np.float16), None
    if quantization in _LOW_BIT and gguf_name in _EMBEDDINGS:
        tensor_type = gguf.GGMLQuantizationType.Q8_0
    try:
        return quantize(data, tensor_type), tensor_type
    except QuantError:  # rows not a whole number of blocks
        return data.astype(np.float16), None


# ---------------------------------------------------------------------------------------------
# tokenizer


def _add_tokenizer(writer, tokenizer_dir: Path, vocab_size: int) -> None:
    import gguf
    from transformers import AutoTokenizer

    path = tokenizer_dir / "tokenizer.json"
    spec = json.loads(path.read_text()) if path.exists() else {}
    model, decoder = spec.get("model", {}), spec.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise ExportError(
            "GGUF export writes byte-level BPE tokenizers (GPT-2 style: SmolLM, Llama 3, Qwen); this base's "
            "tokenizer is not one. Export --format merged and convert it with llama.cpp's convert_hf_to_gguf.py."
        )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokens, types = _vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(spec.get("pre_tokenizer")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=len(tokens))
    # Said outright, not left to llama.cpp's per-tokenizer default: does the tokenizer add BOS/EOS?
    probe = tokenizer("a").input_ids
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    special.add_special_token.setdefault("bos", bos is not None and probe[0] == bos)
    special.add_special_token.setdefault("eos", eos is not None and probe[-1] == eos)
    special.add_to_gguf(writer, quiet=True)


def _vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token and llama.cpp token type, as its converter writes them: added special
    tokens CONTROL, other added tokens USER_DEFINED, ids the tokenizer lacks (a model's
    embedding padded past its vocabulary) `[PAD<id>]`, UNUSED."""
    import gguf

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[index])
            if index in added:
                types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
            else:
                types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


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
    raise ExportError(
        "GGUF export does not know llama.cpp's name for this tokenizer's pre-tokenizer, and a wrong one "
        "would split text differently than in training. Export --format merged and convert it with "
        "llama.cpp's convert_hf_to_gguf.py."
    )
