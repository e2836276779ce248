"""The fine-tune as one model: the base with the LoRA adapter merged in (peft's
`merge_and_unload`), and as a transformers folder in the base's own dtype.

The merge runs in fp32 whatever the base's dtype (a bf16 base upcasts exactly), so the only
rounding is the final cast back to the base's dtype: for an fp32 base (the bundled one) the
merged model computes what base + adapter compute, to fp32 rounding."""

from __future__ import annotations

from pathlib import Path


def merged_model(base_path: Path, adapter_path: Path | None):
    """The base in fp32 with the adapter merged in (the base alone when there is none)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload(safe_merge=True)
    return model.eval()


def base_dtype(base_path: Path):
    """The dtype the base is stored in (its config's), fp32 when the config does not say."""
    import torch
    from transformers import AutoConfig

    dtype = AutoConfig.from_pretrained(base_path).dtype
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype or torch.float32


def write_merged(model, base_path: Path, out: Path) -> None:
    """`model` saved in the base's dtype as safetensors, with the base's tokenizer, chat template
    and generation config: a folder `AutoModelForCausalLM.from_pretrained` and vLLM load."""
    from transformers import AutoTokenizer

    model.to(base_dtype(base_path)).save_pretrained(out)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(out)
