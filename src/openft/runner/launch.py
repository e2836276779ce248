"""Start the trainer: as a local child process (the default), under `torchrun` on this host's
GPUs (`OPENFT_TRAIN_GPUS` > 1), or as a job on a Ray cluster (`OPENFT_RAY_ADDRESS`).

Whichever way, the worker reads the trainer's events from the child's stdout: `ray job submit`
(without --no-wait) streams the job's stdout back. A Ray job reads and writes the job folder
where the worker put it, so the Ray nodes must mount the data dir at the same path. The child dies with its worker
(PR_SET_PDEATHSIG): an orphaned trainer would go on training a job that another worker will
claim. A Ray job lives on the cluster, so killing it takes `ray job stop` as well (`stop`).
"""

import os
import subprocess
import sys
from pathlib import Path

from openft.processes import die_with_parent
from openft.settings import Settings


def trainer_command(settings: Settings, spec_path: Path, python: str = sys.executable) -> list[str]:
    """`python -m openft.trainer spec.json`, or its torchrun form for several GPUs."""
    if settings.train_gpus > 1:
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(settings.train_gpus),
            "-m",
            "openft.trainer",
            str(spec_path),
        ]
    return [python, "-m", "openft.trainer", str(spec_path)]


def submission_id(spec_path: Path, attempt: int) -> str:
    """The Ray job's id: one per attempt of a job (Ray refuses to reuse one)."""
    return f"openft-{spec_path.parent.name}-{attempt}"


def command(settings: Settings, spec_path: Path, attempt: int) -> list[str]:
    """The command that trains the job whose spec is `spec_path`, as the settings ask."""
    if not settings.ray_address:
        return trainer_command(settings, spec_path)
    # The spec's paths (base model, training file, output dir) are this host's: the Ray nodes
    # must mount the data dir at the same path (docs/deploy.md).
    entrypoint = trainer_command(settings, spec_path, python="python")
    return [
        "ray",
        "job",
        "submit",
        "--address",
        settings.ray_address,
        "--submission-id",
        submission_id(spec_path, attempt),
        "--entrypoint-num-gpus",
        str(settings.train_gpus),
        *(["--runtime-env-json", settings.ray_runtime_env] if settings.ray_runtime_env else []),
        "--",
        *entrypoint,
    ]


def stop_command(settings: Settings, spec_path: Path, attempt: int) -> list[str] | None:
    """What stops a trainer that outlives its local process (a Ray job), if anything."""
    if not settings.ray_address:
        return None
    return ["ray", "job", "stop", "--address", settings.ray_address, submission_id(spec_path, attempt)]


def start_trainer(settings: Settings, spec_path: Path, log_path: Path, attempt: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        command(settings, spec_path, attempt),
        stdout=subprocess.PIPE,
        stderr=open(log_path, "ab"),
        env=env,
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        text=True,
    )


def stop_trainer(settings: Settings, process: subprocess.Popen, spec_path: Path, attempt: int) -> None:
    process.kill()
    process.wait()
    stop = stop_command(settings, spec_path, attempt)
    if stop:
        subprocess.run(stop, capture_output=True, timeout=60)
