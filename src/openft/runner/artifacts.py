"""What a job leaves in the artifact storage, and how a worker on any host moves it there and back.

    checkpoints/<job id>/step-N/   adapter/ + trainer_state.pt, pushed at each epoch's end
    adapters/<job id>/             the final adapter, pushed when the trainer is done

The trainer only knows local paths; the worker pushes its outputs after it writes them (before
the rows that name them are committed) and, when it claims a job that already has checkpoints,
restores the latest one into the trainer's output folder, so a job that moves to another host
resumes where it stopped rather than at step 0.
"""

import shutil
from pathlib import Path

from openft.storage import Storage


def checkpoint_key(job_id: str, step: int) -> str:
    return f"checkpoints/{job_id}/step-{step}"


def adapter_key(job_id: str) -> str:
    return f"adapters/{job_id}"


def push_checkpoint(storage: Storage, job_id: str, step: int, checkpoint_dir: Path) -> str:
    """Upload a checkpoint (adapter and trainer state); returns its adapter's key."""
    key = checkpoint_key(job_id, step)
    storage.put_dir(checkpoint_dir, key)
    return f"{key}/adapter"


def push_adapter(storage: Storage, job_id: str, adapter_dir: Path) -> str:
    key = adapter_key(job_id)
    storage.put_dir(adapter_dir, key)
    return key


def restore_checkpoint(storage: Storage, job_id: str, step: int, checkpoints_dir: Path, scratch: Path) -> bool:
    """Bring checkpoint `step` into `checkpoints_dir/step-N` (as the trainer wrote it) unless it
    is there already; False if the storage does not have it either."""
    target = checkpoints_dir / f"step-{step}"
    if (target / "trainer_state.pt").exists():
        return True
    key = checkpoint_key(job_id, step)
    if not storage.exists(f"{key}/trainer_state.pt"):
        return False
    source = storage.fetch(key, scratch)
    partial = checkpoints_dir / f".step-{step}.restore"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # complete or absent, as the trainer's own checkpoints
    return True
