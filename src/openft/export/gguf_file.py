"""A merged fine-tune → one GGUF file (llama.cpp, Ollama), written by llama.cpp's own converter.

The model is saved in fp32 with the base's tokenizer files (a folder as the converter reads
one: `tokenizer.model` too, where the base has it), and `python -m openft.export.convert` runs
llama.cpp's converter on it in a process of its own (convert.py: why, and what openft adds).
Its model classes are where each architecture's GGUF layout is kept up to date by the people
who write the reader, so openft restates none of it. Which llama.cpp: `OPENFT_LLAMA_CPP_DIR`,
by default the pinned release that `make llama-cpp` unpacks (settings.LLAMA_CPP_DIR).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from openft.export.spec import ExportError, file_stem

# What a model folder holds besides its tokenizer: written anew from the merged model.
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json", "README.md")


def write_gguf(model, base_path: Path, path: Path, quantization: str, name: str, llama_cpp: Path) -> None:
    """Write `model` (a transformers causal LM) to `path` as one GGUF file of `quantization`,
    with the tokenizer and chat template of the base at `base_path`."""
    import torch

    if not (llama_cpp / "convert_hf_to_gguf.py").exists():
        raise ExportError(
            f"GGUF export runs llama.cpp's converter, which is not at {llama_cpp}: run `make llama-cpp` "
            "(or scripts/install-llama-cpp.sh), or set OPENFT_LLAMA_CPP_DIR to a llama.cpp source tree."
        )
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".hf-") as scratch:
        # The converter takes metadata (general.finetune) from the folder's name: not a random one.
        folder = Path(scratch) / file_stem(name)
        model.to(torch.float32).save_pretrained(folder)
        for source in base_path.iterdir():
            if source.is_file() and source.name not in _MODEL_FILES and not source.name.endswith(_WEIGHTS):
                shutil.copyfile(source, folder / source.name)
        command = [sys.executable, "-m", "openft.export.convert", str(llama_cpp), str(folder), str(path)]
        command += [quantization, name]
        # The converter's torch takes the threads this export was given, not every core.
        threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **threads})
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ExportError(f"llama.cpp's converter failed: {lines[-1] if lines else done.returncode}")
