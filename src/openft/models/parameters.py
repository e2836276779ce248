"""A model's size and weights' dtype, read from its safetensors headers (no weights loaded)."""

import math
from collections import Counter
from pathlib import Path

# safetensors' names → torch's
DTYPES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16", "I8": "int8", "U8": "uint8"}


def parameter_count(model_dir: Path) -> int:
    """The parameters in the safetensors files of a model folder."""
    return sum(weight_elements(model_dir).values())


def weights_dtype(model_dir: Path) -> str:
    """The dtype that holds most of the parameters of a model folder ("bfloat16")."""
    dtype = weight_elements(model_dir).most_common(1)[0][0]
    return DTYPES.get(dtype, dtype.lower())


def weight_elements(model_dir: Path) -> Counter:
    """How many values of each safetensors dtype ("F32", "BF16", …) the folder's weights hold."""
    from safetensors import safe_open

    counts: Counter = Counter()
    for path in model_dir.glob("*.safetensors"):
        with safe_open(path, "np") as weights:
            for name in weights.keys():
                tensor = weights.get_slice(name)
                counts[tensor.get_dtype()] += math.prod(tensor.get_shape())
    return counts
