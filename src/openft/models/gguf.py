"""A GGUF file → a Hugging Face folder (safetensors weights, tokenizer, chat template).

transformers reads the architecture, the tokenizer and its chat template from the GGUF's
metadata and dequantizes the weights. They are saved in fp32, which holds every dequantized
value exactly: the openft engine finds the weights that are 4-bit groups (all of a Q4_1 model's
layers) and packs them back to int4 without loss, which a bf16 copy would have rounded away. The
price is 4 bytes a parameter on disk.
"""

from pathlib import Path


def convert_gguf(gguf: Path, target: Path) -> None:
    """Write `gguf` as a Hugging Face model folder at `target` (which must not exist)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized now; keeping the GGUF marker would make from_pretrained look
    # for the .gguf file again.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = target.name
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
