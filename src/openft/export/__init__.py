"""Exports: a fine-tune (or a checkpoint, or a base) taken out of openft as files other tools
load: `peft` (the LoRA adapter as peft writes it), `merged` (a transformers folder of the base
with the adapter merged in) or `gguf` (one llama.cpp file, and an Ollama Modelfile).

An export runs as its own process, `python -m openft.export spec.json` (run.py), like the
trainer: the service that asks for it (services/exports.py) stays torch-free, and so does the
server it runs in. `spec.py` (no torch) is what the two share.
"""
