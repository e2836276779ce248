"""A model's size, read from its safetensors headers (no weights loaded)."""

import math
from pathlib import Path


def parameter_count(model_dir: Path) -> int:
    """The parameters in the safetensors files of a model folder."""
    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(path, "np") as weights:
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total
