"""`python -m openft.export.convert LLAMA_CPP MODEL_DIR OUT QUANTIZATION NAME`: a transformers
folder → one GGUF file, by llama.cpp's own converter (the model classes of its
`convert_hf_to_gguf.py`, from the llama.cpp source tree at LLAMA_CPP, with its own gguf-py), so
each architecture's tensor names, layouts (Llama's rotary row order, Gemma's norms stored +1,
Phi-3's fused projections), hyperparameters and rope scaling are written as llama.cpp reads them.

It runs in a process of its own: the converter's gguf-py replaces the `gguf` package installed
beside openft, which is a release behind it.

Two additions, each where the converter stops short:

- The tokenizer: the one openft trained with, written by `gguf_vocab.py` from the tokenizer
  transformers loads. The converter recognizes a byte-level BPE tokenizer by the hash of one
  string's tokens against a table of tokenizers as published, and reads SentencePiece only from
  `tokenizer.model`: a base added from a GGUF has no `tokenizer.model` (transformers rebuilt its
  vocabulary as `tokenizer.json`), and for Gemma 3's the hash matched another model's entry, so
  the file claimed a byte-level tokenizer for SentencePiece pieces. The converter's own code
  writes only the kinds `gguf_vocab.py` does not know.
- 4- and 5-bit types (`q4_0` … `q5_1`), which the converter leaves to `llama-quantize`: matrices
  are quantized by the same `gguf.quants` code it uses for Q8_0, with the embedding and the
  output head at Q8_0 (the recipe of the bundled SmolLM2 GGUF; `llama-quantize` too keeps them at
  6 bits or more); norms and other vectors stay F32, as the converter keeps them.
"""

from __future__ import annotations

import sys
from pathlib import Path

FILE_TYPES = {
    "f32": "ALL_F32",
    "f16": "MOSTLY_F16",
    "bf16": "MOSTLY_BF16",
    "q8_0": "MOSTLY_Q8_0",
    "q5_1": "MOSTLY_Q5_1",
    "q5_0": "MOSTLY_Q5_0",
    "q4_1": "MOSTLY_Q4_1",
    "q4_0": "MOSTLY_Q4_0",
}
LOW_BIT = ("q5_1", "q5_0", "q4_1", "q4_0")


def convert(llama_cpp: Path, model_dir: Path, out: Path, quantization: str, name: str) -> None:
    sys.path[:0] = [str(llama_cpp), str(llama_cpp / "gguf-py")]
    import gguf
    import torch
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

    from openft.export.gguf_vocab import VocabularyError, write_vocabulary

    architecture = get_model_architecture(ModelBase.load_hparams(model_dir, False), ModelType.TEXT)
    try:
        converter = get_model_class(architecture)
    except NotImplementedError:
        sys.exit(f"llama.cpp's converter does not support the {architecture} architecture.")
    low_bit = getattr(gguf.GGMLQuantizationType, quantization.upper()) if quantization in LOW_BIT else None

    class Converter(converter):
        model_arch = converter.model_arch

        def set_vocab(self):
            try:
                write_vocabulary(self.gguf_writer, self.dir_model, self.hparams["vocab_size"])
            except VocabularyError as e:
                print(f"{e} llama.cpp's converter writes it.", file=sys.stderr)
                super().set_vocab()

        def tensor_force_quant(self, name, new_name, bid, n_dims):
            forced = super().tensor_force_quant(name, new_name, bid, n_dims)
            if low_bit is None or not isinstance(forced, bool) or n_dims < 2:
                return forced
            embedding = any(
                self.match_model_tensor_name(new_name, key, bid)
                for key in (gguf.MODEL_TENSOR.TOKEN_EMBD, gguf.MODEL_TENSOR.OUTPUT)
            )
            return gguf.GGMLQuantizationType.Q8_0 if embedding else low_bit

    file_type = getattr(gguf.LlamaFileType, FILE_TYPES[quantization])
    with torch.inference_mode():
        Converter(model_dir, file_type, out, model_name=name).write()


if __name__ == "__main__":
    llama_cpp, model_dir, out, quantization, name = sys.argv[1:]
    convert(Path(llama_cpp), Path(model_dir), Path(out), quantization, name)
