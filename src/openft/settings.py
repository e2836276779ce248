"""The one Settings object: OPENFT_* environment variables, overridden by CLI flags at the edge."""

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_MODEL = "SmolLM2-135M-Instruct"

# llama.cpp as the one pinned llama-cpp-python release carries it, unpacked outside any checkout
# by scripts/install-llama-cpp.sh (`make llama-cpp`).
LLAMA_CPP_PYTHON = "0.3.36"
LLAMA_CPP_DIR = (
    Path.home() / ".cache" / "openft" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}" / "src" / "vendor" / "llama.cpp"
)

# Names that OpenAI users already have in their code; each resolves to `default_base_model`
# unless `model_aliases` or an alias stored by `openft models add --alias` says otherwise.
OPENAI_ALIASES = (
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-0613",
    "gpt-3.5-turbo-1106",
    "gpt-3.5-turbo-0125",
    "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENFT_")

    data_dir: Path = Path(".openft")
    db_url: str | None = None
    # Where uploads, adapters and checkpoints live: any fsspec URL (`s3://bucket/openft`,
    # `file:///mnt/shared/openft`); unset, the data dir itself. See openft/storage.py.
    storage_url: str | None = None
    # A registered base (`openft models list`); the OpenAI names resolve to it.
    default_base_model: str = BUNDLED_MODEL
    # Alias → registered base, as JSON ('{"gpt-4o-mini": "Qwen2.5-7B-Instruct"}'): wins over
    # aliases stored by `openft models add --alias` and over default_base_model.
    model_aliases: dict[str, str] = {}
    # Shown in `ft:<base>:<org>:<suffix>:<id>`; OpenAI personal accounts show "personal".
    organization: str = "personal"
    organization_id: str = "org-openft"
    # Keys for the local organization, next to those `openft keys create` stores. With neither,
    # any bearer key is accepted (a laptop install); with either, every /v1 request needs one.
    api_keys: list[str] = []
    # Uploads over this size get 413 `file_too_large` (OpenAI's limit is 512 MB).
    max_upload_bytes: int = 512 * 2**20
    # A fine-tuning file with a longer line gets 400 naming the line.
    max_line_bytes: int = 2**20
    # CPU threads of a training job and of the inference engine. Unset, each uses the cores the
    # process may use, shared with the others busy on this host at the time (openft/cores.py).
    train_threads: int | None = None
    serve_threads: int | None = None
    # Where the processes of one host share its cores (openft/cores.py), its memory
    # (openft/memory.py) and its export slots (runner/exporter.py); unset, `<data dir>/host`.
    # Processes of several data dirs on one host (workers of a fleet, test servers) share them
    # only if they name the same folder.
    host_dir: Path | None = None
    # QLoRA (4-bit NF4 base, bitsandbytes, CUDA) for every job, not only when the bf16 weights do
    # not fit; a job's `qlora` hyperparameter overrides it (trainer/plan.py).
    train_qlora: bool = False
    # At most this many GiB of memory (RAM, or a GPU's) that a worker advertises and plans its jobs
    # into; unset, all of it. Either way a job plans into what the other processes of the host
    # (the engine, other trainers) do not hold (openft/memory.py).
    worker_memory_gib: float | None = None
    # GPUs one training job uses; above 1 the trainer runs under torchrun (runner/launch.py).
    train_gpus: int = 1
    # A Ray cluster to submit trainers to with `ray job submit` (its dashboard address,
    # `http://head:8265`); unset, the worker trains on its own host. The runtime env is Ray's JSON
    # (e.g. '{"pip": ["openft"]}'). See docs/deploy.md.
    ray_address: str | None = None
    ray_runtime_env: str | None = None
    # The inference engine: "openft" (continuous batching on openft's decoder for the Llama
    # family, on transformers + peft for other architectures), "hf" (transformers + peft for
    # every base) or "vllm" (GPU).
    engine: Literal["openft", "hf", "vllm"] = "openft"
    # How much memory the weights of the bases the engine keeps loaded may take (least recently
    # used unloaded); unset: 60% of the GPU, or half of the host's memory (inference/local.py).
    # Either way the engine loads only into what the host's training jobs do not hold.
    serve_memory_gb: float | None = None
    # The "openft" engine's base weights on CPU: "auto" packs to int4 the weights that already
    # are 4-bit groups (exact), "int4" packs all (lossy), "none" keeps bf16/fp32.
    serve_quantize: Literal["auto", "int4", "none"] = "auto"
    # The dtype frozen weights compute in, for training and serving alike: "auto" is bf16 on CUDA
    # and on CPUs that multiply it natively (AVX512-BF16, AMX), else fp32 (hardware.py). Forcing
    # one lets a host run the other kind of CPU's float path (the test suite runs both).
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Greedy replies (temperature 0) that never depend on which other requests share their
    # batch: each prompt is prefilled alone, and each matmul of a decode step runs on at least as
    # many rows as its kernel needs to treat every row alike (inference/invariance.py). Costs
    # 14-17% of decode throughput on fp32, up to 11% on native bf16 (bench/README.md).
    batch_invariant: bool = True
    worker_poll_seconds: float = 0.5
    # A running job whose worker has not renewed its lease for this long is claimed again.
    lease_seconds: float = 30.0
    # Times a job (or an export) is started again after its process died (killed, out of
    # memory) before it fails.
    max_attempts: int = 3
    # Exports (`POST /v1/openft/exports`) that one host runs at once, each in a process of its
    # own; the others wait in the queue (runner/exporter.py).
    exports_per_host: int = 1
    # The llama.cpp source tree whose converter (convert_hf_to_gguf.py's model classes, gguf-py)
    # GGUF export runs (export/gguf_file.py); unset, the copy `make llama-cpp` unpacks.
    llama_cpp_dir: Path = LLAMA_CPP_DIR
    # A chat request without max_tokens stops here rather than at the context limit: a small
    # model that loops would otherwise hold the engine for minutes.
    default_max_tokens: int = 1024
    # An OpenAI-compatible server (OpenAI, vLLM, another openft) that answers the chat models
    # this one does not serve, the OpenAI names included (services/upstream.py): a base URL
    # ending in /v1, and the key sent to it, which no client ever sees.
    upstream_base_url: str | None = None
    upstream_api_key: SecretStr | None = None
    # The model names the upstream may be asked for, as JSON: names or globs ('["gpt-4o-mini",
    # "gpt-4.1*"]'). Empty, nothing is relayed. Never this server's own `ft:` names.
    upstream_models: list[str] = []
    # Organizations (by name) whose requests may be relayed, next to those switched on with
    # `openft orgs upstream NAME --enable`; every other organization is served as if there were no
    # upstream. '["personal"]' switches on the local organization of a keyless install.
    upstream_organizations: list[str] = []
    # Store every chat completion, as if each request had `store: true` (unless it says false).
    store_all_completions: bool = False
    # Stored completions older than this are deleted (OpenAI keeps them 30 days).
    stored_completions_retention_days: float = 30.0
    # A Python grader's limits (graders/sandbox.py): the wall-clock (and CPU) time of one grade,
    # and its address space. OpenAI's: 2 minutes, 2 GB.
    python_grader_seconds: float = 120.0
    python_grader_memory_gb: float = 2.0

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def jobs_dir(self) -> Path:
        """This host's scratch space for the jobs its worker runs (spec, trainer log, outputs)."""
        return self.data_dir / "jobs"

    @property
    def host_folder(self) -> Path:
        """What the processes of this host share (cores, memory, export slots)."""
        return self.host_dir or self.data_dir / "host"

    @property
    def cores_dir(self) -> Path:
        """Where this host's training and serving processes say they are busy (openft/cores.py)."""
        return self.host_folder / "cores"

    @property
    def memory_dir(self) -> Path:
        """Where this host's engine and trainers record the memory they hold (openft/memory.py)."""
        return self.host_folder / "memory"

    @property
    def export_slots_dir(self) -> Path:
        """Where this host's running exports hold their slots (runner/exporter.py)."""
        return self.host_folder / "exports"

    @property
    def export_scratch_dir(self) -> Path:
        """This host's scratch space for the exports it runs (runner/exporter.py)."""
        return self.data_dir / "exporting"

    @property
    def cache_dir(self) -> Path:
        """This host's copies of artifacts fetched from a remote storage."""
        return self.data_dir / "cache"

    @property
    def journal_dir(self) -> Path:
        """This host's stored completions that were answered but may not be in the database yet
        (store/journal.py): the next server start on this data dir writes what a crash left."""
        return self.data_dir / "journal"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'openft.db').resolve()}"
