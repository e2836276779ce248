"""Inference: the engine protocol (engine.py) and its engines, chosen by `OPENFT_ENGINE`.

Importing this package imports no torch, and neither does `make_engine` (but with `memory://`
storage): the server makes its engine when it starts, and the engine's torch work starts with
its first request, in the engine process (process.py) or vLLM's.
"""

from openft.inference.engine import Engine
from openft.settings import Settings
from openft.storage import Storage


def make_engine(settings: Settings) -> Engine:
    """The engine a server, or `openft eval` in process, sends chat requests to: vLLM's (which
    runs its own engine process), or openft's in a child process started on the first request.
    With `memory://` storage it is openft's in this process (torch loads now), since fsspec's
    memory filesystem is this process's alone."""
    if settings.engine == "vllm":
        from openft.inference.vllm import VLLMEngine

        return VLLMEngine(settings.models_dir, Storage.for_settings(settings), settings.cache_dir)
    if (settings.storage_url or "").startswith("memory://"):
        return local_engine(settings)
    from openft.inference.process import ProcessEngine

    return ProcessEngine(settings)


def local_engine(settings: Settings) -> Engine:
    """An engine that runs in this process (the engine process runs one): openft's batched
    decoder, with transformers + peft for the bases of other architectures (for every base with
    `OPENFT_ENGINE=hf`)."""
    from openft.inference.batched import BatchedEngine

    return BatchedEngine(
        settings.models_dir,
        settings.serve_threads,
        Storage.for_settings(settings),
        settings.cache_dir,
        settings.cores_dir,
        settings.memory_dir,
        quantize=settings.serve_quantize,
        transformers_only=settings.engine == "hf",
        memory_budget=None if settings.serve_memory_gb is None else int(settings.serve_memory_gb * 2**30),
        compute_dtype=settings.compute_dtype,
        batch_invariant=settings.batch_invariant,
    )
